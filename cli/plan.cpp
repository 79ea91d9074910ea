// bitfsck plan RUN_DIR|CKPT...: diagnose a collapsed run and propose a resurrection recipe.
#include <iostream>
#include <memory>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/repair/resurrect.hpp"
#include "subcommands.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

struct PlanFlags {
    std::vector<std::string> inputs;
    std::string recipe_out;
    std::int64_t steps = 150;
    double lr = 1e-3;
    bool json = false;
};

void print_recipe(const repair::Recipe& r) {
    std::cout << bold("diagnosis") << "\n";
    for (const auto& d : r.diagnosis) std::cout << "  " << d << "\n";
    std::cout << bold("recipe") << "\n";
    for (std::size_t i = 0; i < r.stages.size(); ++i) {
        const auto& s = r.stages[i];
        std::cout << "  " << i + 1 << ". " << bold(std::string(repair::stage_name(s.kind))) << " " << s.params.dump() << "\n"
                  << "     why: " << s.reason << "\n";
    }
    std::cout << "  gates: a stage may not raise the validation loss by more than " << r.gates.val_loss_tolerance
              << " nats, newly collapse a layer-role, or make greedy generation degenerate\n";
    if (r.baselines)
        std::cout << "  baselines: the run's own checkpoints, and fine-tuning with the run's own settings " << r.baseline_finetune.dump() << "\n";
}

void run(const PlanFlags& f) {
    repair::PlanOptions po;
    po.finetune_steps = f.steps;
    po.lr = f.lr;
    ProgressLine progress("plan");
    po.progress = progress.callback();
    const repair::Recipe r = repair::plan_resurrection(f.inputs, po);
    progress.finish();
    for (const auto& s : r.skipped) {
        print_error(s);  // left out; the plan is made of the rest
        set_exit_code(kUnreadable);
    }
    if (!f.recipe_out.empty()) {
        io::ensure_not_an_input(f.recipe_out, std::vector<std::filesystem::path>(r.inputs.begin(), r.inputs.end()));
        io::write_file_atomically(f.recipe_out, repair::to_json(r).dump(2) + "\n");
    }
    if (f.json) std::cout << repair::to_json(r).dump(2) << "\n";
    else {
        print_recipe(r);
        if (!f.recipe_out.empty()) std::cout << "recipe: " << f.recipe_out << " (edit it, then bitfsck resurrect ... --recipe " << f.recipe_out << ")\n";
    }
}

}  // namespace

void add_plan_subcommand(CLI::App& app) {
    auto f = std::make_shared<PlanFlags>();
    auto* sub = app.add_subcommand("plan", "Diagnose a collapsed run and propose a resurrection recipe, with a reason for every choice");
    sub->add_option("inputs", f->inputs, "A run folder or its checkpoint files")->required();
    sub->add_option("-o,--output", f->recipe_out, "Write the recipe JSON here (for editing and resurrect --recipe)");
    sub->add_option("--steps", f->steps, "Fine-tuning steps of the proposed finetune stage")->capture_default_str();
    sub->add_option("--lr", f->lr, "Peak learning rate of the proposed finetune stage")->capture_default_str();
    sub->add_flag("--json", f->json, "Print the recipe as JSON on stdout");
    sub->footer("Example:\n  bitfsck plan sample_ckpts/run/ -o recipe.json\n"
                "Exit codes: 0 ok, 1 nothing to resurrect from, 2 unreadable input.");
    sub->callback([f] { run_reporting_errors([&] { run(*f); }); });
}

}  // namespace bitfsck::cli
