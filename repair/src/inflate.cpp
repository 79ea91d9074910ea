#include "bitfsck/repair/inflate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "bitfsck/io/error.hpp"

namespace bitfsck::repair {
namespace {

// SplitMix64 of (seed, position): a sign per element that does not depend on how many elements
// move or in what order they are visited.
int random_sign(std::uint64_t seed, std::uint64_t index) {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (z & 1) ? 1 : -1;
}

}  // namespace

InflateOutcome inflate_dead_zone(std::span<double> w, const InflateParams& params, double target,
                                 std::span<const double> reference, analysis::Quantizer quantizer) {
    if (!(params.tau > 0 && params.tau <= 1)) throw Error("inflate: tau must be in (0, 1]");
    if (!(params.zeros >= 0 && params.zeros <= 1)) throw Error("inflate: zeros must be in [0, 1]");
    if (!(target > 0) || !std::isfinite(target)) throw Error("inflate: the target magnitude must be > 0");
    if (!reference.empty() && reference.size() != w.size()) throw Error("inflate: the reference has another size");
    for (double v : w)
        if (!std::isfinite(v)) throw Error("inflate: the tensor holds a non-finite value");

    InflateOutcome out;
    out.target = target;
    out.zeros_requested = params.zeros;
    const std::size_t n = w.size();
    if (n == 0) return out;

    long double abs_sum = 0;
    for (double v : w) abs_sum += std::abs(v);
    out.gamma_before = analysis::effective_scale(quantizer, static_cast<double>(abs_sum / n));
    out.dead_zone = params.tau * out.gamma_before;

    std::vector<std::uint32_t> dead;
    for (std::size_t i = 0; i < n; ++i)
        if (std::abs(w[i]) < out.dead_zone) dead.push_back(static_cast<std::uint32_t>(i));
    out.in_dead_zone = dead.size();
    // Largest first: they are the closest to the threshold, so moving them disturbs least.
    std::stable_sort(dead.begin(), dead.end(), [&](std::uint32_t a, std::uint32_t b) { return std::abs(w[a]) > std::abs(w[b]); });
    std::vector<long double> moved_abs_prefix(dead.size() + 1, 0);
    for (std::size_t i = 0; i < dead.size(); ++i) moved_abs_prefix[i + 1] = moved_abs_prefix[i] + std::abs(w[dead[i]]);

    std::vector<std::uint8_t> is_moved(n, 0);
    auto zeros_after = [&](std::size_t k) {
        const long double sum = abs_sum - moved_abs_prefix[k] + static_cast<long double>(k) * target;
        const double g = analysis::effective_scale(quantizer, static_cast<double>(sum / n));
        std::fill(is_moved.begin(), is_moved.end(), 0);
        for (std::size_t i = 0; i < k; ++i) is_moved[dead[i]] = 1;
        const bool moved_nonzero = analysis::ternary_code(target, g) != 0;
        std::uint64_t zeros = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (is_moved[i]) zeros += !moved_nonzero;
            else zeros += analysis::ternary_code(w[i], g) == 0;
        }
        return static_cast<double>(zeros) / static_cast<double>(n);
    };

    out.zeros_before = zeros_after(0);
    std::size_t k = 0;
    if (out.zeros_before > params.zeros && !dead.empty()) {
        if (zeros_after(dead.size()) > params.zeros) {
            k = dead.size();
        } else {
            std::size_t lo = 0, hi = dead.size();  // zeros(lo) > wanted >= zeros(hi)
            while (hi - lo > 1) {
                const std::size_t mid = lo + (hi - lo) / 2;
                (zeros_after(mid) > params.zeros ? lo : hi) = mid;
            }
            k = hi;
        }
    }
    out.zeros_after = zeros_after(k);
    out.reached = out.zeros_after <= params.zeros;
    out.moved = k;
    for (std::size_t i = 0; i < k; ++i) {
        const std::uint32_t idx = dead[i];
        int sign = 0;
        if (w[idx] > 0) { sign = 1; ++out.sign_from_weight; }
        else if (w[idx] < 0) { sign = -1; ++out.sign_from_weight; }
        else if (!reference.empty() && reference[idx] != 0) { sign = reference[idx] > 0 ? 1 : -1; ++out.sign_from_reference; }
        else { sign = random_sign(params.seed, idx); ++out.sign_random; }
        w[idx] = sign * target;
    }
    return out;
}

}  // namespace bitfsck::repair
