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
    std::optional<std::int64_t> steps, budget_tokens;
    std::optional<double> lr;
    bool json = false, no_search = false;
};

void print_recipe(const repair::Recipe& r) {
    std::cout << bold("diagnosis") << "\n";
    for (const auto& d : r.diagnosis) std::cout << "  " << d << "\n";
    std::cout << bold("recipe") << "\n";
    for (std::size_t i = 0; i < r.stages.size(); ++i) {
        const auto& s = r.stages[i];
        if (s.kind == repair::StageKind::Search) {
            // Its parameters are a page of JSON (-o writes them): here, the candidates by name.
            std::cout << "  " << i + 1 << ". " << bold("search") << " " << s.params.value("steps", std::int64_t{0}) << " steps, rungs "
                      << s.params.value("rungs", nlohmann::json::array()).dump() << "\n";
            for (const auto& c : s.params.value("candidates", nlohmann::json::array()))
                std::cout << "       " << c.value("name", std::string()) << "\n";
        } else {
            std::cout << "  " << i + 1 << ". " << bold(std::string(repair::stage_name(s.kind))) << " " << s.params.dump() << "\n";
        }
        std::cout << "     why: " << s.reason << "\n";
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
    po.budget_tokens = f.budget_tokens;
    po.search = !f.no_search;
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
    sub->add_option("--steps", f->steps, "Fine-tuning steps (default: from --budget-tokens, else half the tokens the run trained after its "
                                         "last healthy checkpoint)");
    sub->add_option("--budget-tokens", f->budget_tokens, "Fine-tuning tokens for the result and each baseline")->check(CLI::PositiveNumber);
    sub->add_option("--lr", f->lr, "Learning rate of the fine-tunes (default: the run's own config.train.lr, else a grid of 1e-3 and 3e-3)");
    sub->add_flag("--no-search", f->no_search, "The rule-based recipe (graft or pick, one double-well fine-tune) instead of a search over candidates");
    sub->add_flag("--json", f->json, "Print the recipe as JSON on stdout");
    sub->footer("Example:\n  bitfsck plan sample_ckpts/run/ -o recipe.json\n"
                "With a collapse and a checkpoint before it, the recipe is one search stage: candidates (the graft or the\n"
                "last healthy checkpoint whole; double-well, three-peaks, Wasserstein or no regularizer; the learning rate)\n"
                "that resurrect trains and halves by their loss on validation windows the claims never use.\n"
                "Exit codes: 0 ok, 1 nothing to resurrect from, 2 unreadable input.");
    sub->callback([f] { run_reporting_errors([&] { run(*f); }); });
}

}  // namespace bitfsck::cli
