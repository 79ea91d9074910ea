#pragma once
// Opening files and run folders, and diffing, as background jobs. The work itself is the
// libraries' (Checkpoint::open, object_tree, scan_checkpoint, build_timeline, diff_checkpoints);
// this only sequences it, reports progress and hands the results to AppState.
#include <filesystem>
#include <vector>

#include "bitfsck/app/app_state.hpp"

namespace bitfsck::app {

// Opens and scans one file (Document with one checkpoint) or every checkpoint of a folder and
// builds the timeline. Runs on the calling thread; throws bitfsck::Error with a one-line message,
// analysis::Cancelled when control's cancel flag is set.
Document load_document(const std::filesystem::path& path, JobControl& control);

// Starts loading path in the background (nothing when it is already loading) and records it in
// the recent files.
void start_open(AppState& s, const std::filesystem::path& path);
// Starts diffing two loaded checkpoints (replacing a diff in progress).
void start_diff(AppState& s, const CheckpointRef& a, const CheckpointRef& b);
// Moves finished jobs' results into the state and logs errors; call once per frame.
// Returns the number of jobs that finished in this call.
int poll_jobs(AppState& s);
bool busy(const AppState& s);
void cancel_all(AppState& s);
// Progress of the jobs as one bar (0..1) and a line saying what is going on.
float overall_progress(const AppState& s, std::string* label);

}  // namespace bitfsck::app
