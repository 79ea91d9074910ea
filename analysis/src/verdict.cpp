#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <utility>

#include "bitfsck/analysis/median.hpp"
#include "bitfsck/analysis/report.hpp"
#include "bitfsck/analysis/scan.hpp"

namespace bitfsck::analysis {

std::string_view verdict_name(Verdict v) {
    switch (v) {
        case Verdict::Healthy: return "healthy";
        case Verdict::Degraded: return "degraded";
        case Verdict::Collapsed: return "collapsed";
        case Verdict::Unknown: return "unknown";
    }
    return "healthy";
}

namespace {
int rank(Verdict v) {
    switch (v) {
        case Verdict::Healthy: return 0;
        case Verdict::Unknown: return 1;
        case Verdict::Degraded: return 2;
        case Verdict::Collapsed: return 3;
    }
    return 0;
}
}  // namespace

Verdict worst(Verdict a, Verdict b) { return rank(a) >= rank(b) ? a : b; }

bool verdict_is_sick(Verdict v) { return v == Verdict::Degraded || v == Verdict::Collapsed; }

namespace {

// Two significant digits; tiny and huge numbers in exponent form with the mantissa's
// trailing ".0" dropped, so a threshold of 0.001 reads "1e-03" next to "4.5e-05".
std::string num(double v) {
    char buf[64];
    double a = std::fabs(v);
    if (a != 0 && (a < 1e-2 || a >= 1e4)) {
        std::snprintf(buf, sizeof buf, "%.1e", v);
        std::string s = buf;
        auto dot = s.find(".0e");
        if (dot != std::string::npos) s.erase(dot, 2);
        return s;
    }
    std::snprintf(buf, sizeof buf, "%.2g", v);
    return buf;
}

std::string pct(double frac) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%%", frac * 100);
    return buf;
}

std::string pct_threshold(double frac) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g%%", frac * 100);
    return buf;
}

struct Pending {
    Finding finding;
    std::optional<int> layer;
};

using GroupKey = std::pair<std::optional<int>, Role>;

class Judge {
public:
    explicit Judge(ScanReport& r) : r_(r), th_(r.thresholds) {}

    void run() {
        collect_groups();
        for (const auto& [t, place] : candidates_) judge_matrix(*t, place);
        for (const TensorStats& t : r_.tensors) judge_finite(t);

        std::stable_sort(pending_.begin(), pending_.end(), [](const Pending& a, const Pending& b) {
            if (a.finding.severity != b.finding.severity) return worst(a.finding.severity, b.finding.severity) == a.finding.severity;
            return a.layer < b.layer;
        });
        for (Pending& p : pending_) {
            r_.verdict = worst(r_.verdict, p.finding.severity);
            r_.findings.push_back(std::move(p.finding));
        }
        for (auto& [key, index] : group_index_) r_.layers.push_back(std::move(groups_[index]));
    }

private:
    void collect_groups() {
        for (const TensorStats& t : r_.tensors) {
            TensorPlace place = place_of(t.name);
            if (!role_is_ternary_matrix(place.role) || !place.is_weight || t.count < th_.min_elements) continue;
            candidates_.emplace_back(&t, place);
            GroupKey key{place.layer, place.role};
            auto [it, fresh] = group_index_.try_emplace(key, groups_.size());
            if (fresh) {
                groups_.emplace_back();
                groups_.back().layer = place.layer;
                groups_.back().role = place.role;
            }
            LayerRoleStats& g = groups_[it->second];
            double w = static_cast<double>(t.count);
            g.tensors.push_back(t.name);
            g.count += t.count;
            g.std += w * t.std;
            g.absmean += w * t.absmean;
            g.zero_frac += w * t.zero_frac;
            g.neg += w * t.ternary.neg;
            g.zero += w * t.ternary.zero;
            g.pos += w * t.ternary.pos;
            g.dead_rows += t.dead.dead_rows;
            g.rows += t.dead.rows;
        }
        for (LayerRoleStats& g : groups_) {
            double w = static_cast<double>(g.count);
            for (double* f : {&g.std, &g.absmean, &g.zero_frac, &g.neg, &g.zero, &g.pos}) *f /= w;
        }
    }

    LayerRoleStats& group_of(const TensorPlace& p) { return groups_[group_index_.at(GroupKey{p.layer, p.role})]; }

    void add(const TensorStats& t, const TensorPlace* place, Verdict severity, std::string rule, std::string message) {
        Pending p;
        p.finding.severity = severity;
        p.finding.rule = std::move(rule);
        p.finding.subject = t.name;
        p.finding.message = t.name + ": " + message;
        p.layer = place ? place->layer : place_of(t.name).layer;
        pending_.push_back(std::move(p));
        if (place) {
            LayerRoleStats& g = group_of(*place);
            g.verdict = worst(g.verdict, severity);
        }
    }

    void judge_matrix(const TensorStats& t, const TensorPlace& place) {
        if (t.dead.all_zero) {
            add(t, &place, Verdict::Collapsed, "all_zero", "all " + std::to_string(t.count) + " values are exactly 0");
            return;
        }
        const RuleOutcome m = judge_magnitude(t.std, t.absmean, "absmean", t.ternary.zero, th_);
        if (m.severity != Verdict::Healthy) add(t, &place, m.severity, m.rule, m.message);

        judge_role_outlier(t, place);

        if (t.dead.rows > 0) {
            double share = static_cast<double>(t.dead.dead_rows) / static_cast<double>(t.dead.rows);
            if (share >= th_.dead_rows_degraded || share >= th_.dead_rows_collapsed) {
                bool collapsed = share >= th_.dead_rows_collapsed;
                add(t, &place, collapsed ? Verdict::Collapsed : Verdict::Degraded, "dead_rows",
                    pct(share) + " dead output rows (" + std::to_string(t.dead.dead_rows) + " of " +
                        std::to_string(t.dead.rows) + ") >= " +
                        pct_threshold(collapsed ? th_.dead_rows_collapsed : th_.dead_rows_degraded));
            }
        }
    }

    // A layer far below the same projection in the other layers has collapsed even when its
    // absolute numbers look plausible (models differ in scale; layers of one model do not).
    void judge_role_outlier(const TensorStats& t, const TensorPlace& place) {
        if (!place.layer) return;
        std::vector<double> others;
        for (const LayerRoleStats& g : groups_)
            if (g.role == place.role && g.layer && g.layer != place.layer) others.push_back(g.std);
        if (others.size() + 1 < 3) return;
        double med = median(others);
        if (!(med > 0)) return;
        bool collapsed = t.std < th_.collapsed_role_ratio * med;
        if (!collapsed && !(t.std < th_.degraded_role_ratio * med)) return;
        double ratio = collapsed ? th_.collapsed_role_ratio : th_.degraded_role_ratio;
        add(t, &place, collapsed ? Verdict::Collapsed : Verdict::Degraded, "role_outlier",
            "std " + num(t.std) + " < " + num(ratio) + " x median " + num(med) + " of " +
                std::string(role_name(place.role)) + " in " + std::to_string(others.size()) + " other layers");
    }

    void judge_finite(const TensorStats& t) {
        if (t.nan_count + t.inf_count == 0) return;
        TensorPlace place = place_of(t.name);
        bool grouped = group_index_.count(GroupKey{place.layer, place.role}) &&
                       std::count(group_of(place).tensors.begin(), group_of(place).tensors.end(), t.name);
        add(t, grouped ? &place : nullptr, Verdict::Collapsed, "non_finite",
            std::to_string(t.nan_count) + " NaN and " + std::to_string(t.inf_count) + " Inf values");
    }

    ScanReport& r_;
    const Thresholds& th_;
    std::vector<std::pair<const TensorStats*, TensorPlace>> candidates_;
    std::map<GroupKey, std::size_t> group_index_;  // ordered by layer, then role
    std::vector<LayerRoleStats> groups_;
    std::vector<Pending> pending_;
};

}  // namespace

// Which naming convention the assigned tensors follow, and which weight matrices the table could
// not place: a report that judged nothing must say so, never read as healthy.
RuleOutcome judge_magnitude(double std, double scale, std::string_view scale_name, double zf, const Thresholds& th) {
    RuleOutcome out;
    std::vector<std::string> parts;
    if (std < th.collapsed_std || scale < th.collapsed_std) {
        const bool by_std = std < th.collapsed_std;
        parts.push_back((by_std ? std::string("std") : std::string(scale_name)) + " " + num(by_std ? std : scale) + " < " + num(th.collapsed_std));
        out.rule = "std_below";
        out.severity = Verdict::Collapsed;
    }
    if (zf > th.collapsed_zero_frac || zf > th.degraded_zero_frac) {
        const bool collapsed = zf > th.collapsed_zero_frac;
        parts.push_back(pct(zf) + " ternary zeros > " + pct_threshold(collapsed ? th.collapsed_zero_frac : th.degraded_zero_frac));
        if (out.rule.empty()) out.rule = "zeros_above";
        out.severity = worst(out.severity, collapsed ? Verdict::Collapsed : Verdict::Degraded);
    }
    for (std::size_t i = 0; i < parts.size(); ++i) out.message += (i ? " and " : "") + parts[i];
    return out;
}

void place_names(ScanReport& report) {
    report.unassigned.clear();
    std::map<NameLayout, std::size_t> layouts;
    for (const TensorStats& t : report.tensors) {
        const TensorPlace place = place_of(t.name);
        if (place.role != Role::Other) ++layouts[place.layout];
        else if (t.shape.size() >= 2 && place.is_weight && t.count >= report.thresholds.min_elements) report.unassigned.push_back(t.name);
    }
    NameLayout best = NameLayout::Unknown;
    std::size_t most = 0;
    for (const auto& [layout, n] : layouts)
        if (layout != NameLayout::Unknown && n > most) best = layout, most = n;
    report.name_layout = std::string(name_layout_name(best));
}

void judge(ScanReport& report) {
    report.layers.clear();
    report.findings.clear();
    report.verdict = Verdict::Healthy;
    Judge(report).run();
    place_names(report);
    if (report.layers.empty() && (!report.unassigned.empty() || !report.undecoded.empty()))
        report.verdict = worst(report.verdict, Verdict::Unknown);
}

}  // namespace bitfsck::analysis
