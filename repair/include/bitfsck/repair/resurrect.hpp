#pragma once
// Guided resurrection of a collapsed run: a plan (which checkpoint to start from, which roles to
// treat, which steps with which parameters, each with its reason), and a run of that plan that
// measures every stage on held-out data, rejects stages that make things worse, compares the
// result with baselines under the same budget, and writes a log, a report and the checkpoint.
//
// The repair steps run in this process; fine-tuning and the model probes (perplexity, induction,
// generate) run as `bitfsck` subprocesses, so this library stays free of LibTorch, a stage that
// crashes cannot take the run with it, and each stage's files are complete before the next starts.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/analysis/paired.hpp"
#include "bitfsck/analysis/report.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/progress.hpp"
#include "bitfsck/repair/selection.hpp"

namespace bitfsck::repair {

inline constexpr int kResurrectionSchemaVersion = 1;

enum class StageKind { Pick, Graft, Svd, Align, Inflate, Finetune, Search };
std::string_view stage_name(StageKind k);
StageKind parse_stage_kind(std::string_view s);  // throws bitfsck::Error

// One stage of a recipe. `params` is what the user edits:
//   pick      {"checkpoint": path}                       the start; chosen by the plan
//   graft     {"base": path, "donor": path, "roles": [...], "layers": "0-3"}
//             the base's tensors with the selected ones taken from the donor
//   svd|align|inflate  {"step": <repair step JSON>, "selection": {...}, "like": path}
//   finetune  {"steps", "lr", "lr_other", "optimizer", "reg": ["double-well:..."], "like": path, "warmup"}
//   search    {"steps", "rungs": [steps...], "eta", "selection_fraction", "graft": {graft params},
//              "candidates": [{"name", "start": path or "graft", "finetune": {finetune params}}],
//              "baseline": {finetune params}}
//             candidates chosen by successive halving (see run_search in resurrect_search.cpp)
struct RecipeStage {
    StageKind kind = StageKind::Pick;
    nlohmann::ordered_json params = nlohmann::ordered_json::object();
    std::string reason;
};

struct Gates {
    double val_loss_tolerance = 0.01;  // nats: a transforming stage may not raise the validation loss by more
    bool no_new_collapse = true;       // ... nor collapse a layer-role that was not collapsed
    bool no_new_degeneration = true;   // ... nor make greedy generation degenerate
};

struct Recipe {
    int schema_version = kResurrectionSchemaVersion;
    std::vector<std::string> inputs;  // the run's checkpoints, step order
    std::string latest;               // the run as it is now (what every stage is compared against first)
    std::optional<std::string> last_healthy;
    std::vector<std::string> diagnosis;  // what the plan saw, for a person
    std::vector<std::string> skipped;    // members of the run left out (unreadable, no step), with why
    std::vector<RecipeStage> stages;
    Gates gates;
    // Shared by the finetune stages, the baselines and the evaluation windows.
    std::int64_t seq_len = 64, batch = 16, eval_windows = 0;
    std::uint64_t seed = 1337;
    int threads = 1;                  // CPU threads of every subprocess: results depend on it
    bool baselines = true;
    nlohmann::ordered_json baseline_finetune = nlohmann::ordered_json::object();  // the run's own optimizer settings
};

struct PlanOptions {
    analysis::Thresholds thresholds;
    // The fine-tuning budget, in steps of the recipe's batch × seq_len tokens. Neither set: half the
    // tokens the run trained after its last healthy checkpoint (its config's batch and sequence
    // length and the checkpoints' steps), else 150 steps.
    std::optional<std::int64_t> finetune_steps, budget_tokens;
    // The candidates' learning rate; none: the run's own (config.train.lr) where stored, else a grid.
    std::optional<double> lr;
    // Choose the start, regularizer and learning rate by successive halving over candidates (a
    // search stage); false: the rule-based recipe (graft or pick, then one double-well fine-tune).
    bool search = true;
    ProgressCallback progress;  // bytes of the run scanned; false stops the plan (Cancelled)
};

// Scans the run (a folder or checkpoint files), finds the collapse and proposes a recipe.
// Throws bitfsck::Error when there is nothing to resurrect from (no healthy and no degraded point).
Recipe plan_resurrection(const std::vector<std::string>& inputs, const PlanOptions& options = {});

nlohmann::ordered_json to_json(const Recipe& r);
Recipe recipe_from_json(const nlohmann::json& j, const std::string& origin);  // throws bitfsck::Error naming origin

// The base checkpoint with the selected tensors (by default every ternary matrix of `roles`)
// taken from `donor` (same names, shapes and dtypes), written atomically in the base's format
// without its optimizer state. Returns the names replaced.
std::vector<std::string> graft_checkpoint(const std::filesystem::path& base, const std::filesystem::path& donor,
                                          const TensorSelection& selection, const std::filesystem::path& output);

// ---- running ---------------------------------------------------------------------------------

struct RoleFigure {
    std::string label;  // "layers.0.mlp_up"
    double std = 0, zero = 0;
    analysis::Verdict verdict = analysis::Verdict::Healthy;
};

struct Measurement {
    std::string checkpoint, content_hash;
    double val_loss = 0, perplexity = 0;
    std::vector<double> window_losses;        // each validation window's mean loss (the same windows everywhere)
    analysis::Verdict verdict = analysis::Verdict::Healthy;
    std::vector<RoleFigure> roles;            // ternary-matrix layer-roles
    std::vector<std::string> collapsed;       // labels of collapsed layer-roles
    bool probes = false;                      // the induction and generation probes ran
    std::int64_t specialist_heads = 0;
    std::vector<std::vector<double>> ipmr;    // [layer][head]
    std::string top_heads;                    // "L1.H0 0.96, L0.H2 0.40, ..."
    bool degenerate = false;
    std::vector<std::string> degeneration_reasons;
    std::string generation;
};

// A search stage's candidates: each one's selection loss (the validation windows the claims never
// use) at every rung it reached, and why the winner won.
struct CandidateResult {
    std::string name, start;                              // start: a checkpoint, or the search's graft
    std::vector<std::pair<std::int64_t, double>> rungs;   // (steps trained, selection loss)
    bool winner = false;
    std::string note;                                     // why it stopped, or why it won
};
// The candidate's selection loss after `steps` (a rung it reached; a lone survivor skips to the last).
std::optional<double> selection_loss_at(const CandidateResult& c, std::int64_t steps);

struct SearchRecord {
    std::vector<std::int64_t> rung_steps;
    std::int64_t selection_windows = 0;
    std::int64_t tokens = 0;             // every candidate's fine-tuning together
    std::vector<CandidateResult> candidates;
    std::string winner, why;
};

struct StageRecord {
    std::size_t index = 0;
    RecipeStage stage;
    std::string input, output;
    Measurement after;
    bool accepted = true;
    std::vector<std::string> decisions;
    double seconds = 0;
    std::optional<SearchRecord> search;  // search stages
};

struct BaselineRecord {
    std::string name, description;
    Measurement measurement;
};

// The result against one baseline on the same validation windows.
struct BaselineComparison {
    std::string baseline;       // BaselineRecord::name
    std::string checkpoint;     // the baseline's checkpoint (what to use instead when it wins)
    double result_loss = 0, baseline_loss = 0;
    // The baseline's loss minus the result's, per window: positive means the result predicts better.
    std::optional<analysis::PairedInterval> interval;  // none when window losses are missing (older logs)
    enum class Outcome { Beats, NoSignificantDifference, Worse } outcome = Outcome::NoSignificantDifference;
};
std::string_view outcome_name(BaselineComparison::Outcome o);  // "beats", "no significant difference", "worse"

// The result against a run of the same model that never collapsed (--control), on the same
// validation windows: how much of the control's held-out quality the resurrection recovers, and
// at what fine-tuning cost.
struct ControlRecord {
    std::string checkpoint;             // the control checkpoint measured
    Measurement measurement;            // its validation loss (no probes)
    BaselineComparison comparison;      // the result vs the control, paired (baseline = "control")
    // (start - result) / (start - control): the share of the gap between the collapsed checkpoint
    // and the control that the resurrection closed (1: as good as the control; above 1: better).
    // NaN when the start was not worse than the control.
    double recovered = 0;
    std::int64_t tokens = 0;            // the fine-tuning stages' tokens: steps × batch × seq_len
    std::string summary;                // the above in one sentence, as the CLI and report.html say it
};

struct ResurrectionLog {
    int schema_version = kResurrectionSchemaVersion;
    Recipe recipe;
    std::string tokens, val_tokens, tokens_hash, val_tokens_hash, token_dtype;
    std::vector<std::pair<std::string, std::string>> input_hashes;
    // Validation windows every measurement and claim uses (the first ones of val_tokens), and the
    // ones after them that a search scored its candidates on (0 without a search).
    std::int64_t claim_windows = 0, selection_windows = 0;
    std::int64_t budget_tokens = 0;     // each baseline's fine-tuning tokens: the result's
    Measurement start;                  // the run's latest checkpoint
    std::vector<StageRecord> stages;
    std::vector<BaselineRecord> baselines;
    std::string output, output_hash;    // resurrected.pt
    std::vector<std::string> claims;    // recipe vs each baseline, on the validation loss
    std::vector<BaselineComparison> comparisons;  // the same, with paired 95% intervals
    // The baseline with the lowest validation loss, and whether the result beats it with an
    // interval that excludes 0; when not, that baseline's checkpoint is the one to use.
    std::optional<BaselineComparison> best_baseline;
    bool beats_best_baseline = true;
    std::optional<ControlRecord> control;
    bool complete = false;
    double seconds = 0;
    bool already_complete = false;  // not written: this call found the run finished and reran nothing
};

struct ResurrectOptions {
    std::vector<std::string> inputs;
    std::filesystem::path tokens, val_tokens, out_dir;
    std::string token_dtype = "u16";
    std::optional<Recipe> recipe;          // none: plan_resurrection(inputs)
    PlanOptions plan;
    std::filesystem::path bitfsck;         // the executable that runs finetune and the probes
    bool keep_going = false;               // apply rejected stages anyway
    // Child processes at once (fine-tunes, perplexity and probes); 0: the cores over the recipe's
    // threads. Each child's figures are the same however many run beside it.
    int jobs = 0;
    // A run of the same model that never collapsed, or one of its checkpoints: a folder gives its
    // checkpoint named like the run's latest, else its last by name. Empty: none.
    std::string control;
    // Phases done (the start, each stage, the baselines; unit: stages), the label says which and,
    // in a fine-tune, its step. A false return interrupts the running child (a fine-tune saves
    // what it reached) and throws Cancelled; the same call again continues from there.
    ProgressCallback progress;
};

// Runs the recipe into out_dir (created): stage_<i>_<kind>/ folders, resurrected.pt,
// resurrection.json (after every stage, atomically) and report.html. A run whose
// resurrection.json names the same recipe and inputs continues after its last completed stage.
// Throws bitfsck::Error for bad input or a failed stage (the message names the stage and file).
ResurrectionLog run_resurrection(const ResurrectOptions& options);

// Re-runs a logged resurrection (same inputs, checked by hash) into out_dir and says whether
// resurrected.pt came out bit for bit the same.
struct ResurrectionReplay {
    ResurrectionLog log;
    std::string expected_hash;
    bool identical = false;
};
ResurrectionReplay replay_resurrection(const std::filesystem::path& log_file, const std::filesystem::path& out_dir,
                                       const std::filesystem::path& bitfsck,
                                       const ProgressCallback& progress = {});

nlohmann::ordered_json to_json(const ResurrectionLog& log);
ResurrectionLog resurrection_log_from_json(const nlohmann::json& j, const std::string& origin);

// report.html: self-contained (inline SVG, no network).
std::string resurrection_report_html(const ResurrectionLog& log);

}  // namespace bitfsck::repair
