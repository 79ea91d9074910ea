// bitfsck repair <step>: the parent command; each step lives in its own file (repair_*.cpp).
#include "subcommands.hpp"

namespace bitfsck::cli {

void add_repair_subcommand(CLI::App& app) {
    auto* sub = app.add_subcommand("repair", "Repair collapsed tensors: svd, align, inflate; pick the last healthy checkpoint; replay a log");
    sub->require_subcommand(1);
    sub->footer(
        "Examples:\n"
        "  bitfsck repair pick runs/exp1 -o start.pt\n"
        "  bitfsck repair svd step_4000.pt -o svd.pt --roles mlp\n"
        "  bitfsck repair align step_4000.pt -o aligned.pt --like step_1000.pt\n"
        "  bitfsck repair inflate step_4000.pt -o inflated.pt --zeros 0.3\n"
        "  bitfsck repair replay inflated.pt.repair.json -o again.pt\n"
        "Every step writes a new file (never the input) and a log beside it: OUT.repair.json.");
    add_repair_svd_subcommand(*sub);
    add_repair_align_subcommand(*sub);
    add_repair_inflate_subcommand(*sub);
    add_repair_pick_subcommand(*sub);
    add_repair_replay_subcommand(*sub);
}

}  // namespace bitfsck::cli
