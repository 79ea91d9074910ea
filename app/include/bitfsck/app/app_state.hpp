#pragma once
// The app's whole state as one plain struct, and free functions that update it from library
// results. Nothing here touches ImGui or OpenGL, so every rule (sorting, selection, markers,
// recent files) is testable without a window. The panels only read this and call these.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"  // first: analysis headers use bitfsck::Error
#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/report.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/app/induction.hpp"
#include "bitfsck/app/job.hpp"
#include "bitfsck/app/job_registry.hpp"
#include "bitfsck/app/repair_view.hpp"
#include "bitfsck/app/resurrect_view.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/object_tree.hpp"

namespace bitfsck::app {

// One checkpoint file, opened and scanned. The checkpoint stays open (memory-mapped, lazily
// paged) because the compare view diffs its tensors later.
struct CheckpointData {
    std::filesystem::path path;
    std::shared_ptr<const io::Checkpoint> checkpoint;
    io::TreeNode tree;
    analysis::ScanReport report;
};

// What the user opened: a checkpoint file, or a run folder (its checkpoints in step order plus
// the timeline built from them).
struct Document {
    int id = 0;
    std::filesystem::path path;
    bool is_run = false;
    // One per checkpoint; for a run, in the timeline's order (points[i] is checkpoints[i]).
    std::vector<std::shared_ptr<const CheckpointData>> checkpoints;
    std::optional<analysis::Timeline> timeline;
    std::vector<std::string> skipped;   // files of a run folder left out, each with its reason
    std::size_t current = 0;            // the checkpoint the overview, layers and tensor views show

    std::string title() const;
};

// The views, in tab order (keys 1-8 select them).
enum class View { Overview, Layers, Tensor, Timeline, Compare, Induction, Repair, Resurrect };
inline constexpr int kViewCount = 8;
std::string_view view_name(View v);                        // "overview", "layers", ...
std::optional<View> view_from_name(std::string_view name);

// Columns of the layers table; sorting by any of them is stable and numeric where it should be.
enum class LayerColumn { Layer, Role, Std, Zeros, Neg, TernaryZero, Pos, DeadRows, Verdict };
inline constexpr int kLayerColumnCount = 9;
std::string_view layer_column_name(LayerColumn c);

struct LayerSort {
    LayerColumn column = LayerColumn::Layer;
    bool ascending = true;
};

// Columns of the compare table.
enum class DiffColumn { Tensor, RelL2, FlipRate, NewDeadRows };

struct TimelineMarker {
    enum class Kind { LastHealthy, Onset, Collapsed };
    Kind kind = Kind::Onset;
    std::int64_t step = 0;
    std::string file;
    std::string label;   // "last healthy", "collapse onset", "collapsed"
    bool operator==(const TimelineMarker&) const = default;
};

// A tensor as the tensor view picks it: in which document, which checkpoint of it, which name.
struct TensorRef {
    int document = 0;
    std::size_t checkpoint = 0;
    std::string name;
};

struct CheckpointRef {
    int document = 0;
    std::size_t checkpoint = 0;
    bool operator==(const CheckpointRef&) const = default;
};

struct LogLine {
    enum class Level { Info, Error };
    Level level = Level::Info;
    std::string text;
};

struct LoadJob {
    std::filesystem::path path;
    std::shared_ptr<Job<Document>> job;
};

struct DiffJob {
    CheckpointRef a, b;
    std::shared_ptr<Job<analysis::CheckpointDiff>> job;
};

#ifdef BITFSCK_APP_HAVE_MODEL
// A finished induction probe of one checkpoint.
struct InductionResult {
    CheckpointRef checkpoint;
    InductionParams params;
    model::InductionReport report;
};

struct InductionJob {
    CheckpointRef checkpoint;
    InductionParams params;
    std::shared_ptr<Job<model::InductionReport>> job;
};
#endif

// The induction view: the parameters of the next probe, what the heat map shows, and the probes
// run so far (the view shows the latest one of the checkpoint on screen).
struct InductionView {
    InductionParams params;
    InductionMetric metric = InductionMetric::Ipmr;
    bool scale_to_max = true;             // colour scale [0, largest value] instead of [0, 1]
    std::optional<HeadCell> hovered;      // under the pointer this frame
    std::optional<HeadCell> selected;     // clicked (after a run: the top head by IPMR)
#ifdef BITFSCK_APP_HAVE_MODEL
    std::vector<InductionResult> results;  // oldest first, at most kMaxInductionResults
    std::optional<InductionJob> job;
#endif
};

inline constexpr std::size_t kMaxInductionResults = 32;

// A tensor repaired in memory (repair::preview_repair) for the before/after histograms.
struct RepairPreview {
    CheckpointRef checkpoint;
    std::string tensor;
    RepairParams params;
    repair::TensorPreview preview;
};

struct RepairPreviewJob {
    CheckpointRef checkpoint;
    std::string tensor;
    RepairParams params;
    std::shared_ptr<Job<repair::TensorPreview>> job;
};

// A repair written to disk (repair::repair_checkpoint): the output is opened as a new document.
struct RepairRun {
    CheckpointRef source;
    std::filesystem::path output;
    RepairParams params;
    repair::RepairLog log;
};

struct RepairRunJob {
    CheckpointRef source;
    std::filesystem::path input, output;
    RepairParams params;
    std::shared_ptr<Job<repair::RepairLog>> job;
};

// The repair view: the step and parameters, the tensor previewed, the latest preview and run.
struct RepairView {
    RepairParams params;
    std::string tensor;                         // previewed tensor (empty: the default one)
    std::optional<CheckpointRef> tensor_of;     // the checkpoint `tensor` was picked for
    bool only_tensor = false;                   // Run repairs only `tensor` (else the default selection)
    std::optional<RepairPreview> preview;
    std::string preview_error;                  // why the last preview failed
    std::optional<RepairRun> last_run;
    std::optional<RepairPreviewJob> preview_job;
    std::optional<RepairRunJob> run_job;
    // A repaired output being opened: when it is loaded, compare it with its source.
    std::optional<std::pair<std::filesystem::path, CheckpointRef>> open_pending;
};

struct AppState {
    std::vector<Document> documents;
    int next_document_id = 1;
    int selected_document = 0;              // Document::id; 0 when none
    View view = View::Overview;

    LayerSort layer_sort;
    std::optional<std::size_t> selected_layer;   // index into the current layers
    // The tensor view shows up to two tensors side by side (a dead one next to a healthy one).
    std::optional<TensorRef> tensor_a, tensor_b;
    bool log_histogram = false;             // log-magnitude instead of value histogram

    std::vector<TimelineMarker> markers;    // of the selected document's timeline
    std::size_t timeline_role = 0;          // which layer-role series the timeline highlights

    std::optional<CheckpointRef> compare_a, compare_b;
    std::optional<analysis::CheckpointDiff> diff;       // of diff_a/diff_b
    // The pair last sent to start_diff: the compare view diffs a new pair once, never in a loop
    // after a failure.
    std::optional<std::pair<CheckpointRef, CheckpointRef>> diff_requested;
    CheckpointRef diff_a, diff_b;
    DiffColumn diff_sort = DiffColumn::FlipRate;
    bool diff_ascending = false;

    InductionView induction;
    RepairView repair;
    ResurrectView resurrect;

    // Every background job, running or ended but not yet handled: the status bar, Cancel and the
    // poll loop walk it. The fields below are the views' handles on their own jobs.
    JobRegistry jobs;
    std::vector<LoadJob> loads;
    std::optional<DiffJob> diff_job;
    std::deque<LogLine> log;
    std::vector<std::string> recent;         // most recent first
    std::string path_box;                     // the path the user is typing
    bool show_help = false;
};

inline constexpr std::size_t kMaxRecent = 12;
inline constexpr std::size_t kMaxLogLines = 500;

// --- documents and selection ---------------------------------------------------------------

Document* find_document(AppState& s, int id);
const Document* find_document(const AppState& s, int id);
Document* selected_document(AppState& s);
const Document* selected_document(const AppState& s);
const CheckpointData* find_checkpoint(const AppState& s, const CheckpointRef& ref);
// The checkpoint the selected document currently shows; nullptr when nothing is open.
const CheckpointData* current_checkpoint(const AppState& s);
// The layer-roles the layers view shows: for a run the timeline point's (its verdicts include
// the cross-checkpoint rule), else the scan report's.
const std::vector<analysis::LayerRoleStats>* current_layers(const AppState& s);

// Adds a finished document (assigning its id), selects it and its default tensors and markers.
// A document for a path already open replaces it.
int add_document(AppState& s, Document d);
void close_document(AppState& s, int id);
void select_document(AppState& s, int id);
// Shows checkpoint `index` of the selected document (a run's step); false when out of range.
bool select_checkpoint(AppState& s, std::size_t index);
// For a run: the checkpoint at `step`; false when the run has none.
bool select_step(AppState& s, std::int64_t step);

// The row order of `layers` under `sort` (indices into layers; ties keep file order).
std::vector<std::size_t> layer_order(const std::vector<analysis::LayerRoleStats>& layers, const LayerSort& sort);
void sort_layers(AppState& s, LayerColumn column, bool ascending);

// Selects a layer-role row (index into current_layers) and its first tensor.
bool select_layer(AppState& s, std::size_t index);
// Puts a tensor of the current checkpoint in the tensor view's slot 0 (left) or 1 (right);
// false when the checkpoint has no tensor of that name. Selecting a tensor that is not healthy
// into slot 0 fills slot 1 with a healthy tensor of the same role to compare against, or, in a
// run where that role is sick in every layer, with the same tensor at the last healthy step.
bool select_tensor(AppState& s, const std::string& name, int slot = 0);
const analysis::TensorStats* find_tensor_stats(const AppState& s, const TensorRef& ref);
// The verdict the scan's findings give this tensor (analysis::verdict_of_subject).
analysis::Verdict tensor_verdict(const AppState& s, const TensorRef& ref);
// A healthy tensor with the same role as `name` in `report` (nullopt when none): what a dead
// tensor is shown next to.
std::optional<std::string> healthy_counterpart(const analysis::ScanReport& report, const std::string& name);

// Markers for a timeline: last healthy checkpoint, collapse onset, first collapsed step
// (the last only when it differs from the onset). Ordered by step.
std::vector<TimelineMarker> timeline_markers(const analysis::Timeline& t);

// The layer-role labels of a timeline in first-seen order (layers.N.role), and one figure per
// point for a label (NaN where the point lacks it): what the timeline view plots.
std::vector<std::string> timeline_labels(const analysis::Timeline& t);
enum class SeriesFigure { Std, TernaryZero, Absmean };
std::vector<double> timeline_series(const analysis::Timeline& t, const std::string& label, SeriesFigure f);

// Every checkpoint loaded, as refs (file documents and each step of runs), for compare pickers.
std::vector<CheckpointRef> all_checkpoints(const AppState& s);
std::string checkpoint_label(const AppState& s, const CheckpointRef& ref);
// Default pair to compare: for a run, its last healthy checkpoint against the onset (else its
// first against its last); else the two most recently opened checkpoints.
std::optional<std::pair<CheckpointRef, CheckpointRef>> default_compare_pair(const AppState& s);
// Row order of the diff table.
std::vector<std::size_t> diff_order(const analysis::CheckpointDiff& d, DiffColumn column, bool ascending);

// The checkpoint the selected document shows, as a ref; nullopt when nothing is open.
std::optional<CheckpointRef> current_checkpoint_ref(const AppState& s);

#ifdef BITFSCK_APP_HAVE_MODEL
// The latest probe of that checkpoint (nullptr when none); the heat map shows it.
const InductionResult* induction_result_for(const AppState& s, const CheckpointRef& ref);
// Keeps a finished probe (replacing an older one of the same checkpoint, dropping the oldest past
// kMaxInductionResults) and selects its top head by IPMR.
void add_induction_result(AppState& s, InductionResult r);
#endif

// Findings of a report about one layer-role (its label or any of its tensors).
std::vector<const analysis::Finding*> findings_about(const std::vector<analysis::Finding>& findings,
                                                     const analysis::LayerRoleStats& l);

// --- recent files, log -----------------------------------------------------------------------

// Puts path first, dropping an older entry for the same file and anything past `cap`.
void add_recent(std::vector<std::string>& recent, const std::filesystem::path& path, std::size_t cap = kMaxRecent);
std::string recent_to_json(const std::vector<std::string>& recent);
// Tolerates a missing or damaged file's text: returns what could be read.
std::vector<std::string> recent_from_json(const std::string& text, std::size_t cap = kMaxRecent);

void log_info(AppState& s, std::string text);
void log_error(AppState& s, std::string text);

}  // namespace bitfsck::app
