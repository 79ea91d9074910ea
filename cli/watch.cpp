// bitfsck watch RUN_DIR: follows a training run's folder as checkpoints appear, scans each one
// once it is complete, prints a line per checkpoint and an alert at the collapse onset, and with
// --until-collapse exits at the onset with the scan's code so that a job script can stop the run.
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>

#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/run_watch.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"
#include "verdicts.hpp"

namespace bitfsck::cli {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

struct WatchFlags {
    std::string folder;
    bool until_collapse = false;
    bool json = false;
    bool no_inotify = false;
    double idle_exit = -1;  // seconds; < 0: never
    double settle = 2, poll = 1, broken_after = 60;
    SelectionFlags selection;
};

milliseconds seconds_flag(double s) { return milliseconds(static_cast<long long>(std::llround(s * 1000))); }

void print_event(const analysis::WatchEvent& e) {
    using Kind = analysis::WatchEvent::Kind;
    switch (e.kind) {
        case Kind::Checkpoint: {
            const auto& p = *e.point;
            const std::string verdict(analysis::verdict_name(p.verdict));
            const std::string step = "step " + std::to_string(p.step) + (p.step_from_file_name ? "*" : "");
            std::cout << step << std::string(step.size() < 10 ? 10 - step.size() : 0, ' ') << "  " << in_verdict_colour(p.verdict, verdict)
                      << std::string(verdict.size() < 9 ? 9 - verdict.size() : 0, ' ') << "  " << e.input.filename().string();
            for (const auto& r : p.roles)
                std::cout << "  " << analysis::role_name(r.role) << " "
                          << in_verdict_colour(r.worst, fmt("%.2e", r.mean_std) + "/" + fmt("%.0f%%", 100 * r.mean_zero));
            std::cout << std::endl;  // one line as soon as it is known, also through a pipe
            break;
        }
        case Kind::Unreadable: std::cout << red("unreadable") << "  " << e.error << std::endl; break;
        case Kind::Removed: std::cout << "removed  " << e.input.filename().string() << std::endl; break;
        case Kind::Onset: {
            const analysis::Timeline& t = *e.timeline;
            std::cout << bold(red("collapse onset at step " + std::to_string(*t.onset_step))) << " (" << t.onset_file << ")";
            std::string roles;
            for (const auto& o : t.role_onsets)
                if (o.step == *t.onset_step) roles += (roles.empty() ? "" : ", ") + analysis::layer_role_label(o.layer, o.role);
            if (!roles.empty()) std::cout << ": " << roles;
            std::cout << "\n";
            for (std::size_t i = 0; i < t.reasons.size() && i < 6; ++i)
                std::cout << "  " << analysis::verdict_name(t.reasons[i].severity) << ": " << t.reasons[i].message << "\n";
            if (t.reasons.size() > 6) std::cout << "  ... and " << t.reasons.size() - 6 << " more\n";
            if (t.last_healthy_step)
                std::cout << "  go back to: " << bold(t.last_healthy_file) << " (step " << *t.last_healthy_step << ", the last healthy checkpoint)";
            else
                std::cout << "  no healthy checkpoint before it";
            std::cout << std::endl;
            break;
        }
    }
}

void run_watch(const WatchFlags& flags, const ScanFlags& scan_flags) {
    if (flags.settle < 0 || flags.poll <= 0 || flags.broken_after < 0)
        throw CLI::ValidationError("--settle, --poll, --broken-after", "take seconds > 0");
    analysis::RunWatchOptions options;
    options.scan = make_run_scan_options(scan_flags, flags.selection);
    options.folder.settle = seconds_flag(flags.settle);
    options.folder.poll = seconds_flag(flags.poll);
    options.folder.use_inotify = !flags.no_inotify;
    options.broken_after = seconds_flag(flags.broken_after);
    if (flags.idle_exit >= 0) options.idle_exit = seconds_flag(flags.idle_exit);

    // Progress of a scan in flight on stderr; the waits between checkpoints draw nothing.
    ProgressLine progress("watch");
    ProgressCallback draw = progress.callback();
    options.scan.scan.progress = [draw](const Progress& p) { return p.total == 0 ? !interrupted() : draw(p); };
    bool security = false;
    options.on_event = [&](const analysis::WatchEvent& e) {
        progress.finish();
        if (flags.json) std::cout << analysis::to_json(e).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << std::endl;
        else print_event(e);
        if (e.kind == analysis::WatchEvent::Kind::Unreadable) set_exit_code(kUnreadable);
        if (e.kind == analysis::WatchEvent::Kind::Checkpoint && e.point && e.point->security_findings > 0) security = true;
        return !(flags.until_collapse && e.kind == analysis::WatchEvent::Kind::Onset);
    };
    if (!quiet() && stderr_is_terminal())
        print_warning("watching " + flags.folder + (flags.idle_exit >= 0 ? " until idle for " + fmt("%g", flags.idle_exit) + " s" : "") +
                      (flags.until_collapse ? ", until the collapse onset" : "") + " (Ctrl-C stops)");
    const analysis::RunWatchResult result = analysis::watch_run(flags.folder, options);
    progress.finish();
    if (security) set_exit_code(kSecurity);
    // As timeline: the run's state now decides the code (at --until-collapse, the onset's).
    if (result.verdict) set_verdict_exit_code(*result.verdict);
}

}  // namespace

void add_watch_subcommand(CLI::App& app) {
    auto flags = std::make_shared<WatchFlags>();
    auto scan_flags = std::make_shared<ScanFlags>();
    auto* sub = app.add_subcommand("watch", "Follow a training run's folder: scan each new checkpoint once complete, alert at the collapse onset");
    sub->add_option("run_dir", flags->folder, "The folder the run saves its checkpoints in")->required();
    sub->add_flag("--until-collapse", flags->until_collapse,
                  "Exit at the collapse onset (the first checkpoint that is not healthy) with the scan's code, 4 or 5");
    sub->add_option("--idle-exit", flags->idle_exit, "Exit once no checkpoint has appeared or changed for SECONDS (default: never)");
    sub->add_option("--settle", flags->settle, "A checkpoint is complete once its size and time have held for SECONDS")->capture_default_str();
    sub->add_option("--poll", flags->poll, "Look at the folder at least every SECONDS (inotify wakes it sooner)")->capture_default_str();
    sub->add_option("--broken-after", flags->broken_after,
                    "Report a checkpoint as unreadable only once it has stayed unchanged and unreadable for SECONDS")
        ->capture_default_str();
    sub->add_flag("--no-inotify", flags->no_inotify, "Poll only (for file systems that send no events, such as NFS)");
    sub->add_flag("--json", flags->json, "One JSON object per line: checkpoint, unreadable, removed and onset events");
    add_scan_flags(*sub, scan_flags);
    add_selection_flags(*sub, flags->selection, "Judge");
    sub->footer(
        "Checkpoints already in the folder are scanned first; then each new one once it is complete (written to a\n"
        "temporary name and renamed, or written in place and left unchanged for --settle seconds). Hidden names and\n"
        "transformers' tmp-checkpoint-N folders are not checkpoints yet. The verdicts and the onset are timeline's.\n"
        "Example:\n"
        "  bitfsck watch runs/exp7/ --until-collapse || scancel $SLURM_JOB_ID\n"
        "  bitfsck watch runs/exp7/ --json --idle-exit 600 >> exp7.watch.jsonl\n"
        "Exit codes: 0 last checkpoint healthy, 1 usage, 2 missing folder or an unreadable checkpoint, 3 security findings,\n"
        "4 degraded, 5 collapsed, 6 unknown (at --until-collapse: the onset's), 130 Ctrl-C.");
    sub->callback([flags, scan_flags] { run_watch(*flags, *scan_flags); });
}

}  // namespace bitfsck::cli
