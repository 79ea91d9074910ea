// bitfsck resurrect RUN_DIR|CKPT... --tokens TRAIN --val-tokens VAL -o OUT_DIR: run a recipe.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "bitfsck/repair/resurrect.hpp"
#include "bitfsck/io/executable.hpp"
#include "subcommands.hpp"
#include "verdicts.hpp"
#include "terminal.hpp"

namespace bitfsck::cli {
namespace {

struct ResurrectFlags {
    std::vector<std::string> inputs;
    std::string tokens, val_tokens, out_dir, recipe, replay, token_dtype = "u16";
    std::optional<std::int64_t> steps, budget_tokens;
    bool keep_going = false, json = false, no_search = false;
    int jobs = 0;
    std::string control;
};

// The candidates, one line each: the selection loss at every rung each reached.
void print_search(const repair::SearchRecord& r) {
    std::cout << "         " << bold("candidates") << " (selection loss on " << r.selection_windows << " windows no claim uses; rungs of";
    for (auto steps : r.rung_steps) std::cout << " " << steps;
    std::cout << " steps)\n";
    std::size_t width = 0;
    for (const auto& c : r.candidates) width = std::max(width, c.name.size());
    for (const auto& c : r.candidates) {
        std::string losses;
        for (auto steps : r.rung_steps) {
            const auto loss = repair::selection_loss_at(c, steps);
            losses += loss ? fmt(" %.4f", *loss) : "       ";
        }
        std::string name = c.name;
        name.resize(width + 1, ' ');
        const std::string line = "         " + name + losses;
        std::cout << (c.winner ? green(line + "  won") : line) << "\n";
    }
}

void print_log(const repair::ResurrectionLog& log) {
    char line[256];
    std::snprintf(line, sizeof line, "start  %-10s val loss %.4f  %s", "", log.start.val_loss, std::string(analysis::verdict_name(log.start.verdict)).c_str());
    std::cout << line << "  (" << log.recipe.latest << ")\n";
    for (const auto& s : log.stages) {
        std::snprintf(line, sizeof line, "%-6zu %-10s val loss %.4f  %-9s %s", s.index, std::string(repair::stage_name(s.stage.kind)).c_str(),
                      s.after.val_loss, std::string(analysis::verdict_name(s.after.verdict)).c_str(), s.accepted ? "accepted" : "REJECTED");
        std::cout << (s.accepted ? std::string(line) : red(line)) << "\n";
        for (const auto& d : s.decisions) std::cout << "         " << d << "\n";
        if (s.search) print_search(*s.search);
    }
    std::cout << bold("baselines") << "\n";
    for (const auto& b : log.baselines) {
        std::snprintf(line, sizeof line, "  %-30s val loss %.4f  %s", b.name.c_str(), b.measurement.val_loss,
                      std::string(analysis::verdict_name(b.measurement.verdict)).c_str());
        std::cout << line << "\n";
    }
    std::cout << bold("claims") << " (held-out validation loss, the result vs each baseline)\n";
    for (const auto& c : log.claims) std::cout << "  " << c << "\n";
    if (log.control)
        std::cout << bold("control") << " " << log.control->checkpoint << "\n  " << log.control->summary << "\n";
    std::cout << "resurrected: " << log.output << "\n";
    if (!log.beats_best_baseline && log.best_baseline)
        std::cout << red("the result does not beat the best baseline, " + log.best_baseline->baseline + " (" + fmt("%.4f", log.best_baseline->baseline_loss) +
                         " vs " + fmt("%.4f", log.best_baseline->result_loss) + "): use " + log.best_baseline->checkpoint + " instead")
                  << "\n";
}

void run(const ResurrectFlags& f, const char* argv0) {
    // Ctrl-C (the terminal's one handler) makes the callback return false: the running child is
    // interrupted, a fine-tune saves, and the same command continues from there.
    ProgressLine progress("resurrect");
    const ProgressCallback on_progress = progress.callback();
    if (!f.replay.empty()) {
        if (f.out_dir.empty()) throw Error("--replay needs -o OUT_DIR (another folder than the logged run's)");
        const auto r = repair::replay_resurrection(f.replay, f.out_dir, io::self_executable(argv0), on_progress);
        progress.finish();
        print_log(r.log);
        std::cout << (r.identical ? green("identical: the replay reproduced resurrected.pt bit for bit")
                                  : red("different: the replay's resurrected.pt differs from the logged one (" + r.expected_hash + ")"))
                  << "\n";
        if (!r.identical) set_exit_code(kDegraded);
        return;
    }
    if (f.inputs.empty() || f.tokens.empty() || f.val_tokens.empty() || f.out_dir.empty())
        throw Error("resurrect needs RUN_DIR|CKPT..., --tokens, --val-tokens and -o OUT_DIR (or --replay LOG -o OUT_DIR)");
    repair::ResurrectOptions o;
    o.inputs = f.inputs;
    o.tokens = f.tokens;
    o.val_tokens = f.val_tokens;
    o.token_dtype = f.token_dtype;
    o.out_dir = f.out_dir;
    o.plan.finetune_steps = f.steps;
    o.plan.budget_tokens = f.budget_tokens;
    o.plan.search = !f.no_search;
    if (!f.recipe.empty()) {
        std::ifstream in(f.recipe);
        if (!in) throw io::FileError(f.recipe + ": cannot open");
        const auto j = nlohmann::json::parse(in, nullptr, false);
        if (j.is_discarded()) throw Error(f.recipe + ": not JSON");
        o.recipe = repair::recipe_from_json(j, f.recipe);
    }
    o.bitfsck = io::self_executable(argv0);
    o.keep_going = f.keep_going;
    o.jobs = f.jobs;
    o.control = f.control;
    o.progress = on_progress;
    const repair::ResurrectionLog log = repair::run_resurrection(o);
    progress.finish();
    if (log.already_complete && !f.json)
        std::cout << "already complete: " << (std::filesystem::path(f.out_dir) / "resurrection.json").string()
                  << " describes this run, finished; nothing was rerun\n";
    if (f.json) std::cout << repair::to_json(log).dump(2) << "\n";
    else {
        print_log(log);
        std::cout << "log: " << (std::filesystem::path(f.out_dir) / "resurrection.json").string()
                  << "\nreport: " << (std::filesystem::path(f.out_dir) / "report.html").string() << "\n";
    }
    const repair::Measurement* final_m = &log.start;
    for (const auto& s : log.stages)
        if (s.accepted) final_m = &s.after;
    set_verdict_exit_code(final_m->verdict);
    if (final_m->verdict == analysis::Verdict::Healthy && !log.beats_best_baseline) set_exit_code(kNotBetterThanBaseline);
}

}  // namespace

void add_resurrect_subcommand(CLI::App& app) {
    auto f = std::make_shared<ResurrectFlags>();
    auto* sub = app.add_subcommand("resurrect", "Run a resurrection recipe: stages measured on held-out data, gated, compared with baselines");
    sub->add_option("inputs", f->inputs, "A run folder or its checkpoint files")->check(CLI::ExistingPath);
    sub->add_option("--tokens", f->tokens, "Training tokens (raw little-endian ids or .npy)")->check(CLI::ExistingFile);
    sub->add_option("--val-tokens", f->val_tokens, "Held-out validation tokens: every measurement and claim uses them")->check(CLI::ExistingFile);
    sub->add_option("--token-dtype", f->token_dtype, "u16 or u32")->check(CLI::IsMember({"u16", "u32"}))->capture_default_str();
    sub->add_option("-o,--output", f->out_dir, "Output folder (created; a rerun with the same recipe resumes in it)");
    sub->add_option("--recipe", f->recipe, "Recipe JSON from `bitfsck plan -o` (default: plan now)")->check(CLI::ExistingFile);
    sub->add_option("--steps", f->steps, "Fine-tuning steps when planning now (default: from --budget-tokens or the run)");
    sub->add_option("--budget-tokens", f->budget_tokens, "Fine-tuning tokens when planning now, for the result and each baseline "
                                                         "(default: half the tokens the run trained after its last healthy checkpoint)")
        ->check(CLI::PositiveNumber);
    sub->add_flag("--no-search", f->no_search, "When planning now: the rule-based recipe (graft or pick, one double-well fine-tune), no candidates");
    sub->add_flag("--keep-going", f->keep_going, "Keep stages that fail their gates");
    sub->add_option("--control", f->control, "A run of the same model that never collapsed (or one checkpoint of it): how much of its "
                                             "held-out quality the result recovers")->check(CLI::ExistingPath);
    sub->add_option("--jobs", f->jobs, "Child processes at once: fine-tunes, perplexity, probes (default: the cores over each child's CPU "
                                       "count in the recipe; the figures do not depend on it)")->check(CLI::NonNegativeNumber);
    sub->add_option("--replay", f->replay, "Re-run a logged resurrection (resurrection.json) into -o and compare")->check(CLI::ExistingFile);
    sub->add_flag("--json", f->json, "Print resurrection.json on stdout");
    sub->footer("Example:\n  bitfsck resurrect sample_ckpts/run/ --tokens sample_ckpts/run/train.bin --val-tokens sample_ckpts/run/val.bin -o cured/\n"
                "  bitfsck resurrect --replay cured/resurrection.json -o again/\n"
                "Writes OUT_DIR/resurrected.pt, stage_<i>_<kind>/, baseline_*/, resurrection.json and report.html.\n"
                "Ctrl-C stops after saving; the same command again continues: completed stages are kept and an interrupted\n"
                "fine-tune resumes from its last save (a finished folder says \"already complete\" and exits as it did).\n"
                "Without --recipe the plan searches: candidates (start, regularizer, learning rate) by successive halving,\n"
                "scored on the last quarter of the validation windows; the claims use the others.\n"
                "Claims compare the result with each baseline (fine-tunes of the same budget, the run's checkpoints) by a paired\n"
                "95% t-interval over the validation windows; a difference whose interval contains 0 is no difference.\n"
                "Exit codes: 0 healthy result that beats the best baseline, 1 bad options or a failed stage, 2 unreadable input,\n"
                "4/5 the result is degraded/collapsed, 7 healthy but not better than the best baseline (named; use it instead).");
    sub->callback([f] { run_reporting_errors([&] { run(*f, "bitfsck"); }); });
}

}  // namespace bitfsck::cli
