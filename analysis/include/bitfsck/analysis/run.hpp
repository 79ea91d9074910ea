#pragma once
// A run (or any list of checkpoint inputs) scanned one way for every front: scan, timeline,
// repair pick, plan, resurrect and the app see the same members with the same verdicts, and an
// unreadable member the same way: reported with its error, the others scanned.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/checkpoint.hpp"

namespace bitfsck::analysis {

struct RunMember {
    std::filesystem::path input;                        // a file, a sharded index or a model folder
    std::optional<ScanReport> report;                   // when it could be read
    std::shared_ptr<const io::Checkpoint> checkpoint;   // with RunScanOptions::keep_checkpoints
    std::string error;                                  // why it has no report (one line, names the file)
    ErrorKind error_kind = ErrorKind::Other;
};

struct RunScanOptions {
    ScanOptions scan;               // its progress counts the bytes of every member; false stops the run
    io::OpenOptions open;
    bool keep_checkpoints = false;  // keep each opened checkpoint in its member (the app shows tensors)
};

// Expands `inputs` (io::expand_checkpoint_inputs: run folders, sharded models, files) and scans
// every member, in input order: several members at once (one thread each) when there are
// several, one member on every thread otherwise. Throws FileError when the inputs name no
// checkpoint, Cancelled when the progress callback asks to stop; nothing else.
std::vector<RunMember> scan_run(const std::vector<std::string>& inputs, const RunScanOptions& options = {});

// The timeline of the readable members that have a step (ScanReport::step, else digits in the
// name); the others are in Timeline::skipped with their reasons. Throws TimelineError when no
// member is left, or when two claim the same step.
Timeline timeline_of(const std::vector<RunMember>& members);

}  // namespace bitfsck::analysis
