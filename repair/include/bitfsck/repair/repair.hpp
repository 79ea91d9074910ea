#pragma once
// One repair step applied to a checkpoint: select tensors, change them, write a new checkpoint
// that carries everything else over byte for byte, scan the output afresh, and log what was done
// so that it can be audited and replayed bit for bit.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/analysis/report.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/tensor_stats.hpp"
#include "bitfsck/repair/align.hpp"
#include "bitfsck/repair/inflate.hpp"
#include "bitfsck/repair/selection.hpp"
#include "bitfsck/repair/svd.hpp"

namespace bitfsck::repair {

inline constexpr int kRepairSchemaVersion = 1;

enum class StepKind { Svd, Align, Inflate, Pick };
std::string_view step_name(StepKind k);  // "svd", "align", "inflate", "pick"
std::optional<StepKind> step_from_name(std::string_view name);

struct StepSpec {
    StepKind kind = StepKind::Svd;
    SvdParams svd;
    AlignParams align;
    InflateParams inflate;
};

struct RepairOptions {
    StepSpec step;
    TensorSelection selection;
    // A healthy checkpoint of the same model: the target masses and scale of `align`, the target
    // magnitude and the signs of exact zeros of `inflate`, tensor by tensor (same name), else by role.
    std::optional<std::filesystem::path> like;
    analysis::Quantizer quantizer = analysis::Quantizer::BitNet;
    analysis::Thresholds thresholds;
    bool drop_optimizer_state = false;
    unsigned threads = 0;  // 0: every core; the output does not depend on it
    ProgressCallback progress;  // bytes of the repaired tensors; false stops the repair (Cancelled), writing nothing
};

// The figures of one tensor that a repair is judged by.
struct TensorFigures {
    double std = 0, absmean = 0;
    double neg = 0, zero = 0, pos = 0;  // ternary fractions under the chosen quantizer
    std::int64_t dead_rows = 0;
};

struct TensorRepair {
    std::string name;
    std::vector<std::int64_t> shape;
    std::string dtype;
    std::string reason;          // why it was selected
    std::string scale_source;    // align/inflate: where S or the target came from
    TensorFigures before;        // the input's scan
    TensorFigures after;         // a fresh scan of the written output
    double relative_change = 0;  // ||W' - W||_F / ||W||_F in float64, before rounding to the dtype
    std::uint64_t changed_elements = 0;  // elements whose stored value changed
    std::optional<SvdOutcome> svd;
    std::optional<AlignOutcome> align;
    std::optional<InflateOutcome> inflate;
};

struct LayerChange {
    std::optional<int> layer;
    analysis::Role role = analysis::Role::Other;
    analysis::LayerRoleStats before, after;
};

struct RepairLog {
    int schema_version = kRepairSchemaVersion;
    std::string input, input_hash;
    std::string output, output_hash;
    std::optional<std::string> like, like_hash;
    std::optional<std::string> run;       // pick: the run folder
    std::vector<std::string> reasons;     // pick: why this checkpoint
    std::vector<std::string> skipped;     // pick: members of the run left out (unreadable, no step), with why
    StepSpec step;
    TensorSelection selection;
    analysis::Quantizer quantizer = analysis::Quantizer::BitNet;
    analysis::Thresholds thresholds;
    bool drop_optimizer_state = false;
    std::vector<std::string> dropped_keys;
    std::vector<TensorRepair> tensors;
    std::vector<LayerChange> layers;      // every layer-role, before and after
    analysis::Verdict verdict_before = analysis::Verdict::Healthy, verdict_after = analysis::Verdict::Healthy;
    std::vector<analysis::Finding> findings_after;
    double seconds = 0;
};

// "<output>.repair.json"
std::filesystem::path repair_log_path(const std::filesystem::path& output);

// Applies options.step (svd, align or inflate) to `input` and writes `output` (torch zip from a
// .pt input, safetensors from a safetensors input) and its repair log. Refuses to write over the
// input or over the reference. Throws bitfsck::Error with a message naming the file and tensor.
RepairLog repair_checkpoint(const std::filesystem::path& input, const std::filesystem::path& output,
                            const RepairOptions& options);

// One tensor repaired in memory, for previews (the app shows its histograms before and after):
// the same step and scale sources as repair_checkpoint, nothing written.
struct TensorPreview {
    TensorRepair repair;                     // figures: before from `scan`, after from `after_stats`
    analysis::TensorStats before_stats, after_stats;  // with histograms
};

// Throws bitfsck::Error when the tensor is missing or not a plain floating-point matrix.
TensorPreview preview_repair(const io::Checkpoint& input, const analysis::ScanReport& scan, const std::string& tensor,
                             const RepairOptions& options);

struct PickOptions {
    analysis::ScanOptions scan;
    bool allow_degraded = false;  // no healthy checkpoint: take the last one before the collapse
};

// "Time travel": scans the run, picks its last healthy checkpoint and copies it to `output`
// (atomically) with a log of the reasons.
RepairLog pick_checkpoint(const std::vector<std::string>& run_inputs, const std::filesystem::path& output,
                          const PickOptions& options);

struct ReplayResult {
    RepairLog log;              // of the replayed run
    std::string expected_hash;  // the output hash the original log recorded
    bool identical = false;
};

// Re-runs the step a repair log describes on the same input (whose hash must match) and writes
// `output`; identical says whether the result is bit for bit the original output.
ReplayResult replay_repair(const std::filesystem::path& log_file, const std::filesystem::path& output,
                           const ProgressCallback& progress = {});

}  // namespace bitfsck::repair
