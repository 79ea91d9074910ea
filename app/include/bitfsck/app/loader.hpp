#pragma once
// Opening files and run folders, and diffing, as background jobs. The work itself is the
// libraries' (Checkpoint::open, object_tree, scan_checkpoint, build_timeline, diff_checkpoints,
// model::run_induction);
// this only sequences it, reports progress and hands the results to AppState.
#include <filesystem>
#include <vector>

#include "bitfsck/app/app_state.hpp"

namespace bitfsck::app {

// Opens and scans one file (Document with one checkpoint) or every checkpoint of a folder and
// builds the timeline. Runs on the calling thread; throws bitfsck::Error with a one-line message,
// Cancelled when Cancel is pressed.
Document load_document(const std::filesystem::path& path, JobControl& control);

// Starts loading path in the background (nothing when it is already loading) and records it in
// the recent files.
void start_open(AppState& s, const std::filesystem::path& path);
// Starts diffing two loaded checkpoints (replacing a diff in progress).
void start_diff(AppState& s, const CheckpointRef& a, const CheckpointRef& b);
// Starts the induction probe (model::run_induction) of a loaded checkpoint with these parameters,
// replacing a probe in progress. False, with the reason in the log, when the checkpoint is not
// open or the app was built without model/.
bool start_induction(AppState& s, const CheckpointRef& ref, const InductionParams& params);
// Starts previewing `tensor` of a loaded checkpoint repaired with `params` (repair::preview_repair),
// replacing a preview in progress. False, with the reason in the log, when the checkpoint is not open.
bool start_repair_preview(AppState& s, const CheckpointRef& ref, const std::string& tensor, const RepairParams& params);
// The same on the calling thread (the screenshot mode): the preview, or its error in
// s.repair.preview_error and the log.
bool run_repair_preview(AppState& s, const CheckpointRef& ref, const std::string& tensor, const RepairParams& params);
// Starts writing the repair of a loaded checkpoint (repair::repair_checkpoint) to `output` in the
// background; when it is done the output is opened as a new document and compared with its source.
// `only_tensor` non-empty: repair only that tensor. False (reason in the log) when one is running.
bool start_repair_run(AppState& s, const CheckpointRef& ref, const RepairParams& params, const std::filesystem::path& output,
                      const std::string& only_tensor = {});
// Moves finished jobs' results into the state and logs errors; call once per frame.
// Returns the number of jobs that finished in this call.
int poll_jobs(AppState& s);
bool busy(const AppState& s);
void cancel_all(AppState& s);
// Progress of the jobs as one bar (0..1) and a line saying what is going on.
float overall_progress(const AppState& s, std::string* label);

}  // namespace bitfsck::app
