#include "bitfsck/app/repair_view.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <system_error>

#include "bitfsck/analysis/layers.hpp"

namespace bitfsck::app {

namespace fs = std::filesystem;

namespace {

std::string g3(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}

const analysis::TensorStats* find_stats(const analysis::ScanReport& scan, const std::string& name) {
    for (const auto& t : scan.tensors)
        if (t.name == name) return &t;
    return nullptr;
}

bool is_matrix(const analysis::TensorStats* t) { return t && t->shape.size() >= 2; }

}  // namespace

std::string repair_params_label(const RepairParams& p) {
    std::string s(repair::step_name(p.step));
    switch (p.step) {
        case repair::StepKind::Svd:
            s += " " + std::string(repair::rank_rule_name(p.rule));
            if (p.rule == repair::RankRule::Fixed) s += " " + std::to_string(p.rank);
            if (p.rule == repair::RankRule::Energy) s += " " + g3(p.energy);
            break;
        case repair::StepKind::Align: s += " strength " + g3(p.strength) + " width " + g3(p.width); break;
        case repair::StepKind::Inflate: s += " zeros " + g3(p.zeros) + " tau " + g3(p.tau); break;
        case repair::StepKind::Pick: break;
    }
    if (p.step != repair::StepKind::Svd && !p.like.empty()) s += " like " + fs::path(p.like).filename().string();
    return s;
}

std::string explain_repair_step(repair::StepKind k) {
    switch (k) {
        case repair::StepKind::Svd:
            return "SVD denoising: each selected matrix becomes its rank-k reconstruction U_k S_k V_k^T, computed in float64 and "
                   "rounded once to the tensor's dtype. Rank rules: a fixed rank; energy (smallest k whose share of sum(sigma^2) "
                   "reaches E); Gavish-Donoho (the default: tau = omega(beta) median(sigma)); Marchenko-Pastur (noise from the "
                   "median singular value, threshold at the bulk edge). A rule that keeps nothing keeps one triplet.";
        case repair::StepKind::Align:
            return "Wasserstein alignment: moves each tensor's weights towards three Gaussians of width `width` x S at -S, 0, +S "
                   "by the exact 1-D optimal transport map (the order of weights is kept). Masses: those of the same tensor in "
                   "the --like checkpoint, else a healthy Gaussian layer's (p0 ~ 31.0%). strength t moves each weight part of "
                   "the way: w <- (1 - t) w + t T(w). S is solved so that the quantizer gives the target zero mass.";
        case repair::StepKind::Inflate:
            return "Pushes weights out of the quantizer's dead zone |w| < tau x g (tau 0.5: exactly the weights that round to 0) "
                   "to +-target until the ternary zero fraction is at most `zeros`; the dead-zone weights closest to the "
                   "threshold move first, weights outside it are never touched. Target: the --like checkpoint's absmean, else "
                   "the healthy same-role layers' median absmean, else the tensor's own scale.";
        case repair::StepKind::Pick: return "Time travel: copies a run's last healthy checkpoint (a run folder, not one checkpoint).";
    }
    return {};
}

repair::RepairOptions repair_options(const RepairParams& p, const analysis::ScanReport& scan, const std::string& only_tensor) {
    repair::RepairOptions o;
    o.step.kind = p.step;
    o.step.svd.rule = p.rule;
    o.step.svd.rank = p.rank;
    o.step.svd.energy = p.energy;
    o.step.align.strength = p.strength;
    o.step.align.width = p.width;
    o.step.inflate.zeros = p.zeros;
    o.step.inflate.tau = p.tau;
    if (p.step != repair::StepKind::Svd && !p.like.empty()) o.like = fs::path(p.like);
    if (!only_tensor.empty()) o.selection.match = {only_tensor};
    o.quantizer = scan.quantizer;
    o.thresholds = scan.thresholds;
    return o;
}

std::optional<std::string> default_repair_tensor(const analysis::ScanReport& scan, const std::optional<std::string>& selected) {
    if (selected && is_matrix(find_stats(scan, *selected))) return selected;
    for (const analysis::Verdict v : {analysis::Verdict::Collapsed, analysis::Verdict::Degraded})
        for (const auto& l : scan.layers) {
            if (l.verdict != v || !analysis::role_is_ternary_matrix(l.role)) continue;
            for (const auto& name : l.tensors)
                if (is_matrix(find_stats(scan, name))) return name;
        }
    for (const auto& t : scan.tensors)
        if (is_matrix(&t)) return t.name;
    return std::nullopt;
}

bool folder_writable(const fs::path& folder) {
    std::error_code ec;
    const fs::path f = folder.empty() ? fs::path(".") : folder;
    return fs::is_directory(f, ec) && ::access(f.c_str(), W_OK | X_OK) == 0;
}

fs::path repair_output_path(const fs::path& input, repair::StepKind step, bool writable, const fs::path& fallback) {
    const fs::path folder = writable ? (input.parent_path().empty() ? fs::path(".") : input.parent_path()) : fallback;
    std::string ext = input.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    ext = ext == ".safetensors" ? ".safetensors" : ".pt";
    const std::string base = input.stem().string() + "." + std::string(repair::step_name(step));
    std::error_code ec;
    for (int i = 1;; ++i) {
        const fs::path out = folder / (base + (i > 1 ? "." + std::to_string(i) : std::string()) + ext);
        if (!fs::exists(out, ec) && !fs::equivalent(out, input, ec)) return out;
    }
}

fs::path repair_output_path(const fs::path& input, repair::StepKind step) {
    std::error_code ec;
    fs::path tmp = fs::temp_directory_path(ec);
    if (ec) tmp = "/tmp";
    return repair_output_path(input, step, folder_writable(input.parent_path()), tmp);
}

std::string verdict_change(const repair::RepairLog& log) {
    return std::string(analysis::verdict_name(log.verdict_before)) + " -> " + std::string(analysis::verdict_name(log.verdict_after));
}

}  // namespace bitfsck::app
