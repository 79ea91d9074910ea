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
#include "tool_process.hpp"

namespace bitfsck::repair {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

std::string file_hash(const fs::path& p) { return analysis::content_hash(io::MappedFile(p)); }

std::string one_line(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    const auto nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

// Recipes compared by meaning: a recipe read back from JSON has its objects' keys in another order
// than the planner wrote them, and ordered_json's == would call the same recipe another run.
bool same_json(const ojson& a, const ojson& b) { return nlohmann::json::parse(a.dump()) == nlohmann::json::parse(b.dump()); }

struct Runner {
    const ResurrectOptions& opt;
    const Recipe& recipe;
    std::string prompt;  // the degeneration probe's prompt: the first validation tokens
    std::uint64_t done = 0, total = 1;  // phases: the start, each stage, the baselines
    // Set once the callback returned false; run_tool then interrupts the child (finetune saves).
    mutable std::atomic<bool> stop{false};
    int parallel = 1;  // children at once

    void say(const std::string& what) const {
        last_label = what;
        if (stop.load() || !opt.progress) return;
        if (!opt.progress(Progress{done, total, ProgressUnit::Stages, what})) stop.store(true);
    }
    bool cancelled() const { return stop.load(); }

    // The children of one phase, `parallel` at a time (each with the recipe's --threads).
    std::vector<ToolRun> tools(const std::vector<ToolJob>& jobs, const std::function<void()>& poll = {}) const {
        // Between polls the callback is asked too, so that a cancel is seen during every child.
        auto ask = [&] {
            if (poll) poll();
            say(last_label);
        };
        std::vector<ToolRun> runs = run_tools(opt.bitfsck, jobs, parallel, ask, &stop);
        // Interrupted: a fine-tune saved what it reached, the same command continues from it.
        if (cancelled()) throw Cancelled();
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            const ToolRun& r = runs[i];
            // 4 and 5 are verdicts (degenerate generation, a collapsed result), not failures: the JSON is there.
            const bool verdict = (r.exit_code == 4 || r.exit_code == 5) && !r.out.empty();
            if (r.exit_code != 0 && !verdict)
                throw Error("resurrect: `bitfsck " + jobs[i].args.front() + "` failed in " + jobs[i].log_dir.string() + " (exit " +
                            std::to_string(r.exit_code) + "): " + one_line(r.err));
        }
        return runs;
    }

    mutable std::string last_label{};

    std::vector<std::string> model_flags() const { return {"--threads", std::to_string(recipe.threads)}; }

    struct MeasureJob {
        fs::path checkpoint, dir;
        bool probes = false;  // induction and a greedy generation besides the validation loss
    };

    Measurement measure(const fs::path& ckpt, const fs::path& dir, bool probes) const { return measure_all({{ckpt, dir, probes}}).front(); }

    // Every checkpoint's scan here, and their perplexity (and probe) children side by side.
    std::vector<Measurement> measure_all(const std::vector<MeasureJob>& list) const {
        std::vector<Measurement> ms(list.size());
        std::vector<ToolJob> jobs;
        for (std::size_t k = 0; k < list.size(); ++k) {
            const MeasureJob& mj = list[k];
            fs::create_directories(mj.dir);
            Measurement& m = ms[k];
            m.checkpoint = mj.checkpoint.string();
            m.content_hash = file_hash(mj.checkpoint);
            const analysis::ScanReport scan = analysis::scan_checkpoint(io::Checkpoint::open(mj.checkpoint));
            m.verdict = scan.verdict;
            for (const auto& l : scan.layers) {
                if (!analysis::role_is_ternary_matrix(l.role)) continue;
                const std::string label = analysis::layer_role_label(l.layer, l.role);
                m.roles.push_back({label, l.std, l.zero_frac, l.verdict});
                if (l.verdict == analysis::Verdict::Collapsed) m.collapsed.push_back(label);
            }
            const std::string ckpt = mj.checkpoint.string();
            std::vector<std::string> args = {"perplexity", ckpt, "--tokens", opt.val_tokens.string(), "--token-dtype", opt.token_dtype,
                                             "--seq-len", std::to_string(recipe.seq_len), "--batch", "32", "--json", "--per-window"};
            if (recipe.eval_windows > 0) args.insert(args.end(), {"--max-windows", std::to_string(recipe.eval_windows)});
            for (auto& f : model_flags()) args.push_back(f);
            jobs.push_back({args, mj.dir, "perplexity"});
            if (!mj.probes) continue;
            std::vector<std::string> ind = {"induction", ckpt, "--json"}, gen = {"generate", ckpt, "--prompt", prompt, "--max-new-tokens", "64", "--json"};
            const std::vector<std::string> flags = model_flags();
            for (auto* a : {&ind, &gen}) a->insert(a->end(), flags.begin(), flags.end());
            jobs.push_back({ind, mj.dir, "induction"});
            jobs.push_back({gen, mj.dir, "generate"});
        }
        const std::vector<ToolRun> runs = tools(jobs);
        std::size_t j = 0;
        for (std::size_t k = 0; k < list.size(); ++k) {
            Measurement& m = ms[k];
            const auto ppl = nlohmann::json::parse(runs[j++].out);
            m.val_loss = ppl.at("loss").get<double>();
            m.perplexity = ppl.at("perplexity").get<double>();
            if (ppl.contains("window_losses"))
                for (const auto& w : ppl["window_losses"]) m.window_losses.push_back(w.is_number() ? w.get<double>() : std::nan(""));
            if (!list[k].probes) continue;
            m.probes = true;
            const auto ij = nlohmann::json::parse(runs[j++].out).at(0);
            m.specialist_heads = ij.at("specialist_heads").get<std::int64_t>();
            m.ipmr = ij.at("metrics").at("ipmr").get<std::vector<std::vector<double>>>();
            for (std::size_t i = 0; i < ij.at("top_heads").size() && i < 3; ++i) {
                const auto& h = ij["top_heads"][i];
                m.top_heads += (i ? ", " : "") + std::string("L") + std::to_string(h["layer"].get<int>()) + ".H" +
                               std::to_string(h["head"].get<int>()) + " " + fmt("%.3f", h["ipmr"].get<double>());
            }
            const auto gj = nlohmann::json::parse(runs[j++].out);
            m.degenerate = gj.at("degeneration").at("degenerate").get<bool>();
            m.degeneration_reasons = gj.at("degeneration").at("reasons").get<std::vector<std::string>>();
            m.generation = gj.at("text").get<std::string>();
        }
        return ms;
    }

    // The stage's options as one document (`finetune --options`, model/finetune.hpp's reader):
    // the recipe's shared settings and the stage's own parameters.
    nlohmann::ordered_json finetune_document(const fs::path& input, const nlohmann::json& params, const fs::path& out) const {
        ojson d;
        d["input"] = input.string();
        d["output"] = out.string();
        d["tokens"] = opt.tokens.string();
        d["val_tokens"] = opt.val_tokens.string();
        d["token_dtype"] = opt.token_dtype;
        d["seq_len"] = recipe.seq_len;
        d["batch"] = recipe.batch;
        d["seed"] = recipe.seed;
        d["val_windows"] = std::max<std::int64_t>(recipe.eval_windows, 0);
        d["threads"] = recipe.threads;
        d["steps"] = params.value("steps", std::int64_t{100});
        ojson optimizer = ojson::object();
        if (params.contains("optimizer")) optimizer["kind"] = params["optimizer"];
        if (params.contains("lr")) optimizer["lr"] = params["lr"];
        if (params.contains("lr_other")) optimizer["lr_other"] = params["lr_other"];
        if (params.contains("weight_decay")) optimizer["weight_decay_other"] = params["weight_decay"];
        if (!optimizer.empty()) d["optimizer"] = optimizer;
        if (params.contains("warmup")) d["schedule"] = {{"warmup", params["warmup"]}};
        if (params.contains("like")) d["like"] = params["like"];
        if (params.contains("reg")) d["regularizers"] = params["reg"];
        return d;
    }

    struct FinetuneJob {
        ToolJob job;
        fs::path out, metrics;
        std::int64_t steps = 0;
        std::string label;
        bool resuming = false;
    };

    // Fine-tuning `input` into dir/out.<ext> with the recipe's shared settings and `params`. An
    // interrupted fine-tune of the same document continues from its last save (finetune --resume),
    // which ends bit for bit where an uninterrupted one would.
    FinetuneJob finetune_job(const fs::path& input, const nlohmann::json& params, const fs::path& dir, const std::string& label) const {
        fs::create_directories(dir);
        FinetuneJob f;
        f.out = dir / ("out" + input.extension().string());
        f.metrics = f.out.string() + ".metrics.jsonl";
        f.steps = params.value("steps", std::int64_t{100});
        f.label = label;
        const fs::path doc_path = dir / "finetune_options.json";
        const std::string doc = finetune_document(input, params, f.out).dump(2) + "\n";
        f.resuming = fs::exists(fs::path(f.out.string() + ".state.json")) && fs::exists(doc_path) && [&] {
            std::ifstream in(doc_path);
            return std::string(std::istreambuf_iterator<char>(in), {}) == doc;
        }();
        if (f.resuming) {
            f.job = {{"finetune", "--resume", "-o", f.out.string(), "--json"}, dir, "finetune"};
        } else {
            io::write_file_atomically(doc_path, doc);
            f.job = {{"finetune", "--options", doc_path.string(), "--json"}, dir, "finetune"};
        }
        return f;
    }

    // Runs the fine-tunes side by side; the progress label names each one's step.
    void finetune_all(const std::vector<FinetuneJob>& list) const {
        std::vector<ToolJob> jobs;
        for (const auto& f : list) jobs.push_back(f.job);
        auto poll = [&] {
            std::string label;
            for (const auto& f : list) {
                std::ifstream in(f.metrics);
                if (!in) continue;  // not started yet
                std::int64_t lines = 0;
                for (std::string l; std::getline(in, l);) ++lines;
                if (lines > f.steps) continue;  // done
                label += (label.empty() ? "" : "; ") + f.label + ": step " + std::to_string(std::max<std::int64_t>(lines - 1, 0)) + "/" +
                         std::to_string(f.steps);
            }
            if (!label.empty()) last_label = label;
        };
        std::string start;
        for (const auto& f : list) start += (start.empty() ? "" : "; ") + f.label + (f.resuming ? ": resuming from its last save" : "");
        last_label = start;
        tools(jobs, poll);
    }

    fs::path finetune(const fs::path& input, const nlohmann::json& params, const fs::path& dir, const std::string& label) const {
        FinetuneJob f = finetune_job(input, params, dir, label);
        finetune_all({f});
        return f.out;
    }
};

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
        std::int64_t steps = 0;
        nlohmann::json ft_params;
        for (const auto& s : recipe.stages)
            if (s.kind == StageKind::Finetune) {
                steps += s.params.value("steps", std::int64_t{100});
                if (ft_params.is_null()) ft_params = s.params;
            }
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
                fine_tune_baseline("last healthy + the recipe's fine-tune",
                                   "the recipe's own fine-tune (" + budget + ") from the last healthy checkpoint " +
                                       fs::path(*recipe.last_healthy).filename().string() + ", without its other stages",
                                   *recipe.last_healthy, ft_params, "baseline_last_healthy");
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
        for (const auto& s : log.stages)
            if (s.stage.kind == StageKind::Finetune) c.tokens += s.stage.params.value("steps", std::int64_t{100}) * recipe.batch * recipe.seq_len;
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
