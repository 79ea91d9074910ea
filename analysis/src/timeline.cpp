#include "bitfsck/analysis/timeline.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

namespace bitfsck::analysis {
namespace {

// Layer-roles are compared across checkpoints by (layer, role); a missing layer sorts first.
using RoleKey = std::pair<int, Role>;
RoleKey key_of(const LayerRoleStats& l) { return {l.layer ? *l.layer : -1, l.role}; }

std::string format_ratio(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}

bool finding_is_about(const Finding& f, const LayerRoleStats& l, const std::string& label) {
    if (f.subject == label) return true;
    return std::find(l.tensors.begin(), l.tensors.end(), f.subject) != l.tensors.end();
}

int role_order(Role r) {
    // MLP first: collapse in BitNet training shows there first, and tables read left to right.
    static constexpr Role order[] = {Role::MlpGate, Role::MlpUp,   Role::MlpDown, Role::AttnQ,
                                     Role::AttnK,   Role::AttnV,   Role::AttnO,   Role::AttnQKV};
    for (int i = 0; i < static_cast<int>(std::size(order)); ++i)
        if (order[i] == r) return i;
    return static_cast<int>(std::size(order)) + static_cast<int>(r);
}

}  // namespace

std::string layer_role_label(const std::optional<int>& layer, Role role) {
    if (!layer) return std::string(role_name(role));
    return "layers." + std::to_string(*layer) + "." + std::string(role_name(role));
}

std::optional<std::int64_t> step_from_file_name(const std::filesystem::path& file) {
    std::string stem = file.filename().string();
    // Strip every extension (".pt", ".safetensors", ".pt.bak"): digits in an extension are not a step.
    if (auto dot = stem.find('.'); dot != std::string::npos && dot > 0) stem.resize(dot);
    std::size_t end = stem.size();
    while (end > 0 && !std::isdigit(static_cast<unsigned char>(stem[end - 1]))) --end;
    if (end == 0) return std::nullopt;
    std::size_t begin = end;
    while (begin > 0 && std::isdigit(static_cast<unsigned char>(stem[begin - 1]))) --begin;
    std::string digits = stem.substr(begin, end - begin);
    // Leading zeros are padding ("step_000400"); more than 18 digits would overflow int64.
    std::size_t first = digits.find_first_not_of('0');
    if (first == std::string::npos) return 0;
    if (digits.size() - first > 18) return std::nullopt;
    return std::stoll(digits.substr(first));
}

std::vector<RoleSummary> summarize_roles(const std::vector<LayerRoleStats>& layers) {
    std::map<Role, RoleSummary> by_role;
    for (const auto& l : layers) {
        if (!role_is_ternary_matrix(l.role)) continue;
        auto& s = by_role[l.role];
        s.role = l.role;
        s.layers += 1;
        s.mean_std += l.std;
        s.mean_absmean += l.absmean;
        s.mean_zero += l.zero;
        s.worst = worst(s.worst, l.verdict);
    }
    std::vector<RoleSummary> out;
    for (auto& [role, s] : by_role) {
        s.mean_std /= s.layers;
        s.mean_absmean /= s.layers;
        s.mean_zero /= s.layers;
        out.push_back(s);
    }
    std::sort(out.begin(), out.end(), [](const RoleSummary& a, const RoleSummary& b) { return role_order(a.role) < role_order(b.role); });
    return out;
}

Timeline build_timeline(std::vector<ScanReport> reports) {
    Timeline timeline;
    struct Placed {
        std::int64_t step;
        bool from_name;
        ScanReport report;
    };
    std::vector<Placed> placed;
    placed.reserve(reports.size());
    for (auto& r : reports) {
        if (r.step) {
            placed.push_back({*r.step, false, std::move(r)});
            continue;
        }
        auto s = step_from_file_name(r.file);
        if (!s)
            throw TimelineError(r.file + ": no training step in the checkpoint and no digits in its file name to take one from");
        placed.push_back({*s, true, std::move(r)});
    }
    std::stable_sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) { return a.step < b.step; });
    for (std::size_t i = 1; i < placed.size(); ++i)
        if (placed[i].step == placed[i - 1].step)
            throw TimelineError(placed[i - 1].report.file + " and " + placed[i].report.file + " are both step " +
                                std::to_string(placed[i].step));

    if (placed.empty()) return timeline;
    timeline.quantizer = placed.front().report.quantizer;
    timeline.thresholds = placed.front().report.thresholds;

    // Gamma of every layer-role at the first point, for the cross-checkpoint rule.
    std::map<RoleKey, double> first_gamma;
    for (const auto& l : placed.front().report.layers) first_gamma[key_of(l)] = l.absmean;

    std::map<RoleKey, bool> role_tripped;
    for (auto& pl : placed) {
        ScanReport& r = pl.report;
        TimelinePoint p;
        p.step = pl.step;
        p.file = r.file;
        p.step_from_file_name = pl.from_name;
        p.content_hash = r.content_hash;
        p.scan_verdict = r.verdict;
        p.security_findings = r.security.size();
        p.findings = std::move(r.findings);
        p.layers = std::move(r.layers);
        Verdict verdict = r.verdict;

        for (auto& l : p.layers) {
            if (!role_is_ternary_matrix(l.role)) continue;
            auto it = first_gamma.find(key_of(l));
            if (it == first_gamma.end() || !(it->second > 0) || !std::isfinite(l.absmean)) continue;
            double ratio = l.absmean / it->second;
            if (ratio < r.thresholds.collapsed_role_ratio) {
                Finding f;
                f.severity = Verdict::Degraded;
                f.rule = "gamma_fell";
                f.subject = layer_role_label(l.layer, l.role);
                f.message = f.subject + ": absmean gamma " + format_ratio(l.absmean) + " is " + format_ratio(ratio) +
                            "x its value " + format_ratio(it->second) + " at step " + std::to_string(placed.front().step) +
                            " (< " + format_ratio(r.thresholds.collapsed_role_ratio) + ")";
                p.findings.push_back(std::move(f));
                l.verdict = worst(l.verdict, Verdict::Degraded);
            }
        }
        for (const auto& l : p.layers) verdict = worst(verdict, l.verdict);
        // Keep "most severe first", as ScanReport::findings promises; stable keeps the scan's order.
        std::stable_sort(p.findings.begin(), p.findings.end(),
                         [](const Finding& a, const Finding& b) { return static_cast<int>(a.severity) > static_cast<int>(b.severity); });
        p.verdict = verdict;
        p.roles = summarize_roles(p.layers);

        for (const auto& l : p.layers) {
            if (l.verdict == Verdict::Healthy || role_tripped[key_of(l)]) continue;
            role_tripped[key_of(l)] = true;
            RoleOnset o;
            o.layer = l.layer;
            o.role = l.role;
            o.step = p.step;
            o.file = p.file;
            o.verdict = l.verdict;
            std::string label = layer_role_label(l.layer, l.role);
            for (const auto& f : p.findings)
                if (finding_is_about(f, l, label)) o.reasons.push_back(f);
            timeline.role_onsets.push_back(std::move(o));
        }

        // An unknown verdict (nothing judged) is neither an onset nor a healthy checkpoint.
        if (!timeline.onset_step && verdict_is_sick(p.verdict)) {
            timeline.onset_step = p.step;
            timeline.onset_file = p.file;
            timeline.reasons = p.findings;
        }
        if (!timeline.collapsed_step && p.verdict == Verdict::Collapsed) timeline.collapsed_step = p.step;
        if (!timeline.collapsed_step) {
            timeline.last_before_collapse_step = p.step;
            timeline.last_before_collapse_file = p.file;
        }
        if (!timeline.onset_step && p.verdict == Verdict::Healthy) {
            timeline.last_healthy_step = p.step;
            timeline.last_healthy_file = p.file;
        }
        timeline.points.push_back(std::move(p));
    }
    timeline.final_verdict = timeline.points.back().verdict;
    std::stable_sort(timeline.role_onsets.begin(), timeline.role_onsets.end(), [](const RoleOnset& a, const RoleOnset& b) {
        return std::make_tuple(a.step, a.layer.value_or(-1), role_order(a.role)) <
               std::make_tuple(b.step, b.layer.value_or(-1), role_order(b.role));
    });
    return timeline;
}

}  // namespace bitfsck::analysis
