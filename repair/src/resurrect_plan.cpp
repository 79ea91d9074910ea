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
    }
    return "?";
}

StageKind parse_stage_kind(std::string_view s) {
    for (StageKind k : {StageKind::Pick, StageKind::Graft, StageKind::Svd, StageKind::Align, StageKind::Inflate, StageKind::Finetune})
        if (stage_name(k) == s) return k;
    throw Error("unknown stage '" + std::string(s) + "' (pick, graft, svd, align, inflate, finetune)");
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

// The run's own anti-patterns, from the config stored in the checkpoint (make_run.py style:
// config.train.{mlp_l2, weight_decay, lr}): what a plain continuation of the run would use.
ojson original_optimizer_settings(const io::Checkpoint& ck, double lr, std::vector<std::string>& notes) {
    ojson settings = {{"optimizer", "adamw"}, {"lr", lr}, {"reg", ojson::array()}};
    const io::Value* root = ck.root();
    const io::Value* train = nullptr;
    if (root && root->kind == io::ValueKind::Dict)
        if (const io::Value* cfg = root->get("config"); cfg && cfg->kind == io::ValueKind::Dict) train = cfg->get("train");
    auto number = [&](const char* key) -> std::optional<double> {
        if (!train || train->kind != io::ValueKind::Dict) return std::nullopt;
        const io::Value* v = train->get(key);
        if (!v) return std::nullopt;
        if (v->kind == io::ValueKind::Float) return v->real;
        if (v->kind == io::ValueKind::Int) return static_cast<double>(v->integer);
        return std::nullopt;
    };
    if (auto wd = number("weight_decay")) {
        settings["weight_decay"] = *wd;
        notes.push_back("config.train.weight_decay = " + fmt("%g", *wd) + " (decoupled, embeddings and norms)");
    }
    for (const char* role : {"mlp", "attn"}) {
        if (auto l2 = number((std::string(role) + "_l2").c_str())) {
            settings["reg"].push_back("decay:lambda=" + fmt("%g", *l2) + ",coupled,roles=" + role);
            notes.push_back("config.train." + std::string(role) + "_l2 = " + fmt("%g", *l2) + " (coupled L2 on the " + role + " matrices)");
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

    std::string start = r.latest;
    if (!from.empty() && from != r.latest && !sick_roles.empty()) {
        // Graft when the roles that stayed healthy kept learning after `from`: their later state is
        // worth more than going back in time for the whole model.
        std::set<analysis::Role> healthy_roles;
        for (const auto& l : latest.layers)
            if (analysis::role_is_ternary_matrix(l.role) && !sick_roles.count(l.role)) healthy_roles.insert(l.role);
        const io::Checkpoint a = io::Checkpoint::open(r.latest), b = io::Checkpoint::open(from);
        const double change = relative_change(a, b, healthy_roles);
        if (change > 0.05) {
            RecipeStage g;
            g.kind = StageKind::Graft;
            g.params = {{"base", r.latest}, {"donor", from}, {"roles", roles}, {"layers", layer_list}};
            g.reason = "the healthy roles moved " + fmt("%.0f%%", 100 * change) + " (relative Frobenius) after " +
                       fs::path(from).filename().string() + " and are still healthy: keep them from the latest checkpoint and take the " +
                       "collapsed roles from the last healthy one";
            r.stages.push_back(g);
        } else {
            RecipeStage p;
            p.kind = StageKind::Pick;
            p.params = {{"checkpoint", from}};
            p.reason = "the healthy roles changed only " + fmt("%.1f%%", 100 * change) + " after " + fs::path(from).filename().string() +
                       ": go back to it whole";
            r.stages.push_back(p);
        }
        start = from;
    }

    RecipeStage ft;
    ft.kind = StageKind::Finetune;
    const std::string like = from.empty() ? r.latest : from;
    ojson reg = ojson::array();
    std::string roles_spec;
    for (const auto& role : roles) roles_spec += (roles_spec.empty() ? "" : "|") + role.get<std::string>();
    if (!roles_spec.empty()) reg.push_back("double-well:lambda=1e-4,target=like,roles=" + roles_spec);
    ft.params = {{"steps", options.finetune_steps}, {"lr", options.lr}, {"optimizer", "adamw"}, {"warmup", 10}, {"reg", reg}, {"like", like}};
    ft.reason = roles_spec.empty() ? "fine-tune with the same budget as the baselines"
                                   : "fine-tune without the decay that collapsed " + roles_spec + ", with a double-well pulling their weights to ±S, " +
                                         "S the absmean of each layer-role in " + fs::path(like).filename().string();
    r.stages.push_back(ft);

    std::vector<std::string> notes;
    r.baseline_finetune = original_optimizer_settings(io::Checkpoint::open(r.latest), options.lr, notes);
    r.baseline_finetune["notes"] = notes;
    r.baseline_finetune["steps"] = options.finetune_steps;
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
