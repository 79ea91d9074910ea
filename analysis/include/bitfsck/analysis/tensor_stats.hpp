#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/analysis/quantizer.hpp"
#include "bitfsck/io/tensor.hpp"

namespace bitfsck::analysis {

struct Histogram {
    double lo = 0, hi = 0;              // edges: lo + i*(hi-lo)/bins
    std::vector<std::uint64_t> counts;  // bins
};

// Fractions of the ternary codes under one quantizer convention.
struct TernaryFractions {
    Quantizer quantizer = Quantizer::BitNet;
    double scale = 0;  // the effective scale g' used
    double neg = 0, zero = 0, pos = 0;
};

// Does the tensor already lie on a lattice {-s, 0, +s}?
struct LatticeFit {
    std::uint64_t distinct_values = 0;  // exact count, capped at distinct_cap (then `distinct_capped`)
    bool distinct_capped = false;
    bool is_ternary = false;            // per tensor or per output channel
    bool per_channel = false;           // the lattice fits per output row, not per tensor
    double scale = 0;                   // fitted s (per-tensor; mean over rows when per-channel)
    double rms_rel = 0;                 // RMS distance to the nearest lattice point, relative to s
};

struct DeadStructure {
    std::int64_t rows = 0, cols = 0;     // matrix view: shape[0] x numel/shape[0]
    std::int64_t dead_rows = 0;          // output neurons whose codes (default quantizer) are all 0
    std::int64_t dead_cols = 0;          // input features whose codes are all 0
    bool all_zero = false;               // every value is exactly 0
};

struct TensorStats {
    std::string name;
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::optional<std::uint32_t> shard;  // index into ScanReport::shards, for sharded checkpoints
    std::uint64_t count = 0;             // elements
    std::uint64_t finite_count = 0;
    std::uint64_t nan_count = 0, inf_count = 0;
    double mean = 0, std = 0;            // over finite values; std unbiased (torch default), 0 when count < 2
    double min = 0, max = 0;
    double absmean = 0;                  // gamma = mean|W|
    double zero_frac = 0;                // exact zeros
    TernaryFractions ternary;            // under the chosen quantizer (AnalysisOptions::quantizer)
    TernaryFractions ternary_other;      // under the other convention, for comparison
    Histogram values;                    // symmetric range [-max|W|, +max|W|]
    Histogram log_magnitude;             // log10|W| of non-zero finite values
    LatticeFit lattice;
    DeadStructure dead;
};

struct AnalysisOptions {
    Quantizer quantizer = Quantizer::BitNet;
    int value_bins = 64;
    int log_bins = 48;                   // log10 range [-12, 4)
    double log_lo = -12, log_hi = 4;
    std::uint64_t distinct_cap = 4096;
};

// Two streaming passes over the tensor in float64, in blocks; never copies the whole tensor.
TensorStats analyze_tensor(const std::string& name, const io::TensorData& data, const AnalysisOptions& options = {});

}  // namespace bitfsck::analysis
