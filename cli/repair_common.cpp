#include "repair_common.hpp"

#include <cstdio>
#include <iostream>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/repair/repair_json.hpp"
#include "subcommands.hpp"
#include "table.hpp"
#include "terminal.hpp"
#include "verdicts.hpp"

namespace bitfsck::cli {
namespace {

std::string num(double v, const char* f = "%.3g") {
    char buf[48];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string pct(double v) { return num(100 * v, "%.1f"); }

std::string shape_text(const std::vector<std::int64_t>& s) {
    std::string o;
    for (std::size_t i = 0; i < s.size(); ++i) o += (i ? "x" : "") + std::to_string(s[i]);
    return o;
}

std::string step_detail(const repair::TensorRepair& t) {
    if (t.svd) return "rank " + std::to_string(t.svd->rank) + "/" + std::to_string(t.svd->max_rank) + ", energy " +
                      num(t.svd->energy_kept, "%.3f") + ", " + t.svd->solver + (t.svd->rank_floored ? " (rank floored to 1)" : "");
    if (t.align) return "S " + num(t.align->scale) + ", W2 " + num(t.align->w2_before) + "->" + num(t.align->w2_after) +
                        ", zeros " + pct(t.align->achieved.zero) + "% (target " + pct(t.align->target.zero) + "%)";
    if (t.inflate) return "moved " + std::to_string(t.inflate->moved) + " of " + std::to_string(t.inflate->in_dead_zone) +
                          " to +-" + num(t.inflate->target) + (t.inflate->reached ? "" : " (target not reached)");
    return "";
}

}  // namespace

void add_repair_flags(CLI::App& sub, const std::shared_ptr<RepairFlags>& flags) {
    sub.add_option("input", flags->input, "Checkpoint to repair (.pt or .safetensors, or a sharded folder or index; never modified)")
        ->required();
    sub.add_option("-o,--output", flags->output,
                   "Repaired checkpoint to write (a folder for a sharded input; the log goes to OUT.repair.json)")
        ->required();
    add_selection_flags(sub, flags->selection, "Repair");
    sub.add_option("--like", flags->like, "A healthy checkpoint of the same model: targets are measured on it, tensor by tensor");
    sub.add_flag("--drop-optimizer-state", flags->drop_optimizer_state, "Leave the optimizer state out of the output (smaller file)");
    sub.add_flag("--json", flags->json, "Print the repair log (JSON) instead of the table");
    add_scan_flags(sub, flags->scan);
}

std::string repair_footer(const std::string& examples) {
    return "Examples:\n" + examples +
           "\nDefault selection: the ternary matrices of every layer-role the scan calls degraded or collapsed.\n"
           "The output is scanned afresh; the log (OUT.repair.json) records the input's hash, every parameter, and\n"
           "before/after figures, and `bitfsck repair replay OUT.repair.json -o AGAIN.pt` reproduces it bit for bit.\n"
           "Exit codes: 0 written and healthy, 1 bad arguments or nothing to repair, 2 unreadable input or unwritable\n"
           "output, 4 written but still degraded, 5 written but still collapsed (the fresh scan's verdict).";
}

void run_repair_step(const RepairFlags& flags, const repair::StepSpec& step) {
    run_reporting_errors([&] {
        repair::RepairOptions options;
        options.step = step;
        options.selection = make_selection(flags.selection);
        if (!flags.like.empty()) options.like = flags.like;
        const analysis::ScanOptions so = make_scan_options(*flags.scan);
        options.quantizer = so.analysis.quantizer;
        options.thresholds = so.thresholds;
        options.threads = so.threads;
        options.drop_optimizer_state = flags.drop_optimizer_state;
        ProgressLine progress("repair " + std::string(repair::step_name(step.kind)));
        options.progress = progress.callback();
        const repair::RepairLog log = repair::repair_checkpoint(flags.input, flags.output, options);
        progress.finish();
        // The output was written; whether it is healthy is the fresh scan's to say, with the scan's codes.
        set_verdict_exit_code(log.verdict_after);

        if (flags.json) {
            std::cout << analysis::dump_json(repair::to_json(log)) << "\n";
            return;
        }
        std::cout << "repair " << repair::step_name(step.kind) << ": " << flags.input << " -> " << flags.output << "  ("
                  << log.tensors.size() << " tensors, " << num(log.seconds, "%.2f") << " s)\n";
        Table table({"tensor", "shape", "step", "change", "std before", "after", "zeros % before", "after"});
        for (const auto& t : log.tensors)
            table.add({t.name, shape_text(t.shape), step_detail(t), num(t.relative_change), num(t.before.std), num(t.after.std),
                       pct(t.before.zero), pct(t.after.zero)});
        std::cout << table.render();
        for (const auto& t : log.tensors)
            if (!t.scale_source.empty()) {
                std::cout << "scale from: " << t.scale_source << "\n";
                break;
            }
        std::cout << "verdict (fresh scan of the output): " << coloured_verdict(log.verdict_before) << " -> "
                  << coloured_verdict(log.verdict_after) << "\n";
        for (const auto& f : log.findings_after) std::cout << "  " << analysis::verdict_name(f.severity) << ": " << f.message << "\n";
        if (analysis::verdict_is_sick(log.verdict_after))
            std::cout << "the output is still " << analysis::verdict_name(log.verdict_after) << ": this step alone did not cure it"
                      << " (bitfsck plan proposes a recipe)\n";
        std::cout << "log: " << repair::repair_log_path(flags.output).string() << "\n";
    });
}

}  // namespace bitfsck::cli
