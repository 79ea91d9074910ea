// The repair steps on in-memory data with known answers: planted low-rank signals for SVD,
// distributions whose optimal transport map is known in closed form for align, and the dead-zone
// rules of inflate.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "bitfsck/io/error.hpp"
#include "bitfsck/repair/align.hpp"
#include "bitfsck/repair/inflate.hpp"
#include "bitfsck/repair/selection.hpp"
#include "bitfsck/repair/svd.hpp"

using namespace bitfsck;
using namespace bitfsck::repair;

namespace {

// Box-Muller over mt19937_64: the same numbers on every platform (std::normal_distribution is not).
struct Gaussian {
    std::mt19937_64 rng;
    explicit Gaussian(std::uint64_t seed) : rng(seed) {}
    double operator()() {
        const double u1 = (static_cast<double>(rng() >> 11) + 0.5) / 9007199254740992.0;
        const double u2 = (static_cast<double>(rng() >> 11) + 0.5) / 9007199254740992.0;
        return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    }
};

// U diag(s) V^T with orthonormal-ish random factors (Gram-Schmidt), plus noise.
struct Planted {
    Matrix clean, noisy;
};

Planted planted(std::int64_t rows, std::int64_t cols, int rank, double noise, std::uint64_t seed) {
    Gaussian g(seed);
    auto orthonormal = [&](std::int64_t n) {
        std::vector<std::vector<double>> q;
        for (int k = 0; k < rank; ++k) {
            std::vector<double> v(static_cast<std::size_t>(n));
            for (auto& x : v) x = g();
            for (const auto& p : q) {
                const double d = std::inner_product(v.begin(), v.end(), p.begin(), 0.0);
                for (std::size_t i = 0; i < v.size(); ++i) v[i] -= d * p[i];
            }
            const double norm = std::sqrt(std::inner_product(v.begin(), v.end(), v.begin(), 0.0));
            for (auto& x : v) x /= norm;
            q.push_back(v);
        }
        return q;
    };
    const auto u = orthonormal(rows), v = orthonormal(cols);
    Planted p{Matrix(rows, cols), Matrix(rows, cols)};
    for (int k = 0; k < rank; ++k) {
        const double s = 10.0 - 6.0 * k / std::max(1, rank - 1);
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c) p.clean(r, c) += s * u[k][r] * v[k][c];
    }
    p.noisy = p.clean;
    for (auto& x : p.noisy.values) x += noise * g();
    return p;
}

double normal_quantile(double u) {
    double lo = -40, hi = 40;
    for (int i = 0; i < 200; ++i) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < u ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

}  // namespace

TEST_CASE("svd: every rank rule recovers a planted rank under noise", "[repair][svd]") {
    const Planted p = planted(160, 96, 5, 0.01, 7);
    const double noisy_error = relative_frobenius_change(p.clean.values, p.noisy.values);
    for (RankRule rule : {RankRule::GavishDonoho, RankRule::MarchenkoPastur}) {
        Matrix m = p.noisy;
        SvdParams params;
        params.rule = rule;
        const SvdOutcome out = svd_denoise(m, params);
        INFO(rank_rule_name(rule));
        CHECK(out.rank == 5);
        CHECK(out.max_rank == 96);
        CHECK(out.solver == "spectra_partial");  // 5 <= 0.25 * 96
        // Truncation removes most of the noise: the error to the clean signal drops a lot.
        const double denoised_error = relative_frobenius_change(p.clean.values, m.values);
        CHECK(denoised_error < 0.5 * noisy_error);
    }
}

TEST_CASE("svd: fixed rank and energy rules, partial and full solvers agree", "[repair][svd]") {
    const Planted p = planted(64, 120, 4, 0.02, 11);
    Matrix partial = p.noisy, full = p.noisy;
    SvdParams params;
    params.rule = RankRule::Fixed;
    params.rank = 4;
    params.solver = SvdSolver::Partial;
    const SvdOutcome a = svd_denoise(partial, params);
    params.solver = SvdSolver::Full;
    const SvdOutcome b = svd_denoise(full, params);
    CHECK(a.solver == "spectra_partial");
    CHECK(b.solver == "eigen_bdcsvd");
    double max_diff = 0;
    for (std::size_t i = 0; i < partial.values.size(); ++i) max_diff = std::max(max_diff, std::abs(partial.values[i] - full.values[i]));
    CHECK(max_diff < 1e-9);
    CHECK(a.energy_kept == Approx(b.energy_kept).epsilon(1e-9));

    // The energy rule keeps the smallest rank whose share of sum(sigma^2) reaches the target.
    const std::vector<double> sigma = singular_values(p.noisy);
    double total = 0;
    for (double s : sigma) total += s * s;
    Matrix m = p.noisy;
    SvdParams energy;
    energy.rule = RankRule::Energy;
    energy.energy = 0.9;
    const SvdOutcome e = svd_denoise(m, energy);
    double kept = 0;
    for (std::int64_t k = 0; k < e.rank; ++k) kept += sigma[k] * sigma[k];
    CHECK(kept / total >= 0.9);
    CHECK((kept - sigma[e.rank - 1] * sigma[e.rank - 1]) / total < 0.9);
    CHECK(e.energy_kept == Approx(kept / total).epsilon(1e-6));
}

TEST_CASE("svd: singular values agree with the full decomposition; rank never 0", "[repair][svd]") {
    const Planted p = planted(40, 30, 3, 0.05, 3);
    const std::vector<double> sigma = singular_values(p.noisy);
    REQUIRE(sigma.size() == 30);
    CHECK(std::is_sorted(sigma.rbegin(), sigma.rend()));
    Matrix m = p.noisy;
    SvdParams full;
    full.rule = RankRule::Fixed;
    full.rank = 30;
    const SvdOutcome out = svd_denoise(m, full);
    CHECK(out.solver == "eigen_bdcsvd");
    CHECK(relative_frobenius_change(p.noisy.values, m.values) < 1e-12);  // full rank: identity
    for (int i = 0; i < 16; ++i) CHECK(out.top_singular_values[i] == Approx(sigma[i]).epsilon(1e-8));

    // All singular values equal: the Gavish-Donoho threshold (2.86 x median) keeps none, so one
    // triplet is kept and the outcome says so.
    Matrix identity(8, 8);
    for (int i = 0; i < 8; ++i) identity(i, i) = 1;
    const SvdOutcome f = svd_denoise(identity, SvdParams{});
    CHECK(f.rank == 1);
    CHECK(f.rank_floored);
    CHECK(relative_frobenius_change(std::vector<double>(64, 0.0), identity.values) == INFINITY);
    // A zero matrix stays as it is.
    Matrix zero(8, 8);
    const SvdOutcome z = svd_denoise(zero, SvdParams{});
    CHECK(z.rank == 0);
    CHECK(z.solver == "none");
    CHECK(std::all_of(zero.values.begin(), zero.values.end(), [](double x) { return x == 0; }));
}

TEST_CASE("svd: Gavish-Donoho omega and the Marchenko-Pastur median", "[repair][svd]") {
    CHECK(gavish_donoho_omega(1.0) == Approx(2.86).epsilon(1e-9));
    CHECK(gavish_donoho_omega(0.5) == Approx(0.56 * 0.125 - 0.95 * 0.25 + 0.91 + 1.43));
    // beta = 1: Gavish & Donoho's omega(1) = (4 / sqrt(3)) / sqrt(mu_1) = 2.858 gives mu_1 ~ 0.6528.
    CHECK(marchenko_pastur_median(1.0) == Approx(0.6528).margin(1e-3));
    CHECK((4 / std::sqrt(3.0)) / std::sqrt(marchenko_pastur_median(1.0)) == Approx(2.858).margin(2e-3));
    // beta -> 0 concentrates at 1.
    CHECK(marchenko_pastur_median(0.01) == Approx(1.0).margin(0.02));
}

TEST_CASE("align: the map from a Gaussian sample to a single Gaussian peak is linear", "[repair][align]") {
    // Weights at the exact N(0, 1) quantiles, in shuffled order; the target N(0, (S*width)^2):
    // the optimal transport map is w -> S * width * w.
    const std::size_t n = 4001;
    std::vector<double> w(n);
    for (std::size_t r = 0; r < n; ++r) w[r] = normal_quantile((r + 0.5) / n);
    std::mt19937_64 rng(5);
    std::shuffle(w.begin(), w.end(), rng);
    const std::vector<double> original = w;
    AlignParams params;
    params.scale = 0.5;
    params.width = 0.2;
    const AlignOutcome out = align_to_lattice(w, {0, 1, 0}, params, 0, analysis::Quantizer::BitNet);
    for (std::size_t i = 0; i < n; ++i) CHECK(w[i] == Approx(0.1 * original[i]).margin(1e-9));
    CHECK_FALSE(out.scale_solved);
    CHECK(out.w2_after == Approx(0).margin(1e-9));
    CHECK(out.w2_before == Approx(0.9 * std::sqrt(std::inner_product(original.begin(), original.end(), original.begin(), 0.0) / n)).epsilon(1e-6));
}

TEST_CASE("align: to the bare lattice, ranks go to -S, 0, +S in proportion; strength interpolates", "[repair][align]") {
    const std::size_t n = 1000;
    std::vector<double> w(n);
    for (std::size_t i = 0; i < n; ++i) w[i] = (static_cast<double>((i * 7919) % n) - 499.5) * 1e-5;  // uniform, shuffled
    const std::vector<double> original = w;
    AlignParams params;
    params.width = 0;
    params.scale = 0.02;
    const LatticeMasses masses{0.3, 0.4, 0.3};
    const AlignOutcome out = align_to_lattice(w, masses, params, 0, analysis::Quantizer::BitNet);
    std::size_t neg = 0, zero = 0, pos = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double rank_u = (original[i] / 1e-5 + 500) / n;  // (rank + 1/2) / n
        const double expected = rank_u < 0.3 ? -0.02 : (rank_u < 0.7 ? 0.0 : 0.02);
        CHECK(w[i] == expected);
        neg += w[i] < 0; zero += w[i] == 0; pos += w[i] > 0;
    }
    CHECK(neg == 300);
    CHECK(zero == 400);
    CHECK(pos == 300);
    CHECK(out.achieved.zero == Approx(0.4));
    CHECK(out.mass_error < 1e-12);
    CHECK(out.w2_after == Approx(0).margin(1e-15));

    // Half strength: halfway along the geodesic, so the W2 distance halves and order is kept.
    std::vector<double> half = original;
    params.strength = 0.5;
    const AlignOutcome h = align_to_lattice(half, masses, params, 0, analysis::Quantizer::BitNet);
    CHECK(h.w2_after == Approx(0.5 * h.w2_before).epsilon(1e-9));
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j : {(i + 1) % n, (i + 17) % n})
            if (original[i] < original[j]) CHECK(half[i] <= half[j]);
}

TEST_CASE("align: S is solved so the quantizer gives the target zero mass", "[repair][align]") {
    Gaussian g(42);
    std::vector<double> w(20000);
    for (auto& x : w) x = 1e-4 * g();  // a collapsed layer's scale
    AlignParams params;
    params.strength = 0.6;  // the result mixes the old weights in, so the zero mass depends on S
    params.width = 0.1;
    const LatticeMasses target{0.35, 0.30, 0.35};
    const AlignOutcome out = align_to_lattice(w, target, params, 0.01, analysis::Quantizer::BitNet);
    CHECK(out.scale_solved);
    CHECK(out.mass_error < 0.01);
    const LatticeMasses measured = ternary_masses(w, analysis::Quantizer::BitNet);
    CHECK(measured.zero == Approx(out.achieved.zero));
    CHECK(measured.zero == Approx(0.30).margin(0.01));

    std::vector<double> bad = w;
    params.strength = 1.5;
    CHECK_THROWS_AS(align_to_lattice(bad, target, params, 0.01, analysis::Quantizer::BitNet), Error);
    params.strength = 1;
    CHECK_THROWS_AS(align_to_lattice(bad, {0.5, 0.5, 0.5}, params, 0.01, analysis::Quantizer::BitNet), Error);
}

TEST_CASE("align: the default masses are a healthy Gaussian layer's", "[repair][align]") {
    const LatticeMasses m = healthy_gaussian_masses();
    Gaussian g(9);
    std::vector<double> w(200000);
    for (auto& x : w) x = 0.02 * g();
    const LatticeMasses measured = ternary_masses(w, analysis::Quantizer::BitNet);
    CHECK(m.zero == Approx(0.3101).margin(1e-3));
    CHECK(measured.zero == Approx(m.zero).margin(0.005));
    CHECK(m.neg == Approx(m.pos));
}

TEST_CASE("three_peak_quantile inverts the mixture", "[repair][align]") {
    ThreePeakTarget t{{0.25, 0.5, 0.25}, 2.0, 0.1};
    CHECK(three_peak_quantile(t, 0.5) == Approx(0).margin(1e-9));
    CHECK(three_peak_quantile(t, 0.125) == Approx(-2.0).margin(0.01));
    CHECK(three_peak_quantile(t, 0.875) == Approx(2.0).margin(0.01));
    t.width = 0;
    CHECK(three_peak_quantile(t, 0.1) == -2.0);
    CHECK(three_peak_quantile(t, 0.6) == 0.0);
    CHECK(three_peak_quantile(t, 0.9) == 2.0);
}

TEST_CASE("inflate: only dead-zone weights move, largest first, until the zero fraction is reached", "[repair][inflate]") {
    Gaussian g(3);
    std::vector<double> w(10000);
    for (auto& x : w) x = 5e-6 * g();
    for (std::size_t i = 0; i < 300; ++i) w[i * 33] = (i % 2 ? 1 : -1) * 1e-3;  // a few big survivors
    w[1] = 0.0;
    w[2] = 0.0;
    const std::vector<double> original = w;
    const LatticeMasses before = ternary_masses(w, analysis::Quantizer::BitNet);
    REQUIRE(before.zero > 0.9);

    InflateParams params;
    params.zeros = 0.3;
    const InflateOutcome out = inflate_dead_zone(w, params, 1e-3, {}, analysis::Quantizer::BitNet);
    CHECK(out.reached);
    CHECK(out.zeros_after <= 0.3);
    CHECK(out.zeros_before == Approx(before.zero));
    const LatticeMasses after = ternary_masses(w, analysis::Quantizer::BitNet);
    CHECK(after.zero == Approx(out.zeros_after));
    // Moving one fewer weight would not have been enough: the count is the smallest that works.
    CHECK(after.zero > 0.3 - 2.0 / w.size());

    double smallest_moved = INFINITY, largest_kept_in_zone = 0;
    std::uint64_t moved = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
        const bool in_zone = std::abs(original[i]) < out.dead_zone;
        if (!in_zone) {
            CHECK(w[i] == original[i]);  // never touched
            continue;
        }
        if (w[i] != original[i]) {
            ++moved;
            CHECK(std::abs(w[i]) == 1e-3);
            if (original[i] != 0) CHECK((w[i] > 0) == (original[i] > 0));
            smallest_moved = std::min(smallest_moved, std::abs(original[i]));
        } else {
            largest_kept_in_zone = std::max(largest_kept_in_zone, std::abs(original[i]));
        }
    }
    CHECK(moved == out.moved);
    CHECK(smallest_moved >= largest_kept_in_zone);
}

TEST_CASE("inflate: signs of exact zeros come from the reference, else from the seed", "[repair][inflate]") {
    std::vector<double> zeros(64, 0.0);
    std::vector<double> reference(64);
    for (std::size_t i = 0; i < 64; ++i) reference[i] = (i % 3 == 0) ? 0.0 : (i % 2 ? 0.5 : -0.5);
    InflateParams params;
    params.zeros = 0;
    params.seed = 99;
    std::vector<double> a = zeros;
    const InflateOutcome out = inflate_dead_zone(a, params, 0.01, reference, analysis::Quantizer::BitNet);
    CHECK(out.moved == 64);
    CHECK(out.sign_from_reference + out.sign_random == 64);
    for (std::size_t i = 0; i < 64; ++i)
        if (reference[i] != 0) CHECK((a[i] > 0) == (reference[i] > 0));
    std::vector<double> b = zeros, c = zeros;
    inflate_dead_zone(b, params, 0.01, {}, analysis::Quantizer::BitNet);
    inflate_dead_zone(c, params, 0.01, {}, analysis::Quantizer::BitNet);
    CHECK(b == c);  // seeded: reproducible
    const auto positives = std::count_if(b.begin(), b.end(), [](double x) { return x > 0; });
    CHECK(positives > 16);
    CHECK(positives < 48);
    params.seed = 100;
    std::vector<double> d = zeros;
    inflate_dead_zone(d, params, 0.01, {}, analysis::Quantizer::BitNet);
    CHECK(d != b);
}

TEST_CASE("selection helpers: layer ranges, roles, globs", "[repair][selection]") {
    const auto r = parse_layer_ranges("0,2-5,7");
    REQUIRE(r.size() == 3);
    CHECK(r[1] == std::pair<int, int>{2, 5});
    CHECK_THROWS_AS(parse_layer_ranges("3-1"), Error);
    CHECK_THROWS_AS(parse_layer_ranges("a"), Error);
    CHECK_NOTHROW(check_role_names({"mlp", "attn_q", "embedding"}));
    CHECK_THROWS_WITH(check_role_names({"mlpp"}), Catch::Contains("unknown role 'mlpp'"));
    CHECK(glob_match("layers.*.mlp.*", "layers.3.mlp.up_proj.weight"));
    CHECK_FALSE(glob_match("layers.*.mlp.*", "layers.3.self_attn.q_proj.weight"));
}
