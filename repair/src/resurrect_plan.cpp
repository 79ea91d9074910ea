// plan_resurrection: from a scanned run to a recipe, with a reason for every choice; the recipe's
// JSON form (what the user edits); and graft_checkpoint, the one stage that only plans need.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/run.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/checkpoint_files.hpp"
#include "bitfsck/io/json_document.hpp"
#include "bitfsck/io/pt_writer.hpp"
#include "bitfsck/io/shard_writer.hpp"
#include "bitfsck/io/safetensors_writer.hpp"
#include "bitfsck/io/text.hpp"
#include "bitfsck/repair/resurrect.hpp"

namespace bitfsck::repair {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string_view stage_name(StageKind k) {
    switch (k) {
        case StageKind::Pick: return "pick";
        case StageKind::Graft: return "graft";
        case StageKind::Svd: return "svd";
        case StageKind::Align: return "align";
        case StageKind::Inflate: return "inflate";
        case StageKind::Finetune: return "finetune";
        case StageKind::Search: return "search";
    }
    return "?";
}

StageKind parse_stage_kind(std::string_view s) {
    for (StageKind k : {StageKind::Pick, StageKind::Graft, StageKind::Svd, StageKind::Align, StageKind::Inflate, StageKind::Finetune, StageKind::Search})
        if (stage_name(k) == s) return k;
    throw Error("unknown stage '" + std::string(s) + "' (pick, graft, svd, align, inflate, finetune, search)");
}

namespace {

// ||A − B||_F / ||B||_F over the tensors of the given roles that both checkpoints hold.
double relative_change(const io::Checkpoint& a, const io::Checkpoint& b, const std::set<analysis::Role>& roles) {
    std::map<std::string, const io::TensorEntry*> in_b;
    for (const auto* t : b.state_dict_tensors()) in_b[t->name] = t;
    double diff = 0, norm = 0;
    for (const auto* t : a.state_dict_tensors()) {
        const auto place = analysis::place_of(t->name);
        if (!roles.count(place.role) || !io::dtype_is_floating(t->dtype)) continue;
        auto it = in_b.find(t->name);
        if (it == in_b.end() || it->second->numel() != t->numel()) continue;
        std::vector<double> x(static_cast<std::size_t>(t->numel())), y(x.size());
        a.data(*t).read(0, t->numel(), x.data());
        b.data(*it->second).read(0, t->numel(), y.data());
        for (std::size_t i = 0; i < x.size(); ++i) diff += (x[i] - y[i]) * (x[i] - y[i]), norm += y[i] * y[i];
    }
    return norm > 0 ? std::sqrt(diff / norm) : 0.0;
}

// A number of the training config stored in the checkpoint (make_run.py style: config.train.<key>).
std::optional<double> train_config_number(const io::Checkpoint& ck, const std::string& key) {
    const io::Value* root = ck.root();
    if (!root || root->kind != io::ValueKind::Dict) return std::nullopt;
    const io::Value* cfg = root->get("config");
    if (!cfg || cfg->kind != io::ValueKind::Dict) return std::nullopt;
    const io::Value* train = cfg->get("train");
    if (!train || train->kind != io::ValueKind::Dict) return std::nullopt;
    const io::Value* v = train->get(key);
    if (!v) return std::nullopt;
    if (v->kind == io::ValueKind::Float) return v->real;
    if (v->kind == io::ValueKind::Int) return static_cast<double>(v->integer);
    return std::nullopt;
}

// The run's own anti-patterns, from the config stored in the checkpoint (config.train.{mlp_l2,
// attn_l2, weight_decay, attn_weight_decay}): what a plain continuation of the run would use.
ojson original_optimizer_settings(const io::Checkpoint& ck, double lr, std::vector<std::string>& notes) {
    ojson settings = {{"optimizer", "adamw"}, {"lr", lr}, {"reg", ojson::array()}};
    auto number = [&](const std::string& key) { return train_config_number(ck, key); };
    if (auto wd = number("weight_decay")) {
        settings["weight_decay"] = *wd;
        notes.push_back("config.train.weight_decay = " + fmt("%g", *wd) + " (decoupled, embeddings and norms)");
    }
    for (const char* role : {"mlp", "attn"}) {
        if (auto l2 = number(std::string(role) + "_l2")) {
            settings["reg"].push_back("decay:lambda=" + fmt("%g", *l2) + ",coupled,roles=" + role);
            notes.push_back("config.train." + std::string(role) + "_l2 = " + fmt("%g", *l2) + " (coupled L2 on the " + role + " matrices)");
        }
        // A decoupled decay on one role's matrices (AdamW-style): lr·λ·w taken off every step.
        if (auto wd = number(std::string(role) + "_weight_decay")) {
            settings["reg"].push_back("decay:lambda=" + fmt("%g", *wd) + ",decoupled,roles=" + role);
            notes.push_back("config.train." + std::string(role) + "_weight_decay = " + fmt("%g", *wd) + " (decoupled decay on the " + role +
                            " matrices)");
        }
    }
    if (notes.empty()) notes.push_back("no optimizer settings stored in the checkpoint: plain AdamW without weight decay");
    return settings;
}

}  // namespace

Recipe plan_resurrection(const std::vector<std::string>& inputs, const PlanOptions& options) {
    analysis::RunScanOptions so;
    so.scan.thresholds = options.thresholds;
    so.scan.progress = options.progress;
    const analysis::Timeline tl = analysis::timeline_of(analysis::scan_run(inputs, so));

    Recipe r;
    for (const auto& p : tl.points) r.inputs.push_back(p.file);
    const auto& latest = tl.points.back();
    r.latest = latest.file;
    r.diagnosis.push_back(std::to_string(tl.points.size()) + " checkpoints, steps " + std::to_string(tl.points.front().step) + " to " +
                          std::to_string(latest.step) + "; the latest is " + std::string(analysis::verdict_name(latest.verdict)));

    std::set<analysis::Role> sick_roles;
    std::set<int> sick_layers;
    for (const auto& l : latest.layers) {
        if (l.verdict == analysis::Verdict::Healthy || !analysis::role_is_ternary_matrix(l.role)) continue;
        sick_roles.insert(l.role);
        if (l.layer) sick_layers.insert(*l.layer);
    }
    std::string from;
    if (!tl.onset_step) {
        r.diagnosis.push_back("every checkpoint is healthy: nothing to resurrect; the recipe only fine-tunes the latest");
    } else if (tl.last_healthy_step) {
        from = tl.last_healthy_file;
        r.last_healthy = from;
        r.diagnosis.push_back("collapse onset at step " + std::to_string(*tl.onset_step) + "; the last healthy checkpoint is step " +
                              std::to_string(*tl.last_healthy_step) + " (" + fs::path(from).filename().string() + ")");
    } else if (tl.last_before_collapse_step) {
        from = tl.last_before_collapse_file;
        r.diagnosis.push_back("no healthy checkpoint; the last one before the collapse is step " + std::to_string(*tl.last_before_collapse_step) +
                              " (degraded)");
    } else {
        throw Error("plan: the run is collapsed from its first checkpoint (" + tl.points.front().file +
                    "); there is no state to resurrect from: start from another run's healthy checkpoint");
    }
    if (!sick_roles.empty()) {
        std::string names;
        for (auto role : sick_roles) names += (names.empty() ? "" : ", ") + std::string(analysis::role_name(role));
        std::string layers;
        for (int l : sick_layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
        r.diagnosis.push_back("not healthy in the latest checkpoint: " + names + " (layers " + layers + ")");
        // The latest checkpoint's own findings (the onset's are history), and how many were left out.
        constexpr std::size_t kShown = 6;
        for (std::size_t i = 0; i < latest.findings.size() && i < kShown; ++i) r.diagnosis.push_back("  " + latest.findings[i].message);
        if (latest.findings.size() > kShown)
            r.diagnosis.push_back("  … and " + std::to_string(latest.findings.size() - kShown) + " more findings (bitfsck scan " +
                                  fs::path(latest.file).filename().string() + " lists them all)");
    }
    for (const auto& skipped : tl.skipped) r.skipped.push_back(skipped.reason);

    ojson roles = ojson::array();
    for (auto role : sick_roles) roles.push_back(std::string(analysis::role_name(role)));
    std::string layer_list;
    for (int l : sick_layers) layer_list += (layer_list.empty() ? "" : ",") + std::to_string(l);

    const io::Checkpoint latest_ck = io::Checkpoint::open(r.latest);
    // The run's own shapes and rate where its config stores them: the fine-tunes then train as the run did.
    if (auto v = train_config_number(latest_ck, "seq_len"); v && *v >= 2) r.seq_len = static_cast<std::int64_t>(*v);
    if (auto v = train_config_number(latest_ck, "batch_size"); v && *v >= 1) r.batch = static_cast<std::int64_t>(*v);
    const std::optional<double> run_lr = train_config_number(latest_ck, "lr");
    // The search's candidates train at the run's own rate; the rule-based recipe keeps the rate it
    // always had (a short fine-tune at a run's peak rate can undo the graft before it recovers).
    const double rule_lr = options.lr ? *options.lr : 1e-3;
    const double search_lr = options.lr ? *options.lr : run_lr ? *run_lr : 1e-3;

    // The budget: what was asked, else half the tokens the run trained after the checkpoint it restarts from.
    const std::int64_t tokens_per_step = r.batch * r.seq_len;
    std::int64_t steps = 150;
    std::string budget_reason = "150 steps (the run's checkpoints do not say how many tokens it trained after " +
                                (from.empty() ? std::string("its start") : fs::path(from).filename().string()) + ")";
    std::optional<std::int64_t> from_step;
    for (const auto& p : tl.points)
        if (p.file == from) from_step = p.step;
    if (options.finetune_steps) {
        steps = *options.finetune_steps;
        budget_reason = std::to_string(steps) + " steps, as asked";
    } else if (options.budget_tokens) {
        steps = std::max<std::int64_t>(1, (*options.budget_tokens + tokens_per_step - 1) / tokens_per_step);
        budget_reason = std::to_string(*options.budget_tokens) + " tokens, as asked";
    } else if (from_step && latest.step > *from_step) {
        const std::int64_t after = (latest.step - *from_step) * tokens_per_step;
        steps = std::max<std::int64_t>(10, (after / 2 + tokens_per_step - 1) / tokens_per_step);
        budget_reason = "half the " + std::to_string(after) + " tokens the run trained after " + fs::path(from).filename().string() + " (steps " +
                        std::to_string(*from_step) + " to " + std::to_string(latest.step) + " of " + std::to_string(r.batch) + " × " +
                        std::to_string(r.seq_len) + ")";
    }
    r.diagnosis.push_back("fine-tuning budget: " + std::to_string(steps * tokens_per_step) + " tokens, " + std::to_string(steps) + " steps of " +
                          std::to_string(r.batch) + " × " + std::to_string(r.seq_len) + ": " + budget_reason);

    std::string roles_spec;
    for (const auto& role : roles) roles_spec += (roles_spec.empty() ? "" : "|") + role.get<std::string>();
    const std::string like = from.empty() ? r.latest : from;
    // The rule-based fine-tune: a double-well on the treated roles towards the healthy scale.
    auto double_well_finetune = [&](double lambda, double rate) {
        ojson reg = ojson::array();
        if (!roles_spec.empty()) reg.push_back("double-well:lambda=" + fmt("%g", lambda) + ",target=like,roles=" + roles_spec);
        return ojson{{"steps", steps}, {"lr", rate}, {"optimizer", "adamw"}, {"warmup", 10}, {"reg", reg}, {"like", like}};
    };

    // Graft when the roles that stayed healthy kept learning after `from`: their later state is
    // worth more than going back in time for the whole model.
    std::optional<RecipeStage> start_stage;
    double change = 0;
    if (!from.empty() && from != r.latest && !sick_roles.empty()) {
        std::set<analysis::Role> healthy_roles;
        for (const auto& l : latest.layers)
            if (analysis::role_is_ternary_matrix(l.role) && !sick_roles.count(l.role)) healthy_roles.insert(l.role);
        change = relative_change(latest_ck, io::Checkpoint::open(from), healthy_roles);
        RecipeStage st;
        if (change > 0.05) {
            st.kind = StageKind::Graft;
            st.params = {{"base", r.latest}, {"donor", from}, {"roles", roles}, {"layers", layer_list}};
            st.reason = "the healthy roles moved " + fmt("%.0f%%", 100 * change) + " (relative Frobenius) after " +
                        fs::path(from).filename().string() + " and are still healthy: keep them from the latest checkpoint and take the " +
                        "collapsed roles from the last healthy one";
        } else {
            st.kind = StageKind::Pick;
            st.params = {{"checkpoint", from}};
            st.reason = "the healthy roles changed only " + fmt("%.1f%%", 100 * change) + " after " + fs::path(from).filename().string() +
                        ": go back to it whole";
        }
        start_stage = st;
    }

    const bool searched = options.search && start_stage.has_value();
    if (searched) {
        // Candidates, each a start and a fine-tune, chosen by successive halving on validation
        // windows the claims never use. Both starts always compete: the rule above only orders them.
        RecipeStage search;
        search.kind = StageKind::Search;
        ojson candidates = ojson::array();
        const std::vector<double> rates = options.lr || run_lr ? std::vector<double>{search_lr} : std::vector<double>{1e-3, 3e-3};
        const std::string rate_source = options.lr ? "as asked" : run_lr ? "the run's own, config.train.lr" : "no lr in the run's config: a grid";
        struct Reg {
            std::string label, spec;
        };
        const std::string sel = ",target=like,roles=" + roles_spec;
        // Each regularizer at two strengths a decade apart (the fine-tuning docs' range), and none.
        std::vector<Reg> regs;
        for (const char* name : {"double-well", "three-peaks", "wasserstein"})
            for (const char* lambda : {"1e-4", "1e-3"}) regs.push_back({std::string(name) + " " + lambda, std::string(name) + ":lambda=" + lambda + sel});
        regs.push_back({"no regularizer", ""});
        const std::string from_name = fs::path(from).filename().string();
        const std::vector<std::pair<std::string, std::string>> starts = {{"graft", "graft"}, {from, from_name}};
        for (const auto& [start, start_label] : starts)
            for (const auto& reg : regs)
                for (double rate : rates) {
                    ojson ft = {{"lr", rate}, {"optimizer", "adamw"}, {"warmup", 10}, {"schedule", "constant"}, {"like", like},
                                {"reg", reg.spec.empty() ? ojson::array() : ojson::array({reg.spec})}};
                    candidates.push_back({{"name", start_label + ", " + reg.label + ", lr " + fmt("%g", rate)}, {"start", start}, {"finetune", ft}});
                }
        constexpr int kEta = 3;
        std::vector<std::int64_t> rungs = {std::max<std::int64_t>(1, steps / (kEta * kEta)), std::max<std::int64_t>(1, steps / kEta), steps};
        rungs.erase(std::unique(rungs.begin(), rungs.end()), rungs.end());
        search.params = {{"steps", steps},
                         {"rungs", rungs},
                         {"eta", kEta},
                         {"selection_fraction", 0.25},
                         {"graft", {{"base", r.latest}, {"donor", from}, {"roles", roles}, {"layers", layer_list}}},
                         {"candidates", candidates},
                         {"baseline", double_well_finetune(1e-4, search_lr)}};
        search.reason = std::to_string(candidates.size()) + " candidates (start: the graft or " + from_name +
                        " whole; regularizer: double-well, three-peaks or Wasserstein at λ 1e-4 or 1e-3, or none; lr " + rate_source +
                        ") trained on the same windows for " + std::to_string(rungs.front()) + " steps, the best third kept at each rung (" +
                        [&] {
                            std::string s;
                            for (auto x : rungs) s += (s.empty() ? "" : ", ") + std::to_string(x);
                            return s;
                        }() +
                        " steps), scored on the last quarter of the validation windows, which no claim uses. The graft: " +
                        fs::path(r.latest).filename().string() + " with " + roles_spec + " from " + from_name + " (the healthy roles moved " +
                        fmt("%.0f%%", 100 * change) + ", relative Frobenius, after " + from_name + ")";
        r.stages.push_back(search);
    } else {
        if (start_stage) r.stages.push_back(*start_stage);
        RecipeStage ft;
        ft.kind = StageKind::Finetune;
        ft.params = double_well_finetune(1e-4, rule_lr);
        ft.reason = roles_spec.empty() ? "fine-tune with the same budget as the baselines"
                                       : "fine-tune without the decay that collapsed " + roles_spec + ", with a double-well pulling their weights to ±S, " +
                                             "S the absmean of each layer-role in " + fs::path(like).filename().string();
        r.stages.push_back(ft);
    }

    std::vector<std::string> notes;
    r.baseline_finetune = original_optimizer_settings(latest_ck, searched ? search_lr : rule_lr, notes);
    r.baseline_finetune["notes"] = notes;
    r.baseline_finetune["steps"] = steps;
    r.baseline_finetune["warmup"] = 10;
    return r;
}

ojson to_json(const Recipe& r) {
    ojson j = json_document(r.schema_version);
    j["command"] = "plan";
    j["inputs"] = r.inputs;
    j["latest"] = r.latest;
    j["last_healthy"] = r.last_healthy ? ojson(*r.last_healthy) : ojson(nullptr);
    j["diagnosis"] = r.diagnosis;
    if (!r.skipped.empty()) j["skipped"] = r.skipped;
    ojson stages = ojson::array();
    for (const auto& s : r.stages) stages.push_back({{"stage", stage_name(s.kind)}, {"params", s.params}, {"reason", s.reason}});
    j["stages"] = stages;
    j["gates"] = {{"val_loss_tolerance", r.gates.val_loss_tolerance}, {"no_new_collapse", r.gates.no_new_collapse},
                  {"no_new_degeneration", r.gates.no_new_degeneration}};
    j["seq_len"] = r.seq_len;
    j["batch"] = r.batch;
    j["eval_windows"] = r.eval_windows;
    j["seed"] = r.seed;
    j["threads"] = r.threads;
    j["baselines"] = r.baselines;
    j["baseline_finetune"] = r.baseline_finetune;
    return j;
}

Recipe recipe_from_json(const nlohmann::json& j, const std::string& origin) {
    try {
        Recipe r;
        r.schema_version = j.at("schema_version").get<int>();
        if (r.schema_version != kResurrectionSchemaVersion)
            throw Error(origin + ": recipe schema_version " + std::to_string(r.schema_version) + " (this bitfsck reads " +
                        std::to_string(kResurrectionSchemaVersion) + ")");
        r.inputs = j.at("inputs").get<std::vector<std::string>>();
        r.latest = j.at("latest").get<std::string>();
        if (j.contains("last_healthy") && j["last_healthy"].is_string()) r.last_healthy = j["last_healthy"].get<std::string>();
        if (j.contains("diagnosis")) r.diagnosis = j["diagnosis"].get<std::vector<std::string>>();
        if (j.contains("skipped")) r.skipped = j["skipped"].get<std::vector<std::string>>();
        for (const auto& s : j.at("stages")) {
            RecipeStage st;
            st.kind = parse_stage_kind(s.at("stage").get<std::string>());
            st.params = s.value("params", nlohmann::json::object());
            st.reason = s.value("reason", std::string());
            r.stages.push_back(std::move(st));
        }
        if (j.contains("gates")) {
            const auto& g = j["gates"];
            r.gates.val_loss_tolerance = g.value("val_loss_tolerance", r.gates.val_loss_tolerance);
            r.gates.no_new_collapse = g.value("no_new_collapse", r.gates.no_new_collapse);
            r.gates.no_new_degeneration = g.value("no_new_degeneration", r.gates.no_new_degeneration);
        }
        r.seq_len = j.value("seq_len", r.seq_len);
        r.batch = j.value("batch", r.batch);
        r.eval_windows = j.value("eval_windows", r.eval_windows);
        r.seed = j.value("seed", r.seed);
        r.threads = j.value("threads", r.threads);
        r.baselines = j.value("baselines", r.baselines);
        if (j.contains("baseline_finetune")) r.baseline_finetune = j["baseline_finetune"];
        if (r.stages.empty()) throw Error(origin + ": the recipe has no stages");
        return r;
    } catch (const nlohmann::json::exception& e) {
        throw Error(origin + ": not a resurrection recipe (" + e.what() + ")");
    }
}

std::vector<std::string> graft_checkpoint(const fs::path& base, const fs::path& donor, const TensorSelection& selection,
                                          const fs::path& output) {
    const io::Checkpoint b = io::Checkpoint::open(base), d = io::Checkpoint::open(donor);
    io::ensure_not_an_input(output, {base, donor});
    std::map<std::string, const io::TensorEntry*> in_donor;
    for (const auto* t : d.state_dict_tensors()) in_donor[t->name] = t;
    std::map<std::string, io::ReplacementTensor> replacements;
    std::vector<std::string> names;
    for (const auto* t : b.state_dict_tensors()) {
        if (t->shared_with || t->encoding != io::TensorEncoding::Plain) continue;
        if (!analysis::explicit_selection_matches(selection, t->name)) continue;
        auto it = in_donor.find(t->name);
        if (it == in_donor.end())
            throw Error("graft: " + donor.string() + " has no '" + t->name + "' to give to " + base.string());
        const io::TensorEntry& dt = *it->second;
        if (dt.shape != t->shape || dt.dtype != t->dtype)
            throw Error("graft: '" + t->name + "' differs in shape or dtype between " + base.string() + " and " + donor.string());
        io::ReplacementTensor rt;
        rt.dtype = t->dtype;
        rt.shape = t->shape;
        rt.view = d.file_of(dt).bytes(dt.storage_file_offset + static_cast<std::uint64_t>(dt.storage_offset) * io::dtype_size(dt.dtype), dt.nbytes(),
                                 "tensor data");
        replacements.emplace(t->name, rt);
        names.push_back(t->name);
    }
    if (names.empty()) throw Error("graft: the selection matches no tensor of " + base.string());
    if (b.format() == io::Format::Safetensors || b.format() == io::Format::TorchZip || b.format() == io::Format::TorchLegacy) {
        io::RewriteOptions ro;
        ro.drop_optimizer_state = true;  // the base's optimizer state does not describe the grafted tensors
        io::rewrite_checkpoint(b, output, replacements, ro, {donor});
    } else {
        throw Error("graft: " + base.string() + " is " + std::string(io::format_name(b.format())) + "; graft writes .pt and safetensors");
    }
    return names;
}

}  // namespace bitfsck::repair
