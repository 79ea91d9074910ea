#pragma once
// Bins of log10|w| without calling log10 per element (that alone would cost more than the
// rest of the second pass): a table indexed by the exponent and the top mantissa bits gives
// the bin of each cell's smallest value, and one comparison with the next edge corrects it.
// Bins are defined by their edges 10^(lo + k*(hi-lo)/bins); values outside fall in the end bins.
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

namespace bitfsck::analysis::detail {

class LogBinner {
public:
    LogBinner(double lo, double hi, int bins) : lo_(lo), hi_(hi), bins_(bins) {
        std::vector<double> edge(static_cast<std::size_t>(bins) + 1);
        for (int k = 0; k <= bins; ++k) edge[k] = std::pow(10.0, lo + (hi - lo) * k / bins);
        next_edge_.resize(static_cast<std::size_t>(bins));
        for (int k = 0; k + 1 < bins; ++k) next_edge_[k] = edge[k + 1];
        next_edge_[bins - 1] = INFINITY;  // overflow stays in the last bin

        // One comparison suffices when no cell spans two edges (cells are log10(17/16) = 0.026
        // decades wide for normal numbers, bins 1/3 decade by default); otherwise bin() loops.
        single_step_ = (hi - lo) / bins > 0.03 && lo > -300;  // subnormal cells are wider
        table_.resize(std::size_t{1} << (11 + kMantissaBits));
        int b = 0;
        for (std::size_t cell = 0; cell < table_.size(); ++cell) {
            double low = std::bit_cast<double>(static_cast<std::uint64_t>(cell) << kShift);
            while (b + 1 < bins && low >= edge[b + 1]) ++b;
            table_[cell] = static_cast<std::uint16_t>(b);
        }
    }

    bool same_as(double lo, double hi, int bins) const { return lo == lo_ && hi == hi_ && bins == bins_; }

    // For finite a >= 0 (zero lands in bin 0's neighbourhood like any tiny value; callers
    // that exclude zeros subtract them afterwards).
    int bin(double a) const {
        std::uint64_t bits = std::bit_cast<std::uint64_t>(a);
        int b = table_[bits >> kShift];
        while (a >= next_edge_[b]) ++b;
        return b;
    }

    // Same as bin(), where no cell spans two edges (single_step()).
    int bin_single_step(double a) const {
        std::uint64_t bits = std::bit_cast<std::uint64_t>(a);
        int b = table_[bits >> kShift];
        return b + (a >= next_edge_[b]);
    }
    bool single_step() const { return single_step_; }
    int bins() const { return bins_; }

private:
    static constexpr int kMantissaBits = 4;
    static constexpr int kShift = 52 - kMantissaBits;

    double lo_, hi_;
    int bins_;
    bool single_step_ = false;
    std::vector<double> next_edge_;
    std::vector<std::uint16_t> table_;
};

}  // namespace bitfsck::analysis::detail
