#include "bitfsck/repair/align.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "bitfsck/analysis/quantizer.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::repair {
namespace {

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
double normal_pdf(double z) { return std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI); }

// The target with S = 1: Q_S(u) = S * Q_1(u) because the width is relative to S.
struct UnitTarget {
    LatticeMasses m;
    double width;
    double cdf(double x) const {
        return m.neg * normal_cdf((x + 1) / width) + m.zero * normal_cdf(x / width) + m.pos * normal_cdf((x - 1) / width);
    }
    double pdf(double x) const {
        return (m.neg * normal_pdf((x + 1) / width) + m.zero * normal_pdf(x / width) + m.pos * normal_pdf((x - 1) / width)) / width;
    }
    double quantile_bisect(double u) const {
        double lo = -1 - 40 * width, hi = 1 + 40 * width;
        for (int i = 0; i < 200 && hi - lo > 1e-15 * (1 + std::abs(lo)); ++i) {
            const double mid = 0.5 * (lo + hi);
            (cdf(mid) < u ? lo : hi) = mid;
        }
        return 0.5 * (lo + hi);
    }
};

double lattice_quantile(const LatticeMasses& m, double u) {
    if (u < m.neg) return -1;
    if (u < m.neg + m.zero) return 0;
    return 1;
}

void check_masses(const LatticeMasses& m) {
    if (!(m.neg >= 0 && m.zero >= 0 && m.pos >= 0) || std::abs(m.neg + m.zero + m.pos - 1) > 1e-6)
        throw Error("align: target masses must be non-negative and sum to 1 (got " + std::to_string(m.neg) + ", " +
                    std::to_string(m.zero) + ", " + std::to_string(m.pos) + ")");
}

// Unit-target quantiles at u_r = (r + 1/2) / n for every rank r: a table for a start, then Newton
// steps on the exact mixture CDF, so the map does not depend on the table's resolution.
std::vector<double> unit_quantiles(const LatticeMasses& m, double width, std::size_t n) {
    std::vector<double> q(n);
    if (width <= 0) {
        for (std::size_t r = 0; r < n; ++r) q[r] = lattice_quantile(m, (static_cast<double>(r) + 0.5) / static_cast<double>(n));
        return q;
    }
    const UnitTarget t{m, width};
    constexpr int kTable = 4096;
    std::vector<double> table(kTable + 1);
    for (int i = 1; i < kTable; ++i) table[i] = t.quantile_bisect(static_cast<double>(i) / kTable);
    for (std::size_t r = 0; r < n; ++r) {
        const double u = (static_cast<double>(r) + 0.5) / static_cast<double>(n);
        const double pos = u * kTable;
        const int i = static_cast<int>(pos);
        if (i < 1 || i >= kTable - 1) {
            q[r] = t.quantile_bisect(u);
            continue;
        }
        double x = table[i] + (pos - i) * (table[i + 1] - table[i]);
        double lo = table[i], hi = table[i + 1];
        for (int step = 0; step < 100; ++step) {  // safeguarded: bisection where Newton overshoots (the tails)
            const double f = t.cdf(x) - u;
            if (f < 0) lo = x; else hi = x;
            const double d = t.pdf(x);
            double next = d > 0 ? x - f / d : 0.5 * (lo + hi);
            if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
            if (std::abs(next - x) <= 1e-14 * (1 + std::abs(x))) { x = next; break; }
            x = next;
        }
        q[r] = x;
    }
    return q;
}

double w2(const std::vector<double>& sorted, const std::vector<double>& unit_q, double scale) {
    long double sum = 0;
    for (std::size_t r = 0; r < sorted.size(); ++r) {
        const long double d = sorted[r] - scale * unit_q[r];
        sum += d * d;
    }
    return sorted.empty() ? 0.0 : static_cast<double>(std::sqrt(sum / sorted.size()));
}

}  // namespace

LatticeMasses healthy_gaussian_masses() {
    const double zero = analysis::healthy_gaussian_zero_fraction();
    return {(1 - zero) / 2, zero, (1 - zero) / 2};
}

double three_peak_quantile(const ThreePeakTarget& target, double u) {
    if (target.width <= 0) return target.scale * lattice_quantile(target.masses, u);
    return target.scale * UnitTarget{target.masses, target.width}.quantile_bisect(u);
}

LatticeMasses ternary_masses(std::span<const double> w, analysis::Quantizer quantizer) {
    if (w.empty()) return {};
    long double abs_sum = 0;
    for (double v : w) abs_sum += std::abs(v);
    const double g = analysis::effective_scale(quantizer, static_cast<double>(abs_sum / w.size()));
    std::uint64_t neg = 0, zero = 0;
    for (double v : w) {
        const int c = analysis::ternary_code(v, g);
        neg += c < 0;
        zero += c == 0;
    }
    const double n = static_cast<double>(w.size());
    return {neg / n, zero / n, (n - neg - zero) / n};
}

AlignOutcome align_to_lattice(std::span<double> w, const LatticeMasses& masses, const AlignParams& params,
                              double scale_guess, analysis::Quantizer quantizer) {
    check_masses(masses);
    if (!(params.strength >= 0 && params.strength <= 1)) throw Error("align: strength must be in [0, 1]");
    if (!(params.width >= 0)) throw Error("align: width must be >= 0");
    if (params.scale && !(*params.scale > 0)) throw Error("align: scale must be > 0");
    for (double v : w)
        if (!std::isfinite(v)) throw Error("align: the tensor holds a non-finite value");

    AlignOutcome out;
    out.target = masses;
    out.strength = params.strength;
    out.width = params.width;
    const std::size_t n = w.size();
    if (n == 0) return out;

    // Ranks, ties broken by position so that the map is deterministic.
    std::vector<std::uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return w[a] < w[b]; });
    std::vector<double> sorted(n);
    for (std::size_t r = 0; r < n; ++r) sorted[r] = w[order[r]];
    const std::vector<double> unit_q = unit_quantiles(masses, params.width, n);

    const double t = params.strength;
    std::vector<double> result(n);
    auto apply = [&](double scale) {
        for (std::size_t r = 0; r < n; ++r) result[r] = (1 - t) * sorted[r] + t * scale * unit_q[r];
    };
    auto zero_error = [&](double scale) {
        apply(scale);
        ++out.evaluations;
        return ternary_masses(result, quantizer).zero - masses.zero;
    };

    double scale = 0;
    if (params.scale) {
        scale = *params.scale;
        out.scale_guess = scale;
    } else {
        if (!(scale_guess > 0) || !std::isfinite(scale_guess)) throw Error("align: no usable scale to start from (pass --scale)");
        out.scale_guess = scale_guess;
        out.scale_solved = true;
        constexpr int kSteps = 40;  // 2^(k/4) for k in [-40, 40]: 1e-3 .. 1e3 times the guess
        std::vector<double> grid, err;
        for (int k = -kSteps; k <= kSteps; ++k) {
            grid.push_back(scale_guess * std::exp2(k / 4.0));
            err.push_back(zero_error(grid.back()));
        }
        // The bracket nearest the guess (centre of the grid), else the best grid point nearest it.
        int best_bracket = -1;
        for (int i = 0; i + 1 < static_cast<int>(grid.size()); ++i) {
            if ((err[i] <= 0) != (err[i + 1] <= 0) || err[i] == 0) {
                if (best_bracket < 0 || std::abs(i - kSteps) < std::abs(best_bracket - kSteps)) best_bracket = i;
            }
        }
        if (best_bracket >= 0 && err[best_bracket] == 0) {
            scale = grid[best_bracket];
        } else if (best_bracket >= 0) {
            double lo = std::log(grid[best_bracket]), hi = std::log(grid[best_bracket + 1]);
            const bool lo_negative = err[best_bracket] <= 0;
            double best = grid[best_bracket], best_err = std::abs(err[best_bracket]);
            if (std::abs(err[best_bracket + 1]) < best_err) { best = grid[best_bracket + 1]; best_err = std::abs(err[best_bracket + 1]); }
            for (int i = 0; i < 40 && best_err > 0; ++i) {
                const double mid = 0.5 * (lo + hi);
                const double e = zero_error(std::exp(mid));
                if (std::abs(e) < best_err) { best = std::exp(mid); best_err = std::abs(e); }
                ((e <= 0) == lo_negative ? lo : hi) = mid;
            }
            scale = best;
        } else {
            int best = kSteps;
            for (int i = 0; i < static_cast<int>(grid.size()); ++i)
                if (std::abs(err[i]) < std::abs(err[best]) - 1e-12 ||
                    (std::abs(std::abs(err[i]) - std::abs(err[best])) <= 1e-12 && std::abs(i - kSteps) < std::abs(best - kSteps)))
                    best = i;
            scale = grid[best];
        }
    }
    out.scale = scale;
    apply(scale);
    out.achieved = ternary_masses(result, quantizer);
    out.mass_error = std::max({std::abs(out.achieved.neg - masses.neg), std::abs(out.achieved.zero - masses.zero),
                               std::abs(out.achieved.pos - masses.pos)});
    out.w2_before = w2(sorted, unit_q, scale);
    out.w2_after = w2(result, unit_q, scale);  // result is still sorted: the map preserves order
    for (std::size_t r = 0; r < n; ++r) w[order[r]] = result[r];
    return out;
}

double unit_three_peak_quantile(double zero_mass, double width, double u) {
    ThreePeakTarget t;
    t.masses = {(1 - zero_mass) / 2, zero_mass, (1 - zero_mass) / 2};
    t.scale = 1;
    t.width = width;
    return three_peak_quantile(t, u);
}

}  // namespace bitfsck::repair
