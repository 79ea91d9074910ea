// The paired t-interval against values a statistics table gives, and its pairing.
#include <catch2/catch.hpp>

#include <vector>

#include "bitfsck/analysis/paired.hpp"

using bitfsck::analysis::paired_t_interval;
using bitfsck::analysis::student_t_quantile;

TEST_CASE("Student-t quantiles are the table's", "[analysis][paired]") {
    // Two-sided 95%: t(0.975; dof). Values from any t table (scipy.stats.t.ppf(0.975, dof)).
    CHECK(student_t_quantile(0.95, 1) == Approx(12.7062047).epsilon(1e-7));
    CHECK(student_t_quantile(0.95, 4) == Approx(2.7764451).epsilon(1e-7));
    CHECK(student_t_quantile(0.95, 30) == Approx(2.0422725).epsilon(1e-7));
    CHECK(student_t_quantile(0.95, 1000) == Approx(1.9623391).epsilon(1e-7));
    CHECK(student_t_quantile(0.99, 10) == Approx(3.1692727).epsilon(1e-7));
}

TEST_CASE("a paired interval sees a shift that unpaired spreads would hide", "[analysis][paired]") {
    // Window difficulty varies a lot; b is a everywhere worse by 0.01 with a little noise.
    std::vector<double> a, b;
    for (int i = 0; i < 40; ++i) {
        const double difficulty = 2.0 + 0.5 * ((i * 37) % 11) / 10.0;
        a.push_back(difficulty);
        b.push_back(difficulty + 0.01 + 0.002 * ((i * 13) % 5 - 2) / 2.0);
    }
    const auto r = paired_t_interval(b, a);
    CHECK(r.n == 40);
    CHECK(r.mean == Approx(0.01).margin(1e-3));
    CHECK(r.excludes_zero());
    CHECK(r.low > 0);
    // Half-width: t(0.975; 39) * sd / sqrt(40).
    CHECK(r.high - r.mean == Approx(2.0226909 * r.sd / std::sqrt(40.0)).epsilon(1e-6));

    // No difference at all beyond noise: the interval contains 0.
    std::vector<double> c = a;
    for (std::size_t i = 0; i < c.size(); ++i) c[i] += (i % 2 ? 0.003 : -0.003);
    CHECK_FALSE(paired_t_interval(c, a).excludes_zero());

    CHECK_THROWS(paired_t_interval(std::vector<double>{1, 2}, std::vector<double>{1}));
    CHECK_THROWS(paired_t_interval(std::vector<double>{1}, std::vector<double>{1}));
}
