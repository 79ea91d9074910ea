// bitfsck repair inflate: push weights out of the quantizer's dead zone.
#include "repair_common.hpp"
#include "subcommands.hpp"
#include "validators.hpp"

namespace bitfsck::cli {

void add_repair_inflate_subcommand(CLI::App& parent) {
    auto flags = std::make_shared<RepairFlags>();
    auto params = std::make_shared<repair::InflateParams>();
    auto target = std::make_shared<double>(0);
    auto* sub = parent.add_subcommand("inflate", "Move the largest weights of the dead zone (|w| < tau*gamma) to +-target until the zero fraction is reached");
    add_repair_flags(*sub, flags);
    sub->add_option("--zeros", params->zeros, "Ternary zero fraction to reach")->check(CLI::Range(0.0, 1.0))->capture_default_str();
    sub->add_option("--tau", params->tau, "Dead zone |w| < tau * gamma (0.5: the quantizer's own zeros)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    sub->add_option("--target", *target, "Magnitude moved weights get (default: --like's absmean, else the healthy layers', else the own scale)")
        ->check(positive());
    sub->add_option("--seed", params->seed, "Seed for the signs of exact zeros (when --like has none)")->capture_default_str();
    sub->footer(repair_footer("  bitfsck repair inflate step_4000.pt -o inflated.pt --zeros 0.3\n"
                              "  bitfsck repair inflate step_4000.pt -o inflated.pt --like step_1000.pt --roles mlp\n"
                              "Weights outside the dead zone are never touched; signs come from the weight, else from --like, else --seed."));
    sub->callback([=] {
        repair::StepSpec step;
        step.kind = repair::StepKind::Inflate;
        step.inflate = *params;
        if (*target > 0) step.inflate.target = *target;
        run_repair_step(*flags, step);
    });
}

}  // namespace bitfsck::cli
