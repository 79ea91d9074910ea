// bitfsck repair pick RUN: "time travel" to the last healthy checkpoint of a run.
#include <iostream>

#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/repair/repair.hpp"
#include "bitfsck/repair/repair_json.hpp"
#include "scan_options.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {

void add_repair_pick_subcommand(CLI::App& parent) {
    struct Flags {
        std::vector<std::string> inputs;
        std::string output;
        bool allow_degraded = false, json = false;
        std::shared_ptr<ScanFlags> scan = std::make_shared<ScanFlags>();
    };
    auto flags = std::make_shared<Flags>();
    auto* sub = parent.add_subcommand("pick", "Copy the last healthy checkpoint of a run as the starting point of a repair");
    sub->add_option("run", flags->inputs, "A run folder, or its checkpoint files")->required();
    sub->add_option("-o,--output", flags->output, "Where to copy it (the reasons go to OUT.repair.json)")->required();
    sub->add_flag("--allow-degraded", flags->allow_degraded, "Without a healthy checkpoint, take the last one before the collapse");
    sub->add_flag("--json", flags->json, "Print the log (JSON)");
    add_scan_flags(*sub, flags->scan);
    sub->footer(
        "Examples:\n  bitfsck repair pick runs/exp1 -o start.pt\n  bitfsck repair pick runs/exp1/step_*.pt -o start.pt --allow-degraded\n"
        "Exit codes: 0 copied, 1 no healthy checkpoint or bad arguments, 2 a checkpoint of the run was unreadable (the pick\n"
        "is made among the others) or the output could not be written.");
    sub->callback([flags] {
        run_reporting_errors([&] {
            repair::PickOptions options;
            options.scan = make_scan_options(*flags->scan);
            options.scan.content_hash = true;
            options.allow_degraded = flags->allow_degraded;
            ProgressLine progress("pick");
            options.scan.progress = progress.callback();
            const repair::RepairLog log = repair::pick_checkpoint(flags->inputs, flags->output, options);
            progress.finish();
            for (const auto& s : log.skipped) {
                print_error(s);  // left out; the pick is made among the rest
                set_exit_code(kUnreadable);
            }
            if (flags->json) {
                std::cout << analysis::dump_json(repair::to_json(log)) << "\n";
                return;
            }
            std::cout << "picked " << log.input << " -> " << flags->output << "\n";
            for (const auto& r : log.reasons) std::cout << "  " << r << "\n";
            std::cout << "log: " << repair::repair_log_path(flags->output).string() << "\n";
        });
    });
}

}  // namespace bitfsck::cli
