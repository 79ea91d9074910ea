#pragma once
// A run followed while it trains: each checkpoint scanned once it is complete, the timeline kept
// by the same rules as `bitfsck timeline` (the cross-checkpoint rule included), and the onset
// announced the first time the timeline has one. What `bitfsck watch` and any other front call.
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/folder_watch.hpp"

namespace bitfsck::analysis {

struct WatchEvent {
    enum class Kind {
        Checkpoint,  // a complete checkpoint was scanned: `point` is its place in the timeline now
        Unreadable,  // a checkpoint stayed unreadable after `broken_after` unchanged: `error`
        Removed,     // a checkpoint scanned before left the folder: the timeline no longer has it
        Onset,       // the timeline has an onset for the first time: `timeline` says where and why
    };
    Kind kind = Kind::Checkpoint;
    std::filesystem::path input;
    std::optional<TimelinePoint> point;
    std::string error;          // one line naming the file
    const Timeline* timeline = nullptr;  // the whole timeline after this event; valid during the call
};

struct RunWatchOptions {
    RunScanOptions scan;  // thresholds, selection, threads; its progress callback's false stops the watch
    io::FolderWatchOptions folder;
    // A checkpoint that cannot be read is tried again whenever it changes; it is reported as
    // unreadable only once it has stayed unchanged and unreadable this long (a writer that
    // pauses mid-file is not a broken checkpoint).
    std::chrono::milliseconds broken_after{std::chrono::seconds(60)};
    // Return when nothing new has settled for this long (a finished run); empty: never.
    std::optional<std::chrono::milliseconds> idle_exit;
    // Each event in order; return false to stop watching (e.g. at the onset).
    std::function<bool(const WatchEvent&)> on_event;
};

enum class WatchEnd { Idle, StoppedByEvent };

struct RunWatchResult {
    WatchEnd end = WatchEnd::Idle;
    std::optional<Timeline> timeline;  // empty when no checkpoint made a timeline
    // The run's state as the watch leaves it: the last step's verdict, or, when an event stopped
    // it, the verdict of the last checkpoint reported (at the onset: the onset's).
    std::optional<Verdict> verdict;
    std::size_t scanned = 0;           // checkpoints scanned (a rewritten one counts again)
    std::size_t unreadable = 0;
};

// Follows `folder` until idle_exit, until on_event returns false, or until the progress callback
// returns false (then throws Cancelled). Throws FileError when the folder is missing.
RunWatchResult watch_run(const std::filesystem::path& folder, const RunWatchOptions& options);

}  // namespace bitfsck::analysis
