// run_resurrection: the stages of a recipe, each measured on held-out data and gated against its
// input; baselines under the same budget; the log (after every stage, so a killed run resumes)
// and the report.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <thread>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "bitfsck/io/text.hpp"
#include "bitfsck/repair/repair.hpp"
#include "bitfsck/repair/repair_json.hpp"
#include "bitfsck/repair/resurrect.hpp"
#include "resurrect_runner.hpp"
#include "resurrect_search.hpp"

namespace bitfsck::repair {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using namespace detail;

namespace {

std::vector<std::string> newly(const std::vector<std::string>& after, const std::vector<std::string>& before) {
    std::vector<std::string> out;
    for (const auto& a : after)
        if (std::find(before.begin(), before.end(), a) == before.end()) out.push_back(a);
    return out;
}

std::string first_tokens_prompt(const fs::path& val, const std::string& dtype) {
    std::ifstream in(val, std::ios::binary);
    std::vector<std::uint32_t> ids;
    const int width = dtype == "u32" ? 4 : 2;
    for (int i = 0; i < 16; ++i) {
        unsigned char b[4] = {0, 0, 0, 0};
        if (!in.read(reinterpret_cast<char*>(b), width)) break;
        ids.push_back(b[0] | (b[1] << 8) | (width == 4 ? (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24) : 0));
    }
    // Byte-level text when every id is printable ASCII (generate reads bytes for a 256-token
    // vocabulary), else the ids themselves.
    const bool text = !ids.empty() && std::all_of(ids.begin(), ids.end(), [](std::uint32_t i) { return i >= 32 && i < 127; });
    std::string s;
    for (auto id : ids) s += text ? std::string(1, static_cast<char>(id)) : (s.empty() ? "" : " ") + std::to_string(id);
    return s.empty() ? "1" : s;
}

// The result against another checkpoint measured on the same validation windows: the paired
// interval of their per-window losses, and which is better when it excludes 0.
BaselineComparison compare(const Measurement& result, const std::string& name, const Measurement& other) {
    BaselineComparison c;
    c.baseline = name;
    c.checkpoint = other.checkpoint;
    c.result_loss = result.val_loss;
    c.baseline_loss = other.val_loss;
    const auto& bw = other.window_losses;
    const auto& rw = result.window_losses;
    if (bw.size() == rw.size() && bw.size() >= 2) c.interval = analysis::paired_t_interval(bw, rw);
    using O = BaselineComparison::Outcome;
    if (c.interval) c.outcome = c.interval->low > 0 ? O::Beats : c.interval->high < 0 ? O::Worse : O::NoSignificantDifference;
    else c.outcome = c.baseline_loss > c.result_loss ? O::Beats : O::Worse;
    return c;
}

// --control: a checkpoint as given; a run folder's member named like the latest checkpoint (the
// same step, where both runs saved alike), else its last by name.
fs::path control_checkpoint(const std::string& control, const std::string& latest) {
    if (!fs::exists(control)) throw io::FileError(control + ": no such file or folder (--control)");
    if (!fs::is_directory(control) || io::is_model_folder(control)) return control;
    const auto files = io::checkpoint_files_in(control);
    if (files.empty()) throw io::FileError(control + ": no checkpoints in the control folder");
    for (const auto& f : files)
        if (f.filename() == fs::path(latest).filename()) return f;
    return files.back();
}

}  // namespace

ResurrectionLog run_resurrection(const ResurrectOptions& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    if (opt.bitfsck.empty() || !fs::exists(opt.bitfsck)) throw Error("resurrect: the bitfsck executable '" + opt.bitfsck.string() + "' is missing");
    for (const auto& f : {opt.tokens, opt.val_tokens})
        if (!fs::exists(f)) throw io::FileError(f.string() + ": no such file");
    Recipe recipe = opt.recipe ? *opt.recipe : plan_resurrection(opt.inputs, opt.plan);
    fs::create_directories(opt.out_dir);
    const fs::path log_path = opt.out_dir / "resurrection.json";
    for (const auto& in : recipe.inputs) io::ensure_not_an_input(opt.out_dir / "resurrected.pt", {in});
    // Resolved now, so that a wrong --control fails before any stage runs.
    const fs::path control_file = opt.control.empty() ? fs::path() : control_checkpoint(opt.control, recipe.latest);

    ResurrectionLog log;
    log.recipe = recipe;
    log.tokens = opt.tokens.string();
    log.val_tokens = opt.val_tokens.string();
    log.token_dtype = opt.token_dtype;
    log.tokens_hash = file_hash(opt.tokens);
    log.val_tokens_hash = file_hash(opt.val_tokens);
    for (const auto& in : recipe.inputs) log.input_hashes.emplace_back(in, file_hash(in));

    // Resume: the same recipe on the same inputs and data keeps its completed stages.
    std::optional<ResurrectionLog> previous;
    if (fs::exists(log_path)) {
        std::ifstream in(log_path);
        const auto j = nlohmann::json::parse(in, nullptr, false);
        if (!j.is_discarded()) {
            ResurrectionLog p = resurrection_log_from_json(j, log_path.string());
            if (same_json(to_json(p.recipe), to_json(recipe)) && p.input_hashes == log.input_hashes &&
                p.tokens_hash == log.tokens_hash && p.val_tokens_hash == log.val_tokens_hash)
                previous = std::move(p);
        }
        if (!previous) throw Error(log_path.string() + " describes another run (recipe, inputs or data differ); use another -o folder");
    }

    // Finished before, and its result is still what was logged: nothing to redo.
    if (previous && previous->complete && fs::exists(previous->output) && file_hash(previous->output) == previous->output_hash) {
        ResurrectionLog finished = *previous;
        finished.already_complete = true;
        return finished;
    }

    Runner run{opt, recipe, first_tokens_prompt(opt.val_tokens, opt.token_dtype)};
    // Children side by side where the recipe's threads leave cores idle (threads 1 on 2 cores: two).
    run.parallel = opt.jobs > 0 ? opt.jobs : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(recipe.threads, 1));
    run.total = recipe.stages.size() + (recipe.baselines ? 4 : 0) + 1;  // the start, the stages, three fine-tunes and the checkpoints
    // Every measurement and claim on the first validation windows; a search scores on the rest.
    const ValidationSplit split = split_validation(opt.val_tokens, opt.token_dtype, recipe.seq_len, selection_fraction(recipe), recipe.eval_windows);
    // Without a search and without eval_windows, the children read every window themselves (0).
    run.claim_windows = split.selection_windows == 0 && recipe.eval_windows <= 0 ? 0 : split.claim_windows;
    log.claim_windows = split.claim_windows;
    log.selection_windows = split.selection_windows;
    // The budget every baseline gets: the recipe's fine-tuning steps (its finetune and search stages).
    std::int64_t budget_steps = 0;
    for (const auto& s : recipe.stages)
        if (s.kind == StageKind::Finetune || s.kind == StageKind::Search) budget_steps += s.params.value("steps", std::int64_t{100});
    log.budget_tokens = budget_steps * recipe.batch * recipe.seq_len;
    auto save_log = [&] {
        log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        io::write_file_atomically(log_path, to_json(log).dump(2) + "\n");
    };

    run.say("measuring the latest checkpoint");
    log.start = previous ? previous->start : run.measure(recipe.latest, opt.out_dir / "measure_start", true);
    run.done = 1;
    Measurement current = log.start;
    fs::path current_file = recipe.latest;
    save_log();

    for (std::size_t i = 0; i < recipe.stages.size(); ++i) {
        const RecipeStage& stage = recipe.stages[i];
        const std::string label = "stage " + std::to_string(i + 1) + "/" + std::to_string(recipe.stages.size()) + " " + std::string(stage_name(stage.kind));
        const fs::path dir = opt.out_dir / ("stage_" + std::to_string(i + 1) + "_" + std::string(stage_name(stage.kind)));
        // A completed stage is kept only when it was run on the very file it would be run on now
        // and its output is still what was measured.
        if (previous && i < previous->stages.size() && previous->stages[i].input == current_file.string() &&
            file_hash(current_file) == current.content_hash && fs::exists(previous->stages[i].output) &&
            file_hash(previous->stages[i].output) == previous->stages[i].after.content_hash) {
            StageRecord rec = previous->stages[i];
            rec.decisions.push_back("resumed: completed by an earlier run");
            if (rec.accepted) current = rec.after, current_file = rec.output;
            log.stages.push_back(rec);
            run.done += 1;
            save_log();  // a second interruption must not forget the stages the first one kept
            continue;
        }
        if (run.cancelled()) throw Cancelled();
        run.say(label);
        const auto s0 = std::chrono::steady_clock::now();
        fs::create_directories(dir);
        StageRecord rec;
        rec.index = i + 1;
        rec.stage = stage;
        rec.input = current_file.string();
        const std::string ext = current_file.extension().string();
        fs::path out = dir / ("out" + ext);
        const auto& p = stage.params;
        switch (stage.kind) {
            case StageKind::Pick: {
                const fs::path src = p.at("checkpoint").get<std::string>();
                out = dir / ("out" + src.extension().string());
                io::ensure_not_an_input(out, {src});
                io::replace_atomically(out, [&](const fs::path& tmp) { fs::copy_file(src, tmp, fs::copy_options::overwrite_existing); });
                rec.decisions.push_back("start from " + src.string());
                break;
            }
            case StageKind::Graft: {
                TensorSelection sel;
                if (p.contains("roles")) sel.roles = p["roles"].get<std::vector<std::string>>();
                if (p.contains("layers") && !p["layers"].get<std::string>().empty()) sel.layers = parse_layer_ranges(p["layers"].get<std::string>());
                if (p.contains("match")) sel.match = p["match"].get<std::vector<std::string>>();
                const fs::path base = p.value("base", current_file.string());
                out = dir / ("out" + base.extension().string());
                const auto names = graft_checkpoint(base, p.at("donor").get<std::string>(), sel, out);
                rec.decisions.push_back(std::to_string(names.size()) + " tensors of " + base.filename().string() + " taken from " +
                                        fs::path(p.at("donor").get<std::string>()).filename().string());
                break;
            }
            case StageKind::Svd:
            case StageKind::Align:
            case StageKind::Inflate: {
                RepairOptions ro;
                // The recipe names only what it changes; the rest are the step's defaults.
                StepSpec defaults;
                defaults.kind = *step_from_name(stage_name(stage.kind));
                nlohmann::json step = to_json(defaults);
                if (p.contains("step")) step.update(p["step"]);
                step["kind"] = std::string(stage_name(stage.kind));
                ro.step = step_from_json(step);
                if (p.contains("selection")) ro.selection = selection_from_json(p["selection"]);
                if (p.contains("like")) ro.like = fs::path(p["like"].get<std::string>());
                ro.drop_optimizer_state = true;
                ro.threads = 1;
                const RepairLog rl = repair_checkpoint(current_file, out, ro);
                rec.decisions.push_back(std::to_string(rl.tensors.size()) + " tensors repaired (" + fs::path(repair_log_path(out)).filename().string() + ")");
                break;
            }
            case StageKind::Finetune: out = run.finetune(current_file, p, dir, label); break;
            case StageKind::Search: {
                SearchOutcome so = run_search(run, p, dir, split);
                out = so.output;
                rec.decisions.push_back(so.record.why);
                rec.search = std::move(so.record);
                break;
            }
        }
        rec.output = out.string();
        rec.after = run.measure(out, dir, true);
        // Gates: a transforming stage must not make things worse than its input.
        const bool choice = stage.kind == StageKind::Pick || stage.kind == StageKind::Graft;
        std::vector<std::string> failed;
        if (!choice && rec.after.val_loss > current.val_loss + recipe.gates.val_loss_tolerance)
            failed.push_back("validation loss " + fmt("%.4f", current.val_loss) + " → " + fmt("%.4f", rec.after.val_loss) +
                             " (tolerance " + fmt("%g", recipe.gates.val_loss_tolerance) + ")");
        if (recipe.gates.no_new_collapse)
            if (auto n = newly(rec.after.collapsed, current.collapsed); !n.empty()) {
                std::string names;
                for (const auto& x : n) names += (names.empty() ? "" : ", ") + x;
                failed.push_back("newly collapsed: " + names);
            }
        if (recipe.gates.no_new_degeneration && rec.after.degenerate && !current.degenerate) failed.push_back("greedy generation became degenerate");
        if (choice) rec.decisions.push_back("a choice of starting point: not held to the validation-loss gate");
        if (failed.empty()) {
            rec.accepted = true;
            rec.decisions.push_back("accepted: validation loss " + fmt("%.4f", current.val_loss) + " → " + fmt("%.4f", rec.after.val_loss));
        } else {
            rec.accepted = opt.keep_going;
            for (const auto& f : failed) rec.decisions.push_back((opt.keep_going ? "kept despite (--keep-going): " : "rejected: ") + f);
            if (!opt.keep_going) rec.decisions.push_back("the next stage starts from this stage's input; the output stays here for inspection");
        }
        if (rec.accepted) current = rec.after, current_file = out;
        rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
        log.stages.push_back(rec);
        run.done += 1;
        save_log();
    }

    const fs::path final_out = opt.out_dir / ("resurrected" + current_file.extension().string());
    io::ensure_not_an_input(final_out, std::vector<fs::path>(recipe.inputs.begin(), recipe.inputs.end()));
    io::replace_atomically(final_out, [&](const fs::path& tmp) { fs::copy_file(current_file, tmp, fs::copy_options::overwrite_existing); });
    log.output = final_out.string();
    log.output_hash = file_hash(final_out);

    if (recipe.baselines) {
        // The alternatives a reviewer asks for, each with the recipe's fine-tuning budget (its
        // fine-tune stages' steps, the same batch, windows and data): keep training the latest
        // checkpoint as the run did; the same without the decay that collapsed it; and the recipe's
        // own fine-tune from the last healthy checkpoint, without the graft.
        const std::int64_t steps = budget_steps;
        nlohmann::json ft_params;  // the fine-tune from the last healthy checkpoint: the recipe's first, or a search's rule-based one
        for (const auto& s : recipe.stages)
            if (ft_params.is_null() && s.kind == StageKind::Finetune) ft_params = s.params;
            else if (ft_params.is_null() && s.kind == StageKind::Search && s.params.contains("baseline")) ft_params = s.params["baseline"];
        // Collected first, then fine-tuned side by side and measured together with the run's own
        // checkpoints: the children are independent, so the figures are those of one at a time.
        struct Planned {
            std::string name, description;
            Runner::FinetuneJob job;
        };
        std::vector<Planned> planned;
        auto fine_tune_baseline = [&](const std::string& name, const std::string& description, const fs::path& start,
                                      nlohmann::json params, const std::string& folder) {
            params["steps"] = steps;
            planned.push_back({name, description, run.finetune_job(start, params, opt.out_dir / folder, "baseline " + name)});
        };
        if (steps > 0) {
            nlohmann::json own = recipe.baseline_finetune;
            if (ft_params.contains("lr")) own["lr"] = ft_params["lr"];
            if (ft_params.contains("warmup")) own["warmup"] = ft_params["warmup"];
            own.erase("notes");
            std::string notes;
            if (recipe.baseline_finetune.contains("notes"))
                for (const auto& n : recipe.baseline_finetune["notes"]) notes += (notes.empty() ? "" : "; ") + n.get<std::string>();
            const std::string budget = std::to_string(steps) + " steps of " + std::to_string(recipe.batch) + " × " + std::to_string(recipe.seq_len) + " tokens";
            fine_tune_baseline("original optimizer settings",
                               "fine-tuning " + fs::path(recipe.latest).filename().string() + " for " + budget + " with the run's own settings (" + notes + ")",
                               recipe.latest, own, "baseline_original");
            nlohmann::json no_decay = own;
            no_decay["reg"] = nlohmann::json::array();
            bool had_decay = false;
            for (const auto& r : own.value("reg", nlohmann::json::array()))
                if (r.get<std::string>().rfind("decay", 0) == 0) had_decay = true;
                else no_decay["reg"].push_back(r);
            if (had_decay)
                fine_tune_baseline("without the run's decay",
                                   "the same fine-tuning of " + fs::path(recipe.latest).filename().string() + " without the decay regularizers that collapsed the run",
                                   recipe.latest, no_decay, "baseline_no_decay");
            if (recipe.last_healthy && *recipe.last_healthy != recipe.latest)
            {
                const bool searched = std::any_of(recipe.stages.begin(), recipe.stages.end(), [](const RecipeStage& s) { return s.kind == StageKind::Search; });
                if (searched)
                    fine_tune_baseline("last healthy + double-well",
                                       "the rule-based double-well fine-tune (" + budget + ", " + ft_params.value("reg", nlohmann::json::array()).dump() +
                                           ") from the last healthy checkpoint " + fs::path(*recipe.last_healthy).filename().string(),
                                       *recipe.last_healthy, ft_params, "baseline_last_healthy");
                else
                    fine_tune_baseline("last healthy + the recipe's fine-tune",
                                       "the recipe's own fine-tune (" + budget + ") from the last healthy checkpoint " +
                                           fs::path(*recipe.last_healthy).filename().string() + ", without its other stages",
                                       *recipe.last_healthy, ft_params, "baseline_last_healthy");
            }
        }
        if (!planned.empty()) {
            run.say("baselines: " + std::to_string(planned.size()) + " fine-tunes");
            std::vector<Runner::FinetuneJob> jobs;
            for (const auto& p : planned) jobs.push_back(p.job);
            run.finetune_all(jobs);
        }
        run.done += 3;
        run.say("baselines: measuring the fine-tunes and the run's own checkpoints");
        std::vector<Runner::MeasureJob> to_measure;
        for (const auto& p : planned) to_measure.push_back({p.job.out, p.job.job.log_dir, true});
        std::vector<std::size_t> input_slot;  // the run's checkpoints: their place in to_measure (npos: the start's)
        for (const auto& in : recipe.inputs) {
            if (in == recipe.latest) {  // measured at the start, probes included
                input_slot.push_back(std::string::npos);
                continue;
            }
            const bool probes = recipe.last_healthy && in == *recipe.last_healthy;
            input_slot.push_back(to_measure.size());
            to_measure.push_back({in, opt.out_dir / ("baseline_" + fs::path(in).stem().string()), probes});
        }
        if (!control_file.empty()) to_measure.push_back({control_file, opt.out_dir / "control", false});
        const std::vector<Measurement> measured = run.measure_all(to_measure);
        if (!control_file.empty()) log.control = ControlRecord{control_file.string(), measured.back(), {}, 0, 0, {}};
        for (std::size_t k = 0; k < planned.size(); ++k) {
            BaselineRecord b;
            b.name = planned[k].name;
            b.description = planned[k].description;
            b.measurement = measured[k];
            log.baselines.push_back(b);
        }
        for (std::size_t k = 0; k < recipe.inputs.size(); ++k) {
            BaselineRecord b;
            b.name = fs::path(recipe.inputs[k]).filename().string();
            b.description = "the run's own checkpoint, as it is";
            b.measurement = input_slot[k] == std::string::npos ? log.start : measured[input_slot[k]];
            log.baselines.push_back(b);
        }
        run.done += 1;
    }
    if (!control_file.empty() && !log.control) {  // no baselines: measured on its own
        run.say("measuring the control");
        log.control = ControlRecord{control_file.string(), run.measure(control_file, opt.out_dir / "control", false), {}, 0, 0, {}};
    }
    // Claims per baseline, on the same validation windows, with a paired interval.
    const Measurement& final_m = current;
    if (log.control) {
        ControlRecord& c = *log.control;
        c.comparison = compare(final_m, "control", c.measurement);
        const double gap = log.start.val_loss - c.measurement.val_loss;
        c.recovered = gap > 0 ? (log.start.val_loss - final_m.val_loss) / gap : std::nan("");
        c.tokens = log.budget_tokens;
        const BaselineComparison& k = c.comparison;
        c.summary = (std::isfinite(c.recovered) ? "the result closes " + fmt("%.0f%%", 100 * c.recovered) + " of the gap from the start (" +
                                                      fmt("%.4f", log.start.val_loss) + ") to the control (" + fmt("%.4f", k.baseline_loss) + ")"
                                                : "the start (" + fmt("%.4f", log.start.val_loss) + ") was not worse than the control (" +
                                                      fmt("%.4f", k.baseline_loss) + ")") +
                    ", with " + std::to_string(c.tokens) + " fine-tuning tokens; against it the result (" + fmt("%.4f", k.result_loss) + ") " +
                    (k.outcome == BaselineComparison::Outcome::Beats ? "is better"
                     : k.outcome == BaselineComparison::Outcome::Worse ? "is worse"
                                                                       : "shows no significant difference") +
                    (k.interval ? " (95% interval of the difference " + fmt("%.4f", k.interval->low) + " to " + fmt("%.4f", k.interval->high) +
                                      ", paired over " + std::to_string(k.interval->n) + " windows)"
                                : std::string());
    }
    for (const auto& b : log.baselines) {
        BaselineComparison c = compare(final_m, b.name, b.measurement);
        using O = BaselineComparison::Outcome;
        const double d = c.baseline_loss - c.result_loss;
        const std::string losses = fmt("%.4f", c.result_loss) + " vs " + fmt("%.4f", c.baseline_loss);
        const std::string interval =
            c.interval ? fmt("%.0f", 100 * c.interval->confidence) + "% interval " + fmt("%.4f", c.interval->low) + " to " + fmt("%.4f", c.interval->high) +
                             ", paired over " + std::to_string(c.interval->n) + " windows"
                       : "no per-window losses: no interval";
        switch (c.outcome) {
            case O::Beats:
                log.claims.push_back("beats " + b.name + ": " + losses + ", " + fmt("%.4f", d) + " nats better (" + interval + ")");
                break;
            case O::Worse:
                log.claims.push_back("does not beat " + b.name + ": " + losses + ", " + fmt("%.4f", -d) + " nats worse (" + interval + ")");
                break;
            case O::NoSignificantDifference:
                log.claims.push_back("no significant difference from " + b.name + ": " + losses + " (" + interval + " contains 0)");
                break;
        }
        if (!log.best_baseline || c.baseline_loss < log.best_baseline->baseline_loss) log.best_baseline = c;
        log.comparisons.push_back(std::move(c));
    }
    log.beats_best_baseline = !log.best_baseline || log.best_baseline->outcome == BaselineComparison::Outcome::Beats;
    log.complete = true;
    save_log();
    io::write_file_atomically(opt.out_dir / "report.html", resurrection_report_html(log));
    run.done = run.total;
    run.say("done");
    return log;
}

ResurrectionReplay replay_resurrection(const fs::path& log_file, const fs::path& out_dir, const fs::path& bitfsck,
                                       const ProgressCallback& progress) {
    std::ifstream in(log_file);
    if (!in) throw io::FileError(log_file.string() + ": cannot open");
    const auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded()) throw Error(log_file.string() + ": not JSON");
    const ResurrectionLog original = resurrection_log_from_json(j, log_file.string());
    if (!original.complete) throw Error(log_file.string() + ": the logged run did not complete; resume it instead");
    for (const auto& [file, hash] : original.input_hashes)
        if (!fs::exists(file) || file_hash(file) != hash)
            throw Error("replay: " + file + " is not the checkpoint the log recorded (missing or changed)");
    if (fs::weakly_canonical(out_dir) == fs::weakly_canonical(log_file.parent_path()))
        throw Error("replay: write into another folder than the logged run's " + log_file.parent_path().string());
    ResurrectOptions o;
    o.inputs = original.recipe.inputs;
    o.tokens = original.tokens;
    o.val_tokens = original.val_tokens;
    o.token_dtype = original.token_dtype;
    o.out_dir = out_dir;
    o.recipe = original.recipe;
    o.bitfsck = bitfsck;
    o.progress = progress;
    ResurrectionReplay r;
    r.log = run_resurrection(o);
    r.expected_hash = original.output_hash;
    r.identical = r.log.output_hash == original.output_hash;
    return r;
}

}  // namespace bitfsck::repair
