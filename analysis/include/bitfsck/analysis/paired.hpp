#pragma once
// Two models compared on the same held-out windows: the mean of the per-window loss differences
// with a two-sided Student-t confidence interval. Paired, because both losses of a window share
// that window's difficulty, which is most of their variance; an unpaired comparison of two means
// would call real differences noise.
//
// The t-interval assumes the windows' differences are independent. Consecutive windows of one
// text are not quite, so the interval is somewhat optimistic; it is still the honest minimum
// against which a difference of two means is a claim at all.
#include <cstdint>
#include <span>
#include <string>

namespace bitfsck::analysis {

struct PairedInterval {
    std::int64_t n = 0;          // windows paired
    double mean = 0;             // mean of a[i] − b[i]
    double sd = 0;               // their sample standard deviation
    double low = 0, high = 0;    // the interval for the mean difference
    double confidence = 0.95;
    bool excludes_zero() const { return n >= 2 && (low > 0 || high < 0); }
};

// a[i] − b[i] over equal-length spans; throws std::invalid_argument when the lengths differ or
// fewer than two pairs are given.
PairedInterval paired_t_interval(std::span<const double> a, std::span<const double> b, double confidence = 0.95);

// The two-sided Student-t quantile: P(|T| <= q) = confidence for `dof` degrees of freedom.
double student_t_quantile(double confidence, double dof);

}  // namespace bitfsck::analysis
