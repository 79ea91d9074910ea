#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/tensor_stats.hpp"
#include "bitfsck/analysis/thresholds.hpp"

namespace bitfsck::analysis {

enum class Verdict { Healthy = 0, Degraded = 1, Collapsed = 2 };
std::string_view verdict_name(Verdict v);  // "healthy", "degraded", "collapsed"
Verdict worst(Verdict a, Verdict b);

// One rule that fired, spelled out for the user:
// "layers.7.mlp.up_proj.weight: std 4.5e-05 < 1e-03 and 99.1% ternary zeros > 80%".
struct Finding {
    Verdict severity = Verdict::Degraded;
    std::string rule;      // short id: "std_below", "zeros_above", "role_outlier", "all_zero", "non_finite", "dead_rows"
    std::string subject;   // tensor or layer name
    std::string message;
};

// Figures of one (layer, role) group, aggregated over its weight tensors.
struct LayerRoleStats {
    std::optional<int> layer;
    Role role = Role::Other;
    std::vector<std::string> tensors;
    std::uint64_t count = 0;
    double std = 0, absmean = 0, zero_frac = 0;       // element-weighted
    double neg = 0, zero = 0, pos = 0;                 // ternary, chosen quantizer
    std::int64_t dead_rows = 0, rows = 0;
    Verdict verdict = Verdict::Healthy;
};

struct SecuritySummary {
    std::string global;
    std::string severity;   // "critical" | "warning"
    std::uint64_t offset = 0;
    bool called = false;
    std::string reason;
};

struct ScanReport {
    std::string file;
    std::uint64_t file_size = 0;
    std::string content_hash;           // "xxh3-128:<hex>"
    std::string format;                 // io::format_name
    std::optional<std::string> state_dict_path;
    std::optional<std::int64_t> step;
    Quantizer quantizer = Quantizer::BitNet;
    Thresholds thresholds;
    std::vector<TensorStats> tensors;   // state-dict tensors, in file order
    std::vector<LayerRoleStats> layers; // ordered by layer then role
    std::vector<Finding> findings;      // most severe first
    std::vector<SecuritySummary> security;
    Verdict verdict = Verdict::Healthy;
};

}  // namespace bitfsck::analysis
