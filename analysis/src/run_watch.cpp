#include "bitfsck/analysis/run_watch.hpp"

#include <algorithm>
#include <map>

namespace bitfsck::analysis {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// What a watch knows of the run: the readable members and the ones that failed to read.
struct WatchState {
    struct Failing {
        RunMember member;
        Clock::time_point since;
        bool reported = false;
    };
    std::map<fs::path, RunMember> members;
    std::map<fs::path, Failing> failing;
    std::optional<Timeline> timeline;

    std::vector<RunMember> readable() const {
        std::vector<RunMember> out;
        for (const auto& [path, m] : members) out.push_back(m);
        return out;
    }
    // Throws TimelineError when the members make no timeline (two claim one step, or none has a step).
    void rebuild() {
        if (members.empty()) {
            timeline.reset();
            return;
        }
        timeline = timeline_of(readable());
    }
};

const TimelinePoint* point_of(const Timeline& t, const RunMember& m) {
    for (const auto& p : t.points)
        if (m.report && p.file == m.report->file) return &p;
    return nullptr;
}

}  // namespace

RunWatchResult watch_run(const fs::path& folder, const RunWatchOptions& options) {
    io::FolderWatch watch(folder, options.folder);
    WatchState state;
    RunWatchResult result;
    bool onset_announced = false;

    auto emit = [&](WatchEvent e) {
        e.timeline = state.timeline ? &*state.timeline : nullptr;
        return !options.on_event || options.on_event(e);
    };
    auto keep_going = [&] {
        return !options.scan.scan.progress ||
               options.scan.scan.progress(Progress{0, 0, ProgressUnit::Checkpoints, "waiting for checkpoints in " + folder.string()});
    };
    std::optional<Verdict> last_reported;
    auto finish = [&](WatchEnd end) {
        result.end = end;
        result.timeline = state.timeline;
        if (end == WatchEnd::StoppedByEvent && last_reported) result.verdict = last_reported;
        else if (state.timeline) result.verdict = state.timeline->final_verdict;
        return result;
    };
    auto report_unreadable = [&](WatchState::Failing& f) -> bool {
        f.reported = true;
        ++result.unreadable;
        WatchEvent e;
        e.kind = WatchEvent::Kind::Unreadable;
        e.input = f.member.input;
        e.error = f.member.error;
        return emit(std::move(e));
    };

    while (true) {
        if (!keep_going()) throw Cancelled();
        const std::vector<fs::path> ready = watch.settled();

        for (const fs::path& gone : watch.take_removed()) {
            state.failing.erase(gone);
            if (state.members.erase(gone) == 0) continue;
            state.rebuild();
            WatchEvent e;
            e.kind = WatchEvent::Kind::Removed;
            e.input = gone;
            if (!emit(std::move(e))) return finish(WatchEnd::StoppedByEvent);
        }

        if (!ready.empty()) {
            std::vector<std::string> inputs;
            for (const auto& p : ready) inputs.push_back(p.string());
            // The whole batch joins the timeline before any event: members arrive in name order
            // (checkpoint-1000 before checkpoint-500), and the onset must be the run's, not the
            // one of whichever arrived first.
            std::vector<fs::path> accepted;
            for (RunMember& m : scan_run(inputs, options.scan)) {
                const fs::path input = m.input;
                if (!m.report) {
                    // Perhaps still being written by a writer that paused: tried again when it changes.
                    state.failing[input] = {std::move(m), Clock::now()};
                    if (state.members.erase(input)) state.rebuild();
                    continue;
                }
                state.failing.erase(input);
                const std::string hash = m.report->content_hash;
                state.members[input] = std::move(m);
                try {
                    state.rebuild();
                } catch (const TimelineError& e) {
                    // Two checkpoints with one step: the same bytes under another name (last.ckpt
                    // beside step_500.ckpt) are one checkpoint; different bytes are refused.
                    RunMember refused = std::move(state.members[input]);
                    state.members.erase(input);
                    state.rebuild();
                    const bool alias = std::any_of(state.members.begin(), state.members.end(), [&](const auto& entry) {
                        return entry.second.report && entry.second.report->content_hash == hash;
                    });
                    if (alias) continue;
                    refused.error = e.what();
                    refused.report.reset();
                    WatchState::Failing f{std::move(refused), Clock::now()};
                    if (!report_unreadable(f)) return finish(WatchEnd::StoppedByEvent);
                    continue;
                }
                accepted.push_back(input);
            }
            // Events in step order, the onset right after the checkpoint where it is.
            std::vector<std::pair<std::int64_t, fs::path>> in_order;
            for (const auto& input : accepted)
                if (const TimelinePoint* p = point_of(*state.timeline, state.members[input])) in_order.emplace_back(p->step, input);
            std::sort(in_order.begin(), in_order.end());
            for (const auto& [step, input] : in_order) {
                ++result.scanned;
                WatchEvent e;
                e.kind = WatchEvent::Kind::Checkpoint;
                e.input = input;
                e.point = *point_of(*state.timeline, state.members[input]);
                last_reported = e.point->verdict;
                if (!emit(std::move(e))) return finish(WatchEnd::StoppedByEvent);
                if (!onset_announced && state.timeline->onset_step && step >= *state.timeline->onset_step) {
                    onset_announced = true;
                    WatchEvent onset;
                    onset.kind = WatchEvent::Kind::Onset;
                    onset.input = state.timeline->onset_file;
                    if (!emit(std::move(onset))) return finish(WatchEnd::StoppedByEvent);
                }
            }
        }

        const auto now = Clock::now();
        const bool idle = options.idle_exit && !watch.unsettled() && now - watch.last_change() >= *options.idle_exit;
        for (auto& [path, f] : state.failing) {
            // A writer at it again: not broken, only not finished; the clock starts over.
            if (watch.changing(path)) f.since = now;
            if (!f.reported && (idle || now - f.since >= options.broken_after))
                if (!report_unreadable(f)) return finish(WatchEnd::StoppedByEvent);
        }
        if (idle) return finish(WatchEnd::Idle);
    }
}

}  // namespace bitfsck::analysis
