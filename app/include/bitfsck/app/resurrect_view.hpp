#pragma once
// The resurrection view's logic without a window: where the run, its data and the output go, the
// recipe as the user edits it (its JSON text), the plan and the run as background jobs, and the
// live curves of the stage being fine-tuned. Planning and running are bitfsck_repair's
// (plan_resurrection, run_resurrection); the curves are analysis::read_training_metrics of the
// finetune stage's metrics file.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "bitfsck/io/error.hpp"  // first: analysis headers use bitfsck::Error
#include "bitfsck/analysis/training_metrics.hpp"
#include "bitfsck/app/job.hpp"
#include "bitfsck/app/job_registry.hpp"
#include "bitfsck/repair/resurrect.hpp"

namespace bitfsck::app {

struct ResurrectView {
    std::string run;                        // a run folder or checkpoint (default: the selected document)
    std::string tokens, val_tokens;         // default: train.bin / val.bin beside the run when present
    std::string out_dir;                    // default: <run>.resurrected/
    std::string recipe_text;                // the plan as editable JSON
    std::string recipe_error;               // why recipe_text does not parse
    std::optional<repair::Recipe> plan;     // the last plan (its reasons are shown)
    std::shared_ptr<Job<repair::Recipe>> plan_job;          // handles on this view's jobs (app_state.hpp's registry runs them)
    std::shared_ptr<Job<repair::ResurrectionLog>> run_job;
    std::optional<repair::ResurrectionLog> log;   // the last finished run, or one opened from disk
    std::optional<analysis::MetricsTimeline> live; // curves of the stage being fine-tuned
    std::filesystem::path live_file;
    double live_read_at = 0;                // ImGui time of the last read
    std::string error;
};

// Fills run, tokens, val_tokens and out_dir from a run path where they are empty.
void default_resurrect_paths(ResurrectView& v, const std::filesystem::path& run);
// The bitfsck executable the run's stages call: $BITFSCK, else beside this executable, else
// ../cli/bitfsck from it (the build tree), else "bitfsck" on PATH. Empty when none is found.
std::filesystem::path find_bitfsck_executable();
// The newest finetune stage's (or baseline's) metrics file under out_dir, if any.
std::optional<std::filesystem::path> live_metrics_file(const std::filesystem::path& out_dir);
// A finished (or running) resurrection's log in out_dir, if one is there.
std::optional<repair::ResurrectionLog> read_resurrection_log(const std::filesystem::path& out_dir);

// Starts planning v.run in the background; when it ends the recipe text is filled in.
void start_resurrect_plan(JobRegistry& jobs, ResurrectView& v);
// Parses v.recipe_text and starts the run in the background; false (with v.recipe_error or
// v.error set) when the recipe or the paths are not usable. When it ends, v.log holds the result.
bool start_resurrect_run(JobRegistry& jobs, ResurrectView& v);
// Refreshes the live curves of a running resurrection (twice a second).
void poll_resurrect(ResurrectView& v, double now);

}  // namespace bitfsck::app
