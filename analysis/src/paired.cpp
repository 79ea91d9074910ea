#include "bitfsck/analysis/paired.hpp"

#include <cmath>
#include <stdexcept>

namespace bitfsck::analysis {

namespace {

// The regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz), the
// standard route to Student's t distribution function.
double incomplete_beta(double x, double a, double b) {
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    if (x > (a + 1) / (a + b + 2)) return 1 - incomplete_beta(1 - x, b, a);
    const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x)) / a;
    const double tiny = 1e-300;
    double f = 1, c = 1, d = 0;
    for (int i = 0; i <= 400; ++i) {
        const int m = i / 2;
        double numerator;
        if (i == 0) numerator = 1;
        else if (i % 2 == 0) numerator = (m * (b - m) * x) / ((a + 2.0 * m - 1) * (a + 2.0 * m));
        else numerator = -((a + m) * (a + b + m) * x) / ((a + 2.0 * m) * (a + 2.0 * m + 1));
        d = 1 + numerator * d;
        d = std::abs(d) < tiny ? 1 / tiny : 1 / d;
        c = 1 + numerator / c;
        if (std::abs(c) < tiny) c = tiny;
        const double cd = c * d;
        f *= cd;
        if (std::abs(1 - cd) < 1e-15) break;
    }
    return front * (f - 1);
}

// P(|T| <= t) for t >= 0.
double two_sided_t_mass(double t, double dof) { return 1 - incomplete_beta(dof / (dof + t * t), dof / 2, 0.5); }

}  // namespace

double student_t_quantile(double confidence, double dof) {
    if (!(confidence > 0 && confidence < 1) || !(dof > 0)) throw std::invalid_argument("student_t_quantile: confidence in (0, 1), dof > 0");
    double lo = 0, hi = 1;
    while (two_sided_t_mass(hi, dof) < confidence) hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
        const double mid = (lo + hi) / 2;
        (two_sided_t_mass(mid, dof) < confidence ? lo : hi) = mid;
    }
    return (lo + hi) / 2;
}

PairedInterval paired_t_interval(std::span<const double> a, std::span<const double> b, double confidence) {
    if (a.size() != b.size()) throw std::invalid_argument("paired_t_interval: the two sides have different numbers of windows");
    if (a.size() < 2) throw std::invalid_argument("paired_t_interval: fewer than two windows");
    PairedInterval r;
    r.n = static_cast<std::int64_t>(a.size());
    r.confidence = confidence;
    double sum = 0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] - b[i];
    r.mean = sum / double(r.n);
    double ss = 0;
    for (std::size_t i = 0; i < a.size(); ++i) ss += (a[i] - b[i] - r.mean) * (a[i] - b[i] - r.mean);
    r.sd = std::sqrt(ss / double(r.n - 1));
    const double half = student_t_quantile(confidence, double(r.n - 1)) * r.sd / std::sqrt(double(r.n));
    r.low = r.mean - half;
    r.high = r.mean + half;
    return r;
}

}  // namespace bitfsck::analysis
