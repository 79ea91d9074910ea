#include "bitfsck/analysis/training_metrics.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/scan.hpp"
#include "bitfsck/io/text.hpp"

namespace bitfsck::analysis {
namespace {

std::optional<Role> role_from_name(const std::string& name) {
    for (Role r : {Role::MlpGate, Role::MlpUp, Role::MlpDown, Role::AttnQ, Role::AttnK, Role::AttnV, Role::AttnO, Role::AttnQKV})
        if (role_name(r) == name) return r;
    return std::nullopt;
}

void judge(MetricsRole& r, const Thresholds& t) {
    const RuleOutcome m = judge_magnitude(r.std, r.gamma, "γ", r.zero, t);
    r.verdict = m.severity;
    r.reason = m.message;
}

std::optional<double> number(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
}

}  // namespace

MetricsTimeline read_training_metrics(const std::filesystem::path& file, const Thresholds& thresholds) {
    std::ifstream in(file);
    if (!in) throw io::FileError(file.string() + ": cannot open");
    MetricsTimeline t;
    t.file = file;
    std::size_t line_no = 0;
    for (std::string line; std::getline(in, line);) {
        ++line_no;
        if (line.empty()) continue;
        const std::string where = file.string() + ":" + std::to_string(line_no);
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw io::FormatError(where, "not a JSON object (is this a finetune metrics file?)");
        if (!j.contains("step") || !j["step"].is_number_integer()) throw io::FormatError(where, "no integer \"step\"");
        MetricsPoint p;
        p.step = j["step"].get<std::int64_t>();
        if (!t.points.empty() && p.step <= t.points.back().step)
            throw io::FormatError(where, "step " + std::to_string(p.step) + " does not follow step " + std::to_string(t.points.back().step));
        p.loss = number(j, "loss");
        p.val_loss = number(j, "val_loss");
        p.grad_norm = number(j, "grad_norm");
        p.lr = number(j, "lr");
        if (auto roles = j.find("roles"); roles != j.end() && roles->is_object()) {
            for (const auto& [name, v] : roles->items()) {
                auto role = role_from_name(name);
                if (!role || !v.is_object()) continue;
                MetricsRole r;
                r.role = *role;
                r.std = number(v, "std").value_or(0);
                r.gamma = number(v, "gamma").value_or(0);
                r.neg = number(v, "neg").value_or(0);
                r.zero = number(v, "zero").value_or(0);
                r.pos = number(v, "pos").value_or(0);
                judge(r, thresholds);
                p.verdict = std::max(p.verdict, r.verdict);
                p.roles.push_back(r);
            }
        }
        std::stable_sort(p.roles.begin(), p.roles.end(), [](const MetricsRole& a, const MetricsRole& b) {
            return role_is_mlp(a.role) != role_is_mlp(b.role) ? role_is_mlp(a.role) : a.role < b.role;
        });
        if (verdict_is_sick(p.verdict) && !t.onset_step) t.onset_step = p.step;
        if (p.verdict == Verdict::Collapsed && !t.collapsed_step) t.collapsed_step = p.step;
        if (p.verdict == Verdict::Healthy && !t.onset_step) t.last_healthy_step = p.step;
        if (p.val_loss && (!t.best_val_loss || *p.val_loss < *t.best_val_loss)) t.best_val_loss = p.val_loss, t.best_val_step = p.step;
        t.points.push_back(std::move(p));
    }
    if (t.points.empty()) throw io::FormatError(file.string(), "no metrics lines");
    t.final_verdict = t.points.back().verdict;
    return t;
}

nlohmann::ordered_json to_json(const MetricsTimeline& t) {
    using oj = nlohmann::ordered_json;
    auto opt = [](const auto& v) { return v ? oj(*v) : oj(nullptr); };
    oj j;
    j["file"] = t.file.string();
    j["onset_step"] = opt(t.onset_step);
    j["collapsed_step"] = opt(t.collapsed_step);
    j["last_healthy_step"] = opt(t.last_healthy_step);
    j["best_val_step"] = opt(t.best_val_step);
    j["best_val_loss"] = opt(t.best_val_loss);
    j["final_verdict"] = verdict_name(t.final_verdict);
    oj points = oj::array();
    for (const auto& p : t.points) {
        oj pj;
        pj["step"] = p.step;
        pj["loss"] = opt(p.loss);
        pj["val_loss"] = opt(p.val_loss);
        pj["verdict"] = verdict_name(p.verdict);
        oj roles = oj::object();
        for (const auto& r : p.roles) {
            oj rj = {{"std", r.std}, {"gamma", r.gamma}, {"neg", r.neg}, {"zero", r.zero}, {"pos", r.pos}, {"verdict", verdict_name(r.verdict)}};
            if (!r.reason.empty()) rj["reason"] = r.reason;
            roles[std::string(role_name(r.role))] = rj;
        }
        pj["roles"] = roles;
        points.push_back(pj);
    }
    j["points"] = points;
    return j;
}

}  // namespace bitfsck::analysis
