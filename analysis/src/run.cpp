#include "bitfsck/analysis/run.hpp"

#include <algorithm>
#include <atomic>

#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/parallel.hpp"

namespace bitfsck::analysis {

namespace fs = std::filesystem;

namespace {

std::string naming_file(const fs::path& file, const std::string& what) {
    return what.find(file.string()) != std::string::npos ? what : file.string() + ": " + what;
}

}  // namespace

std::vector<RunMember> scan_run(const std::vector<std::string>& inputs, const RunScanOptions& options) {
    const std::vector<fs::path> paths = io::expand_checkpoint_inputs(inputs);
    if (paths.empty())
        throw io::FileError((inputs.empty() ? std::string("the input") : inputs.front()) +
                                ": no checkpoint files (.pt, .pth, .ckpt, .bin, .safetensors, .gguf, .bit2, or a sharded model)",
                            inputs.empty() ? "" : inputs.front());
    std::vector<RunMember> members(paths.size());
    std::vector<std::uint64_t> sizes(paths.size());
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        members[i].input = paths[i];
        total += sizes[i] = io::checkpoint_input_size(paths[i]);
    }
    // Many members: one core each, members in parallel; one member: every core on its tensors.
    const bool many = paths.size() > 1;
    ProgressTracker progress(options.scan.progress, ProgressUnit::Bytes, total);
    std::atomic<std::uint64_t> finished{0};
    parallel_for(paths.size(), many ? options.scan.threads : 1, [&](std::size_t i) {
        progress.check();
        RunMember& m = members[i];
        ScanOptions so = options.scan;
        so.threads = many ? 1 : options.scan.threads;
        const std::uint64_t before = finished.load();
        so.progress = [&, before](const Progress& p) {
            if (!many) {
                try {
                    progress.set(before + p.done, m.input.filename().string() + " " + p.label);
                } catch (const Cancelled&) {
                    return false;
                }
            }
            return !progress.stopped();
        };
        try {
            auto c = std::make_shared<const io::Checkpoint>(io::Checkpoint::open(m.input, options.open));
            m.report = scan_checkpoint(*c, so);
            if (options.keep_checkpoints) m.checkpoint = std::move(c);
        } catch (const Cancelled&) {
            throw;
        } catch (const Error& e) {
            m.error = naming_file(m.input, e.what());
            m.error_kind = e.kind();
        }
        finished += sizes[i];
        progress.set(finished.load(), m.input.filename().string());
    });
    return members;
}

Timeline timeline_of(const std::vector<RunMember>& members) {
    std::vector<ScanReport> reports;
    std::vector<SkippedCheckpoint> skipped;
    for (const RunMember& m : members) {
        if (!m.report) {
            skipped.push_back({m.input.string(), m.error});
        } else if (!m.report->step && !step_from_file_name(m.report->file)) {
            skipped.push_back({m.input.string(), m.input.string() + ": no training step in the checkpoint and no digits in its name"});
        } else {
            reports.push_back(*m.report);
        }
    }
    if (reports.empty()) {
        if (skipped.empty()) throw TimelineError("no checkpoint to make a timeline of");
        // Nothing readable at all (a missing or broken input): that input's error, with its kind.
        const auto unreadable = std::find_if(members.begin(), members.end(), [](const RunMember& m) { return !m.report; });
        const std::string why = members.size() == 1 ? skipped.front().reason
                                                    : "none of the " + std::to_string(members.size()) +
                                                          " checkpoints can take a place in a timeline (" + skipped.front().reason + ")";
        if (unreadable != members.end() && members.size() == 1) throw Error(why, unreadable->error_kind, unreadable->input.string());
        throw TimelineError(why);
    }
    Timeline t = build_timeline(std::move(reports));
    t.skipped = std::move(skipped);
    return t;
}

}  // namespace bitfsck::analysis
