// bitfsck timeline DIR|FILES...: scans a training run's checkpoints in step order and says when
// collapse began and which checkpoint is the last healthy one to resume from.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "bitfsck/analysis/h5_report.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/text.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "table.hpp"
#include "timeline_metrics.hpp"
#include "terminal.hpp"
#include "verdicts.hpp"
#include "bitfsck/io/checkpoint_files.hpp"

namespace bitfsck::cli {
namespace {

namespace fs = std::filesystem;

struct TimelineFlags {
    std::vector<std::string> inputs;
    bool json = false;
    std::string h5;
    SelectionFlags selection;
};

void print_timeline(const analysis::Timeline& t) {
    // One column per ternary-matrix role seen anywhere in the run, in the summaries' order.
    std::vector<analysis::Role> roles;
    for (const auto& p : t.points)
        for (const auto& r : p.roles)
            if (std::find(roles.begin(), roles.end(), r.role) == roles.end()) roles.push_back(r.role);
    std::stable_sort(roles.begin(), roles.end(), [](analysis::Role a, analysis::Role b) {
        // MLP roles first, as in the summaries; then attention.
        return analysis::role_is_mlp(a) && !analysis::role_is_mlp(b);
    });
    std::vector<std::string> headers{"step", "verdict", "file"};
    for (auto r : roles) headers.push_back(std::string(analysis::role_name(r)) + " std/zeros");
    Table table(headers);
    for (const auto& p : t.points) {
        std::vector<std::string> row{std::to_string(p.step) + (p.step_from_file_name ? "*" : ""), coloured_verdict(p.verdict),
                                     fs::path(p.file).filename().string()};
        for (auto role : roles) {
            auto it = std::find_if(p.roles.begin(), p.roles.end(), [&](const analysis::RoleSummary& s) { return s.role == role; });
            if (it == p.roles.end()) {
                row.push_back("-");
                continue;
            }
            std::string cell = fmt("%.2e", it->mean_std) + " " + fmt("%.0f%%", 100 * it->mean_zero);
            row.push_back(it->worst == analysis::Verdict::Healthy ? cell : in_verdict_colour(it->worst, cell));
        }
        table.add(std::move(row));
    }
    for (const auto& skipped : t.skipped) {
        std::vector<std::string> row{"-", red("unreadable"), fs::path(skipped.file).filename().string()};
        row.resize(headers.size(), "-");
        table.add(std::move(row));
    }
    std::cout << table.render();
    if (std::any_of(t.points.begin(), t.points.end(), [](const auto& p) { return p.step_from_file_name; }))
        std::cout << "(* step taken from the file name)\n";

    if (!t.onset_step) {
        std::cout << "collapse onset: none (" << t.points.size() << " checkpoints, all healthy)\n";
    } else {
        std::cout << "collapse onset: " << bold("step " + std::to_string(*t.onset_step)) << " (" << t.onset_file << ")";
        if (t.collapsed_step && *t.collapsed_step != *t.onset_step) std::cout << ", collapsed from step " << *t.collapsed_step;
        std::cout << "\n";
        const std::size_t shown = std::min<std::size_t>(t.reasons.size(), 8);
        for (std::size_t i = 0; i < shown; ++i) std::cout << "  " << coloured_verdict(t.reasons[i].severity) << ": " << t.reasons[i].message << "\n";
        if (t.reasons.size() > shown) std::cout << "  ... and " << t.reasons.size() - shown << " more\n";
        if (t.role_onsets.size() > 1) {
            std::cout << "first failure per layer-role:";
            std::size_t n = std::min<std::size_t>(t.role_onsets.size(), 12);
            for (std::size_t i = 0; i < n; ++i)
                std::cout << (i ? ", " : " ") << analysis::layer_role_label(t.role_onsets[i].layer, t.role_onsets[i].role) << " @ "
                          << t.role_onsets[i].step;
            if (t.role_onsets.size() > n) std::cout << ", ...";
            std::cout << "\n";
        }
    }
    if (t.last_healthy_step)
        std::cout << "last healthy checkpoint: " << bold(t.last_healthy_file) << " (step " << *t.last_healthy_step << ")\n";
    else if (t.onset_step)
        std::cout << "last healthy checkpoint: none (the first checkpoint is already " << analysis::verdict_name(t.points.front().verdict)
                  << ")\n";
    // Between the first degraded and the first collapsed checkpoint there may be ones worth trying.
    if (t.collapsed_step && t.last_before_collapse_step && t.last_before_collapse_step != t.last_healthy_step) {
        auto it = std::find_if(t.points.begin(), t.points.end(), [&](const auto& p) { return p.step == *t.last_before_collapse_step; });
        std::cout << "last checkpoint before collapse: " << t.last_before_collapse_file << " (step " << *t.last_before_collapse_step
                  << ", " << coloured_verdict(it->verdict) << ")\n";
    }
}

void run_timeline(const TimelineFlags& flags, const ScanFlags& scan_flags) {
    if (flags.inputs.size() == 1 && is_metrics_file(flags.inputs[0])) {
        run_metrics_timeline(flags.inputs[0], flags.json, make_scan_options(scan_flags).thresholds);
        return;
    }
    analysis::RunScanOptions options = make_run_scan_options(scan_flags, flags.selection);
    if (!flags.h5.empty()) {
        std::vector<fs::path> inputs;
        for (const auto& in : io::expand_checkpoint_inputs(flags.inputs)) inputs.push_back(in);
        io::ensure_not_an_input(flags.h5, inputs);
    }
    ProgressLine progress("timeline");
    options.scan.progress = progress.callback();
    const std::vector<analysis::RunMember> members = analysis::scan_run(flags.inputs, options);
    progress.finish();
    for (const auto& m : members)
        if (m.report && !m.report->security.empty()) set_exit_code(kSecurity);
    const analysis::Timeline timeline = analysis::timeline_of(members);
    // A member left out is reported, in the table and here, and the rest still makes a timeline.
    for (const auto& s : timeline.skipped) {
        print_error(s.reason);
        set_exit_code(kUnreadable);
    }
    if (!flags.h5.empty()) {
        analysis::H5Report h5(flags.h5, BITFSCK_VERSION);
        for (const auto& m : members)
            if (m.report) h5.add_scan(*m.report);
        h5.add_timeline(timeline);
        h5.close();
    }

    if (flags.json) std::cout << analysis::dump_json(analysis::to_json(timeline, BITFSCK_VERSION)) << "\n";
    else print_timeline(timeline);

    // The run's state now is what matters for whether it can go on: the last step's verdict.
    set_verdict_exit_code(timeline.final_verdict);
}

}  // namespace

void add_timeline_subcommand(CLI::App& app) {
    auto flags = std::make_shared<TimelineFlags>();
    auto scan_flags = std::make_shared<ScanFlags>();
    auto* sub = app.add_subcommand("timeline", "Scan a training run's checkpoints in step order: collapse onset and the last healthy checkpoint");
    sub->add_option("inputs", flags->inputs, "A folder of checkpoints (*.pt, *.safetensors, *.bin), checkpoint files, or one finetune OUT.metrics.jsonl")
        ->required();
    sub->add_flag("--json", flags->json, "Print the timeline as JSON on stdout (schema: docs/timeline.schema.json)");
    sub->add_option("--h5", flags->h5, "Also write an HDF5 report: one group per checkpoint and a timeline group");
    add_scan_flags(*sub, scan_flags);
    add_selection_flags(*sub, flags->selection, "Judge");
    sub->footer(
        "Steps come from the checkpoint (step, global_step, ...) or else from the last digits of the file name.\n"
        "Example:\n  bitfsck timeline run/ --h5 run.h5\n  bitfsck timeline --json run/step_*.pt\n  bitfsck timeline cured.pt.metrics.jsonl   (a finetune run, step by step)\n"
        "Exit codes: 0 last step healthy, 2 unreadable file (the others still make the timeline), 3 security findings,\n"
        "4 last step degraded, 5 last step collapsed, 6 last step unknown.");
    sub->callback([flags, scan_flags] { run_timeline(*flags, *scan_flags); });
}

}  // namespace bitfsck::cli
