#pragma once
// Inner loops of analyze_tensor over one block of float64 values. The build has no
// -ffast-math (NaN handling and exact zero counts matter), so GCC will not reorder float
// reductions on its own; these kernels keep explicit vector accumulators instead, and pick an
// AVX2 build of themselves at run time where the CPU has it (the project builds for baseline x86-64).
#include <cstddef>
#include <cstdint>

namespace bitfsck::analysis::detail {

// Pass 1 over a block. With a NaN or Inf in the block, sum or sumabs is not finite, which is
// how the caller learns that it must filter the block first.
struct FirstMoments {
    double sum = 0, sumabs = 0;
    double min = 0, max = 0;
    std::uint64_t zeros = 0;
};
FirstMoments first_moments(const double* x, std::size_t n);

// Pass 2 over finite values: centred squares, ternary codes under two thresholds (code 0
// exactly when |w| <= t) and the squared distance to the nearest of {-s, 0, +s}.
struct SecondMoments {
    double sq = 0, dev = 0, lattice_sq = 0;
    std::uint64_t neg[2] = {0, 0}, pos[2] = {0, 0};
};
SecondMoments second_moments(const double* x, std::size_t n, double mean, double s, const double t[2]);

// Whether every value of the block is one of up to 4 known values (k >= 1), so that a tensor
// that is already ternary skips the per-element distinct-value bookkeeping.
bool all_among(const double* x, std::size_t n, const double* vals, std::size_t k);

// Value-histogram bins: clamp(floor((x - lo) * inv), 0, last) for each x.
void value_bins(const double* x, std::size_t n, double lo, double inv, std::int32_t last, std::int32_t* out);

// One value's bin, the very operations value_bins performs (no FMA: the build has no -mfma).
inline std::int32_t value_bin(double x, double lo, double inv, std::int32_t last) {
    double y = (x - lo) * inv;
    y = y > 0 ? y : 0;
    y = y < last ? y : static_cast<double>(last);
    return static_cast<std::int32_t>(y);
}

// Cells of finite values for the joint-bin table (tensor_stats.cpp): a value's cell is its sign,
// its binary exponent and the top kCellMantissaBits of its mantissa, for the kCellExponents
// exponents up to `top` (the biased exponent of the tensor's largest |w|); the magnitudes below
// share one "tiny" cell per sign, and ±0 has key 0. Keys grow with |w| within a sign.
constexpr int kCellMantissaBits = 7;
constexpr int kCellExponents = 48;
constexpr std::int32_t kCellsPerSign = 1 + kCellExponents * (1 << kCellMantissaBits);
constexpr std::int32_t kCellKeys = 1 + 2 * kCellsPerSign;
void cell_keys(const double* x, std::size_t n, int top, std::int32_t* out);

// For finite x: the largest |x[j]|, and col_max[j] = max(col_max[j], |x[j]|) for each j (the
// dead-row and dead-column walk: a row or column is dead when its largest |w| codes to 0).
double max_abs_update(const double* x, std::size_t n, double* col_max);
double max_abs(const double* x, std::size_t n);

// Copies the finite values of x to out; returns how many.
std::size_t keep_finite(const double* x, std::size_t n, double* out, std::uint64_t& nan_count, std::uint64_t& inf_count);

}  // namespace bitfsck::analysis::detail
