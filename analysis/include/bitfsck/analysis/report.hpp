#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/tensor_stats.hpp"
#include "bitfsck/analysis/thresholds.hpp"

namespace bitfsck::analysis {

// Unknown: nothing in the checkpoint could be judged (no tensor was assigned to a layer and role
// a rule applies to), so no health is claimed. It ranks above healthy and below degraded: a
// checkpoint where something was judged sick is sick, whatever else could not be judged.
enum class Verdict { Healthy = 0, Degraded = 1, Collapsed = 2, Unknown = 3 };
std::string_view verdict_name(Verdict v);  // "healthy", "degraded", "collapsed", "unknown"
Verdict worst(Verdict a, Verdict b);
bool verdict_is_sick(Verdict v);           // degraded or collapsed

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

    // The naming convention most tensors follow (io::name_layout_name: "llama", "gguf", ...).
    std::string name_layout = "unknown";
    // Weight matrices (2-D or more) whose names gave no layer role: what the rules did not judge.
    std::vector<std::string> unassigned;
    // State-dict tensors whose bytes bitfsck cannot decode ("name: why"), so no rule judged them.
    std::vector<std::string> undecoded;
    // Sharded checkpoints: the shard files in order (TensorStats::shard indexes them); empty otherwise.
    std::vector<std::string> shards;
    // What the readers noted (formats, assumed layouts, where a scale convention came from) and
    // what looked wrong without stopping the read (io::Checkpoint::notes() / warnings()).
    std::vector<std::string> notes;
    std::vector<std::string> warnings;
};

}  // namespace bitfsck::analysis
