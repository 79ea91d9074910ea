#pragma once
// A fine-tuning run seen through its metrics file (`bitfsck finetune`'s OUT.metrics.jsonl: one
// JSON line per step with per-role std and ternary code fractions): the same questions as the
// checkpoint timeline — is it collapsing, since when — answered at every step, without a checkpoint.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/analysis/thresholds.hpp"
#include "bitfsck/analysis/timeline.hpp"

namespace bitfsck::analysis {

struct MetricsRole {
    Role role = Role::Other;
    double std = 0, gamma = 0, neg = 0, zero = 0, pos = 0;
    Verdict verdict = Verdict::Healthy;
    std::string reason;  // why it is not healthy
};

struct MetricsPoint {
    std::int64_t step = 0;
    std::optional<double> loss, val_loss, grad_norm, lr;
    std::vector<MetricsRole> roles;  // ternary-matrix roles, MLP first
    Verdict verdict = Verdict::Healthy;
};

struct MetricsTimeline {
    std::filesystem::path file;
    std::vector<MetricsPoint> points;  // in file order (steps ascending)
    std::optional<std::int64_t> onset_step;        // first step not healthy
    std::optional<std::int64_t> collapsed_step;    // first step collapsed
    std::optional<std::int64_t> last_healthy_step; // last healthy step before the onset
    std::optional<std::int64_t> best_val_step;     // lowest validation loss
    std::optional<double> best_val_loss;
    Verdict final_verdict = Verdict::Healthy;
};

// Judges each role at each step by the absolute rules of the scan (Thresholds::collapsed_std on
// std and γ, the zero-fraction thresholds on the ternary zeros). Throws TimelineError naming the
// file and line for a line that is not JSON or has no step, and for steps that go backwards.
MetricsTimeline read_training_metrics(const std::filesystem::path& file, const Thresholds& thresholds = {});

nlohmann::ordered_json to_json(const MetricsTimeline& t);

}  // namespace bitfsck::analysis
