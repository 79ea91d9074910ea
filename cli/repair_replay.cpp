// bitfsck repair replay LOG -o OUT: re-run a logged repair and check that the output is the same.
#include <iostream>

#include "bitfsck/io/error.hpp"
#include "bitfsck/repair/repair.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {

void add_repair_replay_subcommand(CLI::App& parent) {
    struct Flags {
        std::string log, output;
    };
    auto flags = std::make_shared<Flags>();
    auto* sub = parent.add_subcommand("replay", "Re-run the repair a log describes and check the output is bit for bit the same");
    sub->add_option("log", flags->log, "A repair log (OUT.repair.json)")->required()->check(CLI::ExistingFile);
    sub->add_option("-o,--output", flags->output, "Where to write the replayed checkpoint")->required();
    sub->footer(
        "Example:\n  bitfsck repair replay svd.pt.repair.json -o svd-again.pt\n"
        "Exit codes: 0 identical, 1 bad arguments or the output differs, 2 unreadable or changed input.");
    sub->callback([flags] {
        run_reporting_errors([&] {
            ProgressLine progress("replay");
            const repair::ReplayResult r = repair::replay_repair(
                flags->log, flags->output, progress.callback());
            progress.finish();
            std::cout << "replayed " << repair::step_name(r.log.step.kind) << " on " << r.log.input << " -> " << flags->output << "\n"
                      << "output " << r.log.output_hash << "\n"
                      << "logged " << r.expected_hash << "\n";
            if (r.identical) {
                std::cout << green("identical") << ": the replay reproduced the logged output bit for bit\n";
            } else {
                print_error(flags->output + ": differs from the output the log recorded");
                set_exit_code(kUsage);
            }
        });
    });
}

}  // namespace bitfsck::cli
