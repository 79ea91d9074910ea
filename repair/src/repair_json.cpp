#include "bitfsck/repair/repair_json.hpp"

#include "bitfsck/analysis/report_json.hpp"
#include "bitfsck/analysis/thresholds.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/json_document.hpp"

namespace bitfsck::repair {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using analysis::json_number;

ordered_json masses_json(const LatticeMasses& m) {
    return {{"neg", json_number(m.neg)}, {"zero", json_number(m.zero)}, {"pos", json_number(m.pos)}};
}

ordered_json figures_json(const TensorFigures& f) {
    return {{"std", json_number(f.std)}, {"absmean", json_number(f.absmean)}, {"neg", json_number(f.neg)},
            {"zero", json_number(f.zero)}, {"pos", json_number(f.pos)}, {"dead_rows", f.dead_rows}};
}

ordered_json layer_json(const analysis::LayerRoleStats& l) {
    return {{"std", json_number(l.std)}, {"absmean", json_number(l.absmean)}, {"neg", json_number(l.neg)},
            {"zero", json_number(l.zero)}, {"pos", json_number(l.pos)}, {"dead_rows", l.dead_rows},
            {"verdict", analysis::verdict_name(l.verdict)}};
}

ordered_json tensor_json(const TensorRepair& t) {
    ordered_json j = {{"name", t.name}, {"shape", t.shape}, {"dtype", t.dtype}, {"reason", t.reason}};
    if (!t.scale_source.empty()) j["scale_source"] = t.scale_source;
    j["relative_change"] = json_number(t.relative_change);
    j["changed_elements"] = t.changed_elements;
    if (t.svd) {
        const SvdOutcome& s = *t.svd;
        j["svd"] = {{"rule", s.rule}, {"rank", s.rank}, {"max_rank", s.max_rank}, {"threshold", json_number(s.threshold)},
                    {"noise_sigma", json_number(s.noise_sigma)}, {"energy_kept", json_number(s.energy_kept)},
                    {"solver", s.solver}, {"rank_floored", s.rank_floored}, {"top_singular_values", s.top_singular_values}};
    }
    if (t.align) {
        const AlignOutcome& a = *t.align;
        j["align"] = {{"target", masses_json(a.target)}, {"achieved", masses_json(a.achieved)},
                      {"mass_error", json_number(a.mass_error)}, {"scale", json_number(a.scale)},
                      {"scale_guess", json_number(a.scale_guess)}, {"scale_solved", a.scale_solved},
                      {"evaluations", a.evaluations}, {"strength", json_number(a.strength)}, {"width", json_number(a.width)},
                      {"w2_before", json_number(a.w2_before)}, {"w2_after", json_number(a.w2_after)}};
    }
    if (t.inflate) {
        const InflateOutcome& f = *t.inflate;
        j["inflate"] = {{"gamma_before", json_number(f.gamma_before)}, {"dead_zone", json_number(f.dead_zone)},
                        {"target", json_number(f.target)}, {"in_dead_zone", f.in_dead_zone}, {"moved", f.moved},
                        {"sign_from_weight", f.sign_from_weight}, {"sign_from_reference", f.sign_from_reference},
                        {"sign_random", f.sign_random}, {"zeros_before", json_number(f.zeros_before)},
                        {"zeros_after", json_number(f.zeros_after)}, {"zeros_requested", json_number(f.zeros_requested)},
                        {"reached", f.reached}};
    }
    j["before"] = figures_json(t.before);
    j["after"] = figures_json(t.after);
    return j;
}

template <typename T>
T get(const json& j, const char* key, const char* where) {
    if (!j.contains(key)) throw Error(std::string("repair log: ") + where + " has no '" + key + "'");
    return j.at(key).get<T>();
}

template <typename T>
std::optional<T> get_optional(const json& j, const char* key) {
    if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
    return j.at(key).get<T>();
}

}  // namespace

ordered_json to_json(const StepSpec& step) {
    ordered_json j = {{"kind", step_name(step.kind)}};
    switch (step.kind) {
        case StepKind::Svd:
            j["rule"] = rank_rule_name(step.svd.rule);
            j["rank"] = step.svd.rank;
            j["energy"] = step.svd.energy;
            j["solver"] = svd_solver_name(step.svd.solver);
            j["partial_fraction"] = step.svd.partial_fraction;
            break;
        case StepKind::Align:
            j["masses"] = step.align.masses ? masses_json(*step.align.masses) : ordered_json(nullptr);
            j["strength"] = step.align.strength;
            j["width"] = step.align.width;
            j["scale"] = step.align.scale ? ordered_json(*step.align.scale) : ordered_json(nullptr);
            break;
        case StepKind::Inflate:
            j["tau"] = step.inflate.tau;
            j["zeros"] = step.inflate.zeros;
            j["target"] = step.inflate.target ? ordered_json(*step.inflate.target) : ordered_json(nullptr);
            j["seed"] = step.inflate.seed;
            break;
        case StepKind::Pick: break;
    }
    return j;
}

StepSpec step_from_json(const json& j) {
    StepSpec s;
    const auto kind = step_from_name(get<std::string>(j, "kind", "step"));
    if (!kind) throw Error("repair log: unknown step kind '" + j.at("kind").get<std::string>() + "'");
    s.kind = *kind;
    switch (s.kind) {
        case StepKind::Svd: {
            const auto rule = rank_rule_from_name(get<std::string>(j, "rule", "step"));
            const auto solver = svd_solver_from_name(get<std::string>(j, "solver", "step"));
            if (!rule || !solver) throw Error("repair log: unknown svd rule or solver");
            s.svd.rule = *rule;
            s.svd.solver = *solver;
            s.svd.rank = get<std::int64_t>(j, "rank", "step");
            s.svd.energy = get<double>(j, "energy", "step");
            s.svd.partial_fraction = get<double>(j, "partial_fraction", "step");
            break;
        }
        case StepKind::Align:
            if (j.contains("masses") && !j["masses"].is_null())
                s.align.masses = LatticeMasses{get<double>(j["masses"], "neg", "masses"), get<double>(j["masses"], "zero", "masses"),
                                               get<double>(j["masses"], "pos", "masses")};
            s.align.strength = get<double>(j, "strength", "step");
            s.align.width = get<double>(j, "width", "step");
            s.align.scale = get_optional<double>(j, "scale");
            break;
        case StepKind::Inflate:
            s.inflate.tau = get<double>(j, "tau", "step");
            s.inflate.zeros = get<double>(j, "zeros", "step");
            s.inflate.target = get_optional<double>(j, "target");
            s.inflate.seed = get<std::uint64_t>(j, "seed", "step");
            break;
        case StepKind::Pick: break;
    }
    return s;
}

ordered_json to_json(const TensorSelection& s) {
    ordered_json layers = ordered_json::array();
    for (auto [a, b] : s.layers) layers.push_back({a, b});
    return {{"default", s.is_default()}, {"layers", layers}, {"roles", s.roles}, {"match", s.match}};
}

TensorSelection selection_from_json(const json& j) {
    TensorSelection s;
    for (const auto& r : get<json>(j, "layers", "selection")) s.layers.emplace_back(r.at(0).get<int>(), r.at(1).get<int>());
    s.roles = get<std::vector<std::string>>(j, "roles", "selection");
    s.match = get<std::vector<std::string>>(j, "match", "selection");
    return s;
}

ordered_json to_json(const RepairLog& log) {
    ordered_json j = json_document(log.schema_version);
    j["command"] = "repair";
    j["step"] = to_json(log.step);
    j["input"] = log.input;
    j["input_hash"] = log.input_hash;
    if (log.run) j["run"] = *log.run;
    if (!log.reasons.empty()) j["reasons"] = log.reasons;
    if (!log.skipped.empty()) j["skipped"] = log.skipped;
    j["like"] = log.like ? ordered_json(*log.like) : ordered_json(nullptr);
    j["like_hash"] = log.like_hash ? ordered_json(*log.like_hash) : ordered_json(nullptr);
    j["output"] = log.output;
    j["output_hash"] = log.output_hash;
    j["selection"] = to_json(log.selection);
    j["quantizer"] = analysis::quantizer_name(log.quantizer);
    j["thresholds"] = analysis::thresholds_to_json(log.thresholds);
    j["drop_optimizer_state"] = log.drop_optimizer_state;
    j["dropped_keys"] = log.dropped_keys;
    j["verdict_before"] = analysis::verdict_name(log.verdict_before);
    j["verdict_after"] = analysis::verdict_name(log.verdict_after);
    ordered_json tensors = ordered_json::array();
    for (const auto& t : log.tensors) tensors.push_back(tensor_json(t));
    j["tensors"] = std::move(tensors);
    ordered_json layers = ordered_json::array();
    for (const auto& l : log.layers)
        layers.push_back({{"layer", l.layer ? ordered_json(*l.layer) : ordered_json(nullptr)},
                          {"role", analysis::role_name(l.role)},
                          {"label", analysis::layer_role_label(l.layer, l.role)},
                          {"before", layer_json(l.before)},
                          {"after", layer_json(l.after)}});
    j["layers"] = std::move(layers);
    ordered_json findings = ordered_json::array();
    for (const auto& f : log.findings_after) findings.push_back(analysis::to_json(f));
    j["findings_after"] = std::move(findings);
    j["seconds"] = json_number(log.seconds);
    return j;
}

void write_repair_log(const RepairLog& log, const std::filesystem::path& path) {
    io::write_file_atomically(path, analysis::dump_json(to_json(log)) + "\n");
}

}  // namespace bitfsck::repair
