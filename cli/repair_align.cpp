// bitfsck repair align: optimal-transport alignment of weight distributions to the ternary lattice.
#include "repair_common.hpp"
#include "subcommands.hpp"
#include "validators.hpp"

namespace bitfsck::cli {

void add_repair_align_subcommand(CLI::App& parent) {
    auto flags = std::make_shared<RepairFlags>();
    auto strength = std::make_shared<double>(1.0);
    auto width = std::make_shared<double>(0.1);
    auto scale = std::make_shared<double>(0);
    auto masses = std::make_shared<std::vector<double>>();
    auto* sub = parent.add_subcommand("align", "Move each tensor's weights towards a three-peak distribution at {-S, 0, +S} (1-D optimal transport)");
    add_repair_flags(*sub, flags);
    sub->add_option("--strength", *strength, "t in [0, 1]: w <- (1-t) w + t T(w)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
    sub->add_option("--width", *width, "Width of each peak relative to S (sigma / S)")->check(non_negative())->capture_default_str();
    sub->add_option("--scale", *scale, "Fix S instead of solving for it")->check(positive());
    sub->add_option("--masses", *masses, "Target masses neg,zero,pos (default: --like's, else a healthy Gaussian layer's: 34.5/31.0/34.5%)")
        ->delimiter(',')
        ->expected(3);
    sub->footer(repair_footer("  bitfsck repair align step_4000.pt -o aligned.pt --like step_1000.pt\n"
                              "  bitfsck repair align step_4000.pt -o aligned.pt --strength 0.5 --scale 0.02\n"
                              "  bitfsck repair align step_4000.pt -o aligned.pt --masses 0.35,0.3,0.35 --roles mlp\n"
                              "S is solved so that the quantizer applied to the result gives the target zero mass, starting from\n"
                              "--like's scale, else the healthy layers of the same role, else the tensor's own."));
    sub->callback([=] {
        repair::StepSpec step;
        step.kind = repair::StepKind::Align;
        step.align.strength = *strength;
        step.align.width = *width;
        if (*scale > 0) step.align.scale = *scale;
        if (!masses->empty()) step.align.masses = repair::LatticeMasses{(*masses)[0], (*masses)[1], (*masses)[2]};
        run_repair_step(*flags, step);
    });
}

}  // namespace bitfsck::cli
