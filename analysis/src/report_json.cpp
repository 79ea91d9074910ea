#include "bitfsck/analysis/report_json.hpp"

#include <algorithm>
#include <cmath>

#include "bitfsck/analysis/diff.hpp"
#include "bitfsck/analysis/run_watch.hpp"
#include "bitfsck/analysis/timeline.hpp"

namespace bitfsck::analysis {

using nlohmann::ordered_json;

namespace {


ordered_json optional_int(const std::optional<std::int64_t>& v) { return v ? ordered_json(*v) : ordered_json(nullptr); }
ordered_json optional_layer(const std::optional<int>& v) { return v ? ordered_json(*v) : ordered_json(nullptr); }

ordered_json ternary_json(const TernaryFractions& t) {
    return ordered_json{{"quantizer", std::string(quantizer_name(t.quantizer))},
                        {"scale", json_number(t.scale)},
                        {"neg", json_number(t.neg)},
                        {"zero", json_number(t.zero)},
                        {"pos", json_number(t.pos)}};
}

ordered_json findings_json(const std::vector<Finding>& findings) {
    ordered_json a = ordered_json::array();
    for (const auto& f : findings) a.push_back(to_json(f));
    return a;
}

ordered_json transitions_json(const TransitionMatrix& m) {
    ordered_json rows = ordered_json::array();
    for (const auto& row : m) rows.push_back(ordered_json(std::vector<std::uint64_t>(row.begin(), row.end())));
    return rows;
}

ordered_json role_summary_json(const RoleSummary& r) {
    return ordered_json{{"role", std::string(role_name(r.role))},
                        {"layers", r.layers},
                        {"mean_std", json_number(r.mean_std)},
                        {"mean_absmean", json_number(r.mean_absmean)},
                        {"mean_zero", json_number(r.mean_zero)},
                        {"verdict", std::string(verdict_name(r.worst))}};
}

}  // namespace

ordered_json json_number(double v) { return std::isfinite(v) ? ordered_json(v) : ordered_json(nullptr); }

Verdict verdict_of_subject(const ScanReport& report, std::string_view subject) {
    Verdict v = Verdict::Healthy;
    for (const auto& f : report.findings)
        if (f.subject == subject) v = worst(v, f.severity);
    return v;
}

ordered_json to_json(const Histogram& h) {
    return ordered_json{{"lo", json_number(h.lo)}, {"hi", json_number(h.hi)}, {"counts", h.counts}};
}

ordered_json to_json(const Finding& f) {
    return ordered_json{{"severity", std::string(verdict_name(f.severity))},
                        {"rule", f.rule},
                        {"subject", f.subject},
                        {"message", f.message}};
}

ordered_json to_json(const SecuritySummary& s) {
    return ordered_json{{"global", s.global},
                        {"severity", s.severity},
                        {"offset", s.offset},
                        {"called", s.called},
                        {"reason", s.reason}};
}

ordered_json to_json(const LayerRoleStats& l) {
    return ordered_json{{"layer", optional_layer(l.layer)},
                        {"role", std::string(role_name(l.role))},
                        {"tensors", l.tensors},
                        {"count", l.count},
                        {"std", json_number(l.std)},
                        {"absmean", json_number(l.absmean)},
                        {"zero_frac", json_number(l.zero_frac)},
                        {"neg", json_number(l.neg)},
                        {"zero", json_number(l.zero)},
                        {"pos", json_number(l.pos)},
                        {"dead_rows", l.dead_rows},
                        {"rows", l.rows},
                        {"verdict", std::string(verdict_name(l.verdict))}};
}

ordered_json to_json(const TensorStats& t, bool include_histograms) {
    ordered_json j{{"name", t.name},
                   {"dtype", t.dtype},
                   {"shape", t.shape},
                   {"count", t.count},
                   {"finite_count", t.finite_count},
                   {"nan_count", t.nan_count},
                   {"inf_count", t.inf_count},
                   {"mean", json_number(t.mean)},
                   {"std", json_number(t.std)},
                   {"min", json_number(t.min)},
                   {"max", json_number(t.max)},
                   {"absmean", json_number(t.absmean)},
                   {"zero_frac", json_number(t.zero_frac)},
                   {"ternary", ternary_json(t.ternary)},
                   {"ternary_other", ternary_json(t.ternary_other)}};
    if (include_histograms) {
        j["values"] = to_json(t.values);
        j["log_magnitude"] = to_json(t.log_magnitude);
    }
    j["lattice"] = ordered_json{{"distinct_values", t.lattice.distinct_values},
                                {"distinct_capped", t.lattice.distinct_capped},
                                {"is_ternary", t.lattice.is_ternary},
                                {"per_channel", t.lattice.per_channel},
                                {"scale", json_number(t.lattice.scale)},
                                {"rms_rel", json_number(t.lattice.rms_rel)}};
    j["dead"] = ordered_json{{"rows", t.dead.rows},
                             {"cols", t.dead.cols},
                             {"dead_rows", t.dead.dead_rows},
                             {"dead_cols", t.dead.dead_cols},
                             {"all_zero", t.dead.all_zero}};
    return j;
}

ordered_json to_json(const ScanReport& r, bool include_histograms, std::string_view tool_version) {
    ordered_json j = json_document(kJsonSchemaVersion, tool_version);
    j["file"] = r.file;
    j["file_size"] = r.file_size;
    j["content_hash"] = r.content_hash;
    j["format"] = r.format;
    j["state_dict_path"] = r.state_dict_path ? ordered_json(*r.state_dict_path) : ordered_json(nullptr);
    j["step"] = optional_int(r.step);
    j["quantizer"] = std::string(quantizer_name(r.quantizer));
    j["thresholds"] = thresholds_to_json(r.thresholds);
    j["verdict"] = std::string(verdict_name(r.verdict));
    j["name_layout"] = r.name_layout;
    if (!r.shards.empty()) j["shards"] = r.shards;
    j["unassigned"] = r.unassigned;
    j["undecoded"] = r.undecoded;
    j["notes"] = r.notes;
    j["warnings"] = r.warnings;

    // Totals of what became null below, so a reader never has to guess whether null meant
    // "not computed" or "not a number".
    std::uint64_t nan = 0, inf = 0;
    for (const auto& t : r.tensors) {
        nan += t.nan_count;
        inf += t.inf_count;
    }
    j["non_finite"] = ordered_json{{"nan_count", nan}, {"inf_count", inf}};

    j["findings"] = findings_json(r.findings);
    ordered_json security = ordered_json::array();
    for (const auto& s : r.security) security.push_back(to_json(s));
    j["security"] = std::move(security);
    ordered_json layers = ordered_json::array();
    for (const auto& l : r.layers) layers.push_back(to_json(l));
    j["layers"] = std::move(layers);
    ordered_json tensors = ordered_json::array();
    for (const auto& t : r.tensors) {
        ordered_json tj = to_json(t, include_histograms);
        if (t.shard) tj["shard"] = *t.shard;
        tj["verdict"] = std::string(verdict_name(verdict_of_subject(r, t.name)));
        tensors.push_back(std::move(tj));
    }
    j["tensors"] = std::move(tensors);
    return j;
}

ordered_json to_json(const TimelinePoint& p) {
    ordered_json pj{{"step", p.step},
                    {"file", p.file},
                    {"step_from_file_name", p.step_from_file_name},
                    {"content_hash", p.content_hash},
                    {"scan_verdict", std::string(verdict_name(p.scan_verdict))},
                    {"verdict", std::string(verdict_name(p.verdict))},
                    {"security_findings", p.security_findings}};
    ordered_json roles = ordered_json::array();
    for (const auto& r : p.roles) roles.push_back(role_summary_json(r));
    pj["roles"] = std::move(roles);
    ordered_json layers = ordered_json::array();
    for (const auto& l : p.layers) layers.push_back(to_json(l));
    pj["layers"] = std::move(layers);
    pj["findings"] = findings_json(p.findings);
    return pj;
}

ordered_json to_json(const WatchEvent& e) {
    static constexpr const char* kKinds[] = {"checkpoint", "unreadable", "removed", "onset"};
    ordered_json j{{"event", kKinds[static_cast<int>(e.kind)]}, {"input", e.input.string()}};
    switch (e.kind) {
        case WatchEvent::Kind::Checkpoint:
            j["point"] = e.point ? to_json(*e.point) : ordered_json(nullptr);
            break;
        case WatchEvent::Kind::Unreadable:
            j["error"] = e.error;
            break;
        case WatchEvent::Kind::Removed:
            break;
        case WatchEvent::Kind::Onset: {
            const Timeline& t = *e.timeline;
            j["step"] = optional_int(t.onset_step);
            j["file"] = t.onset_file;
            auto at = std::find_if(t.points.begin(), t.points.end(), [&](const TimelinePoint& p) { return p.step == t.onset_step; });
            j["verdict"] = at == t.points.end() ? ordered_json(nullptr) : ordered_json(std::string(verdict_name(at->verdict)));
            ordered_json labels = ordered_json::array();
            for (const auto& o : t.role_onsets)
                if (o.step == *t.onset_step) labels.push_back(layer_role_label(o.layer, o.role));
            j["layer_roles"] = std::move(labels);
            j["reasons"] = findings_json(t.reasons);
            j["last_healthy_step"] = optional_int(t.last_healthy_step);
            j["last_healthy_file"] = t.last_healthy_step ? ordered_json(t.last_healthy_file) : ordered_json(nullptr);
            break;
        }
    }
    return j;
}

ordered_json to_json(const Timeline& t, std::string_view tool_version) {
    ordered_json j = json_document(kJsonSchemaVersion, tool_version);
    j["quantizer"] = std::string(quantizer_name(t.quantizer));
    j["thresholds"] = thresholds_to_json(t.thresholds);
    j["onset_step"] = optional_int(t.onset_step);
    j["onset_file"] = t.onset_step ? ordered_json(t.onset_file) : ordered_json(nullptr);
    j["collapsed_step"] = optional_int(t.collapsed_step);
    j["last_healthy_step"] = optional_int(t.last_healthy_step);
    j["last_healthy_file"] = t.last_healthy_step ? ordered_json(t.last_healthy_file) : ordered_json(nullptr);
    j["last_before_collapse_step"] = optional_int(t.last_before_collapse_step);
    j["last_before_collapse_file"] = t.last_before_collapse_step ? ordered_json(t.last_before_collapse_file) : ordered_json(nullptr);
    j["final_verdict"] = std::string(verdict_name(t.final_verdict));
    j["reasons"] = findings_json(t.reasons);
    ordered_json skipped = ordered_json::array();
    for (const auto& s : t.skipped) skipped.push_back(ordered_json{{"file", s.file}, {"reason", s.reason}});
    j["skipped"] = std::move(skipped);

    ordered_json onsets = ordered_json::array();
    for (const auto& o : t.role_onsets)
        onsets.push_back(ordered_json{{"layer", optional_layer(o.layer)},
                                      {"role", std::string(role_name(o.role))},
                                      {"label", layer_role_label(o.layer, o.role)},
                                      {"step", o.step},
                                      {"file", o.file},
                                      {"verdict", std::string(verdict_name(o.verdict))},
                                      {"reasons", findings_json(o.reasons)}});
    j["role_onsets"] = std::move(onsets);

    ordered_json points = ordered_json::array();
    for (const auto& p : t.points) points.push_back(to_json(p));
    j["points"] = std::move(points);
    return j;
}

ordered_json to_json(const CheckpointDiff& d, std::string_view tool_version) {
    ordered_json j = json_document(kJsonSchemaVersion, tool_version);
    j["file_a"] = d.file_a;
    j["file_b"] = d.file_b;
    j["quantizer"] = std::string(quantizer_name(d.quantizer));
    // Rows and columns of every transition matrix, spelled out once.
    j["transition_codes"] = ordered_json::array({-1, 0, 1});
    const auto& s = d.totals;
    j["totals"] = ordered_json{{"tensors_compared", s.tensors_compared},
                               {"only_in_a", s.only_in_a},
                               {"only_in_b", s.only_in_b},
                               {"not_compared", s.not_compared},
                               {"count", s.count},
                               {"non_finite", s.non_finite},
                               {"rel_l2", json_number(s.rel_l2)},
                               {"flips", s.flips},
                               {"flip_rate", json_number(s.flip_rate)},
                               {"transitions", transitions_json(s.transitions)},
                               {"new_dead_rows", s.new_dead_rows}};
    ordered_json tensors = ordered_json::array();
    for (const auto& t : d.tensors) {
        ordered_json tj{{"name", t.name},
                        {"shape", t.shape},
                        {"shape_b", t.shape_b.empty() ? ordered_json(nullptr) : ordered_json(t.shape_b)},
                        {"only_in_a", t.only_in_a},
                        {"only_in_b", t.only_in_b},
                        {"compared", t.compared},
                        {"note", t.note.empty() ? ordered_json(nullptr) : ordered_json(t.note)},
                        {"count", t.count},
                        {"non_finite", t.non_finite},
                        {"norm_a", json_number(t.norm_a)},
                        {"norm_b", json_number(t.norm_b)},
                        {"rel_l2", json_number(t.rel_l2)},
                        {"absmean_a", json_number(t.absmean_a)},
                        {"absmean_b", json_number(t.absmean_b)},
                        {"scale_a", json_number(t.scale_a)},
                        {"scale_b", json_number(t.scale_b)},
                        {"flips", t.flips},
                        {"flip_rate", json_number(t.flip_rate)},
                        {"transitions", transitions_json(t.transitions)},
                        {"rows", t.rows},
                        {"dead_rows_a", t.dead_rows_a},
                        {"dead_rows_b", t.dead_rows_b},
                        {"new_dead_rows", t.new_dead_rows}};
        tensors.push_back(std::move(tj));
    }
    j["tensors"] = std::move(tensors);
    return j;
}

std::string dump_json(const ordered_json& j) {
    return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace bitfsck::analysis
