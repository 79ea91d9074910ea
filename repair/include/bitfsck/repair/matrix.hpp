#pragma once
// A tensor seen as a matrix for the repair steps: shape[0] rows by the product of the other
// dimensions, float64, row-major. Public headers stay free of Eigen so that the CLI and the app
// compile quickly; the steps map this storage into Eigen internally.
#include <cstdint>
#include <span>
#include <vector>

namespace bitfsck::repair {

struct Matrix {
    std::int64_t rows = 0, cols = 0;
    std::vector<double> values;  // rows * cols, row-major

    Matrix() = default;
    Matrix(std::int64_t r, std::int64_t c) : rows(r), cols(c), values(static_cast<std::size_t>(r * c), 0.0) {}
    double& operator()(std::int64_t r, std::int64_t c) { return values[static_cast<std::size_t>(r * cols + c)]; }
    double operator()(std::int64_t r, std::int64_t c) const { return values[static_cast<std::size_t>(r * cols + c)]; }
    std::span<double> flat() { return values; }
    std::span<const double> flat() const { return values; }
};

// ||a - b||_F / ||a||_F (0 when both are zero; infinity when only a is).
double relative_frobenius_change(std::span<const double> before, std::span<const double> after);

}  // namespace bitfsck::repair
