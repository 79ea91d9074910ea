#pragma once
// A training run seen as a sequence of scanned checkpoints: when did it start to collapse, and
// which checkpoint is the last one worth resuming from.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"
#include "bitfsck/analysis/report.hpp"

namespace bitfsck::analysis {

// A run that makes no timeline: no member with a step, or two members with the same step.
class TimelineError : public Error {
public:
    explicit TimelineError(const std::string& message) : Error(message, ErrorKind::Usage) {}
};

// Mean of one role's figures over the layers that have it, for compact per-step tables.
struct RoleSummary {
    Role role = Role::Other;
    int layers = 0;
    double mean_std = 0, mean_absmean = 0, mean_zero = 0;  // zero: ternary zeros under the quantizer
    Verdict worst = Verdict::Healthy;
};

struct TimelinePoint {
    std::int64_t step = 0;
    std::string file;
    bool step_from_file_name = false;      // ScanReport::step was absent; parsed from the file name
    std::string content_hash;
    Verdict scan_verdict = Verdict::Healthy;  // the checkpoint judged alone
    Verdict verdict = Verdict::Healthy;       // after the cross-checkpoint rule
    std::vector<LayerRoleStats> layers;       // verdicts include the cross-checkpoint rule
    std::vector<RoleSummary> roles;           // ternary-matrix roles only, MLP first
    std::vector<Finding> findings;            // the scan's, then the cross-checkpoint ones
    std::size_t security_findings = 0;
};

// When one (layer, role) first stopped being healthy.
struct RoleOnset {
    std::optional<int> layer;
    Role role = Role::Other;
    std::int64_t step = 0;
    std::string file;
    Verdict verdict = Verdict::Degraded;
    std::vector<Finding> reasons;  // the findings about this layer-role at that step
};

// A member of the run that has no place in the timeline: unreadable, or without a step.
struct SkippedCheckpoint {
    std::string file;
    std::string reason;  // one line, naming the file
};

struct Timeline {
    Quantizer quantizer = Quantizer::BitNet;
    Thresholds thresholds;                    // of the first point
    std::vector<TimelinePoint> points;        // ordered by step
    std::optional<std::int64_t> onset_step;   // first step whose verdict is not healthy
    std::string onset_file;
    std::optional<std::int64_t> collapsed_step;  // first step whose verdict is collapsed
    std::optional<std::int64_t> last_healthy_step;  // last healthy point before the onset
    std::string last_healthy_file;
    // Last point before the first collapsed one (the last point when none collapsed): degraded
    // checkpoints in between may still be worth resuming from when no healthy one is left.
    std::optional<std::int64_t> last_before_collapse_step;
    std::string last_before_collapse_file;
    std::vector<RoleOnset> role_onsets;       // ordered by step, then layer and role
    std::vector<Finding> reasons;             // the findings at the onset step, most severe first
    Verdict final_verdict = Verdict::Healthy; // verdict of the last point
    std::vector<SkippedCheckpoint> skipped;   // members left out, with why (analysis/run.hpp)
};

// The training step of a checkpoint file name: the last run of digits in the stem
// ("step_000400.pt" -> 400, "ckpt-1200.pt" -> 1200, "run2_step_300.pt" -> 300); nullopt when none.
std::optional<std::int64_t> step_from_file_name(const std::filesystem::path& file);

// Orders the reports by step (ScanReport::step, else from the file name) and finds the onset.
// Throws TimelineError naming the file when a report has no step, or naming both files when two
// reports claim the same step.
//
// Besides each scan's own verdicts, one rule needs history: a ternary-matrix layer-role whose
// absmean gamma is now below Thresholds::collapsed_role_ratio (default 1e-2, i.e. a fall of more
// than 100x) times its gamma at the first point is degraded even if it is still above the
// absolute threshold. The BitNet and Distillix quantizers are scale-invariant above their floor,
// so such a layer keeps healthy-looking codes while its output, scaled by gamma, fades away.
Timeline build_timeline(std::vector<ScanReport> reports);

// Per-role means of a point's layer-roles (ternary-matrix roles only), MLP roles first.
std::vector<RoleSummary> summarize_roles(const std::vector<LayerRoleStats>& layers);

// "layers.7.mlp_up" / "mlp_up" (no layer): how timelines and findings name a layer-role.
std::string layer_role_label(const std::optional<int>& layer, Role role);

}  // namespace bitfsck::analysis
