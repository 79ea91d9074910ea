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

// Copies the finite values of x to out; returns how many.
std::size_t keep_finite(const double* x, std::size_t n, double* out, std::uint64_t& nan_count, std::uint64_t& inf_count);

}  // namespace bitfsck::analysis::detail
