#pragma once
// The state of one resurrection run that its phases share: the options, the recipe, the progress
// and cancel flag, and how its children (fine-tunes, perplexity, probes) are started and read.
// Private to bitfsck_repair: resurrect_run.cpp runs the stages, resurrect_search.cpp the search.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "bitfsck/io/text.hpp"
#include "bitfsck/repair/resurrect.hpp"
#include "tool_process.hpp"

namespace bitfsck::repair::detail {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

inline std::string file_hash(const fs::path& p) { return analysis::content_hash(io::MappedFile(p)); }

inline std::string one_line(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    const auto nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

// Recipes compared by meaning: a recipe read back from JSON has its objects' keys in another order
// than the planner wrote them, and ordered_json's == would call the same recipe another run.
inline bool same_json(const ojson& a, const ojson& b) { return nlohmann::json::parse(a.dump()) == nlohmann::json::parse(b.dump()); }

struct Runner {
    const ResurrectOptions& opt;
    const Recipe& recipe;
    std::string prompt;  // the degeneration probe's prompt: the first validation tokens
    std::uint64_t done = 0, total = 1;  // phases: the start, each stage, the baselines
    // Set once the callback returned false; run_tool then interrupts the child (finetune saves).
    mutable std::atomic<bool> stop{false};
    int parallel = 1;  // children at once
    // The validation windows every measurement uses: the first ones of val_tokens (0: all). A
    // search scores its candidates on the windows after them.
    std::int64_t claim_windows = 0;

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
            if (claim_windows > 0) args.insert(args.end(), {"--max-windows", std::to_string(claim_windows)});
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
    // the recipe's shared settings and the stage's own parameters. `val`: validation tokens other
    // than the claims' (a search's selection windows, all of them); empty: the claims' windows.
    nlohmann::ordered_json finetune_document(const fs::path& input, const nlohmann::json& params, const fs::path& out,
                                             const fs::path& val = {}) const {
        ojson d;
        d["input"] = input.string();
        d["output"] = out.string();
        d["tokens"] = opt.tokens.string();
        d["val_tokens"] = val.empty() ? opt.val_tokens.string() : val.string();
        d["token_dtype"] = opt.token_dtype;
        d["seq_len"] = recipe.seq_len;
        d["batch"] = recipe.batch;
        d["seed"] = recipe.seed;
        d["val_windows"] = val.empty() ? claim_windows : 0;
        d["threads"] = recipe.threads;
        d["steps"] = params.value("steps", std::int64_t{100});
        ojson optimizer = ojson::object();
        if (params.contains("optimizer")) optimizer["kind"] = params["optimizer"];
        if (params.contains("lr")) optimizer["lr"] = params["lr"];
        if (params.contains("lr_other")) optimizer["lr_other"] = params["lr_other"];
        if (params.contains("weight_decay")) optimizer["weight_decay_other"] = params["weight_decay"];
        if (!optimizer.empty()) d["optimizer"] = optimizer;
        if (params.contains("warmup")) d["schedule"]["warmup"] = params["warmup"];
        if (params.contains("schedule")) d["schedule"]["kind"] = params["schedule"];
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
    FinetuneJob finetune_job(const fs::path& input, const nlohmann::json& params, const fs::path& dir, const std::string& label,
                             const fs::path& val = {}) const {
        fs::create_directories(dir);
        FinetuneJob f;
        f.out = dir / ("out" + input.extension().string());
        f.metrics = f.out.string() + ".metrics.jsonl";
        f.steps = params.value("steps", std::int64_t{100});
        f.label = label;
        const fs::path doc_path = dir / "finetune_options.json";
        const std::string doc = finetune_document(input, params, f.out, val).dump(2) + "\n";
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

}  // namespace bitfsck::repair::detail
