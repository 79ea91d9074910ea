#include "tensor_kernels.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

// The helpers are always inlined into one kernel, so passing 32-byte vectors between them
// never crosses an ABI boundary (GCC warns about that ABI when AVX is off by default).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace bitfsck::analysis::detail {

namespace {

using v2d = double __attribute__((vector_size(16)));
using v2l = std::int64_t __attribute__((vector_size(16)));
using v4d = double __attribute__((vector_size(32)));
using v4l = std::int64_t __attribute__((vector_size(32)));
using v4i = std::int32_t __attribute__((vector_size(16)));

#define BITFSCK_INLINE [[gnu::always_inline]] inline

template <typename V> struct Lanes;
template <> struct Lanes<v2d> { using Mask = v2l; static constexpr int n = 2; };
template <> struct Lanes<v4d> { using Mask = v4l; static constexpr int n = 4; };

template <typename V> BITFSCK_INLINE V load(const double* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename V> BITFSCK_INLINE V splat(double d) {
    V v;
    for (int k = 0; k < Lanes<V>::n; ++k) v[k] = d;
    return v;
}

template <typename V> BITFSCK_INLINE V vabs(V x) {
    using M = typename Lanes<V>::Mask;
    M m;
    for (int k = 0; k < Lanes<V>::n; ++k) m[k] = 0x7fffffffffffffffLL;
    return reinterpret_cast<V>(reinterpret_cast<M>(x) & m);
}

template <typename V> BITFSCK_INLINE double hsum(V v) {
    double s = 0;
    for (int k = 0; k < Lanes<V>::n; ++k) s += v[k];
    return s;
}

template <typename M> BITFSCK_INLINE std::int64_t hsum_mask(M v) {
    std::int64_t s = 0;
    for (std::size_t k = 0; k < sizeof(M) / 8; ++k) s += v[k];
    return s;
}

template <typename V> BITFSCK_INLINE FirstMoments first_moments_impl(const double* x, std::size_t n) {
    using M = typename Lanes<V>::Mask;
    constexpr std::size_t w = Lanes<V>::n;
    const V zero = splat<V>(0);
    V s0 = zero, s1 = zero, a0 = zero, a1 = zero;
    V mn = splat<V>(INFINITY), mx = splat<V>(-INFINITY);
    M z = reinterpret_cast<M>(zero);
    std::size_t i = 0;
    for (; i + 2 * w <= n; i += 2 * w) {
        V x0 = load<V>(x + i), x1 = load<V>(x + i + w);
        s0 += x0;
        s1 += x1;
        a0 += vabs(x0);
        a1 += vabs(x1);
        mn = x0 < mn ? x0 : mn;
        mn = x1 < mn ? x1 : mn;
        mx = x0 > mx ? x0 : mx;
        mx = x1 > mx ? x1 : mx;
        z -= (x0 == zero);  // a true comparison lane is -1
        z -= (x1 == zero);
    }
    FirstMoments m;
    m.sum = hsum(s0 + s1);
    m.sumabs = hsum(a0 + a1);
    double lo = INFINITY, hi = -INFINITY;
    for (std::size_t k = 0; k < w; ++k) {
        lo = mn[k] < lo ? mn[k] : lo;
        hi = mx[k] > hi ? mx[k] : hi;
    }
    std::int64_t zeros = hsum_mask(z);
    for (; i < n; ++i) {
        double v = x[i];
        m.sum += v;
        m.sumabs += std::fabs(v);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        zeros += v == 0;
    }
    m.min = lo;
    m.max = hi;
    m.zeros = static_cast<std::uint64_t>(zeros);
    return m;
}

template <typename V>
BITFSCK_INLINE SecondMoments second_moments_impl(const double* x, std::size_t n, double mean, double s,
                                                 const double t[2]) {
    using M = typename Lanes<V>::Mask;
    constexpr std::size_t w = Lanes<V>::n;
    const V zero = splat<V>(0);
    const V vm = splat<V>(mean), vs = splat<V>(s);
    const V tp0 = splat<V>(t[0]), tn0 = splat<V>(-t[0]), tp1 = splat<V>(t[1]), tn1 = splat<V>(-t[1]);
    V sq = zero, dev = zero, lat = zero;
    M n0 = reinterpret_cast<M>(zero), p0 = n0, n1 = n0, p1 = n0;
    std::size_t i = 0;
    for (; i + w <= n; i += w) {
        V v = load<V>(x + i);
        V d = v - vm;
        sq += d * d;
        dev += d;
        V a = vabs(v);
        V e = vabs(a - vs);
        V r = a < e ? a : e;
        lat += r * r;
        n0 -= (v < tn0);
        p0 -= (v > tp0);
        n1 -= (v < tn1);
        p1 -= (v > tp1);
    }
    SecondMoments m;
    m.sq = hsum(sq);
    m.dev = hsum(dev);
    m.lattice_sq = hsum(lat);
    std::int64_t cn0 = hsum_mask(n0), cp0 = hsum_mask(p0), cn1 = hsum_mask(n1), cp1 = hsum_mask(p1);
    for (; i < n; ++i) {
        double v = x[i], d = v - mean, a = std::fabs(v), e = std::fabs(a - s), r = a < e ? a : e;
        m.sq += d * d;
        m.dev += d;
        m.lattice_sq += r * r;
        cn0 += v < -t[0];
        cp0 += v > t[0];
        cn1 += v < -t[1];
        cp1 += v > t[1];
    }
    m.neg[0] = static_cast<std::uint64_t>(cn0);
    m.pos[0] = static_cast<std::uint64_t>(cp0);
    m.neg[1] = static_cast<std::uint64_t>(cn1);
    m.pos[1] = static_cast<std::uint64_t>(cp1);
    return m;
}

template <typename V>
BITFSCK_INLINE bool all_among_impl(const double* x, std::size_t n, const double* vals, std::size_t k) {
    using M = typename Lanes<V>::Mask;
    constexpr std::size_t w = Lanes<V>::n;
    const V c0 = splat<V>(vals[0]), c1 = splat<V>(vals[k > 1 ? 1 : 0]), c2 = splat<V>(vals[k > 2 ? 2 : 0]),
            c3 = splat<V>(vals[k > 3 ? 3 : 0]);
    M miss = reinterpret_cast<M>(splat<V>(0));
    std::size_t i = 0;
    for (; i + w <= n; i += w) {
        V v = load<V>(x + i);
        miss |= ~((v == c0) | (v == c1) | (v == c2) | (v == c3));
    }
    for (std::size_t j = 0; j < w; ++j)
        if (miss[j]) return false;
    for (; i < n; ++i) {
        bool hit = false;
        for (std::size_t j = 0; j < k; ++j) hit |= x[i] == vals[j];
        if (!hit) return false;
    }
    return true;
}

[[gnu::target("avx2")]] FirstMoments first_moments_avx2(const double* x, std::size_t n) {
    return first_moments_impl<v4d>(x, n);
}

[[gnu::target("avx2")]] SecondMoments second_moments_avx2(const double* x, std::size_t n, double mean, double s,
                                                          const double t[2]) {
    return second_moments_impl<v4d>(x, n, mean, s, t);
}

[[gnu::target("avx2")]] bool all_among_avx2(const double* x, std::size_t n, const double* vals, std::size_t k) {
    return all_among_impl<v4d>(x, n, vals, k);
}

[[gnu::target("avx2")]] void value_bins_avx2(const double* x, std::size_t n, double lo, double inv, std::int32_t last,
                                             std::int32_t* out) {
    const v4d vlo = splat<v4d>(lo), vinv = splat<v4d>(inv), zero = splat<v4d>(0), vlast = splat<v4d>(last);
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4d y = (load<v4d>(x + i) - vlo) * vinv;
        y = y > zero ? y : zero;
        y = y < vlast ? y : vlast;
        v4i b = __builtin_convertvector(y, v4i);
        std::memcpy(out + i, &b, sizeof b);
    }
    for (; i < n; ++i) out[i] = value_bin(x[i], lo, inv, last);
}

BITFSCK_INLINE std::int32_t cell_key(double v, std::int64_t first) {
    const auto bits = std::bit_cast<std::int64_t>(v);
    const std::int64_t mag = bits & 0x7fffffffffffffffLL;
    if (mag == 0) return 0;
    const std::int64_t rel = (mag >> 52) - first;
    const std::int64_t cell = rel >= 0 ? 1 + (rel << kCellMantissaBits) + ((mag >> (52 - kCellMantissaBits)) & ((1 << kCellMantissaBits) - 1)) : 0;
    return static_cast<std::int32_t>(1 + (bits < 0 ? kCellsPerSign : 0) + cell);
}

template <typename V>
BITFSCK_INLINE void cell_keys_impl(const double* x, std::size_t n, std::int64_t first, std::int32_t* out) {
    using M = typename Lanes<V>::Mask;
    constexpr std::size_t w = Lanes<V>::n;
    M abs_mask, vfirst, one, mant_mask, per_sign, zero;
    for (std::size_t k = 0; k < w; ++k) {
        abs_mask[k] = 0x7fffffffffffffffLL;
        vfirst[k] = first;
        one[k] = 1;
        mant_mask[k] = (1 << kCellMantissaBits) - 1;
        per_sign[k] = kCellsPerSign;
        zero[k] = 0;
    }
    std::size_t i = 0;
    for (; i + w <= n; i += w) {
        const M bits = reinterpret_cast<M>(load<V>(x + i));
        const M mag = bits & abs_mask;
        const M rel = (mag >> 52) - vfirst;
        const M cell = (rel >= zero) & (one + (rel << kCellMantissaBits) + ((mag >> (52 - kCellMantissaBits)) & mant_mask));
        const M key = (mag != zero) & (one + ((bits >> 63) & per_sign) + cell);
        if constexpr (w == 4) {
            const v4i narrow = __builtin_convertvector(key, v4i);
            std::memcpy(out + i, &narrow, sizeof narrow);
        } else {
            for (std::size_t k = 0; k < w; ++k) out[i + k] = static_cast<std::int32_t>(key[k]);
        }
    }
    for (; i < n; ++i) out[i] = cell_key(x[i], first);
}

[[gnu::target("avx2")]] void cell_keys_avx2(const double* x, std::size_t n, std::int64_t first, std::int32_t* out) {
    cell_keys_impl<v4d>(x, n, first, out);
}

template <typename V, bool kUpdate>
BITFSCK_INLINE double max_abs_impl(const double* x, std::size_t n, double* col_max) {
    constexpr std::size_t w = Lanes<V>::n;
    V m0 = splat<V>(0), m1 = m0;
    std::size_t i = 0;
    for (; i + 2 * w <= n; i += 2 * w) {
        const V a0 = vabs(load<V>(x + i)), a1 = vabs(load<V>(x + i + w));
        m0 = a0 > m0 ? a0 : m0;
        m1 = a1 > m1 ? a1 : m1;
        if constexpr (kUpdate) {
            const V c0 = load<V>(col_max + i), c1 = load<V>(col_max + i + w);
            const V u0 = a0 > c0 ? a0 : c0, u1 = a1 > c1 ? a1 : c1;
            std::memcpy(col_max + i, &u0, sizeof u0);
            std::memcpy(col_max + i + w, &u1, sizeof u1);
        }
    }
    double m = 0;
    for (std::size_t k = 0; k < w; ++k) m = std::max({m, m0[k], m1[k]});
    for (; i < n; ++i) {
        const double a = std::fabs(x[i]);
        m = a > m ? a : m;
        if constexpr (kUpdate) col_max[i] = a > col_max[i] ? a : col_max[i];
    }
    return m;
}

[[gnu::target("avx2")]] double max_abs_update_avx2(const double* x, std::size_t n, double* col_max) {
    return max_abs_impl<v4d, true>(x, n, col_max);
}

[[gnu::target("avx2")]] double max_abs_avx2(const double* x, std::size_t n) { return max_abs_impl<v4d, false>(x, n, nullptr); }

bool have_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2");
    return yes;
}

}  // namespace

FirstMoments first_moments(const double* x, std::size_t n) {
    return have_avx2() ? first_moments_avx2(x, n) : first_moments_impl<v2d>(x, n);
}

SecondMoments second_moments(const double* x, std::size_t n, double mean, double s, const double t[2]) {
    return have_avx2() ? second_moments_avx2(x, n, mean, s, t) : second_moments_impl<v2d>(x, n, mean, s, t);
}

bool all_among(const double* x, std::size_t n, const double* vals, std::size_t k) {
    if (k == 0) return n == 0;
    return have_avx2() ? all_among_avx2(x, n, vals, k) : all_among_impl<v2d>(x, n, vals, k);
}

void value_bins(const double* x, std::size_t n, double lo, double inv, std::int32_t last, std::int32_t* out) {
    if (have_avx2()) return value_bins_avx2(x, n, lo, inv, last, out);
    for (std::size_t i = 0; i < n; ++i) out[i] = value_bin(x[i], lo, inv, last);
}

void cell_keys(const double* x, std::size_t n, int top, std::int32_t* out) {
    const std::int64_t first = top - kCellExponents + 1;
    if (have_avx2()) return cell_keys_avx2(x, n, first, out);
    cell_keys_impl<v2d>(x, n, first, out);
}

double max_abs_update(const double* x, std::size_t n, double* col_max) {
    return have_avx2() ? max_abs_update_avx2(x, n, col_max) : max_abs_impl<v2d, true>(x, n, col_max);
}

double max_abs(const double* x, std::size_t n) {
    return have_avx2() ? max_abs_avx2(x, n) : max_abs_impl<v2d, false>(x, n, nullptr);
}

std::size_t keep_finite(const double* x, std::size_t n, double* out, std::uint64_t& nan_count,
                        std::uint64_t& inf_count) {
    std::size_t k = 0;
    for (std::size_t i = 0; i < n; ++i) {
        double v = x[i];
        if (std::isnan(v)) {
            ++nan_count;
        } else if (std::isinf(v)) {
            ++inf_count;
        } else {
            out[k++] = v;
        }
    }
    return k;
}

}  // namespace bitfsck::analysis::detail
