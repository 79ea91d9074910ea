// Run timeline: std (log scale) and ternary zeros of every layer-role against step, the collapse
// onset and the last healthy checkpoint marked; clicking a step opens that checkpoint.
#include <algorithm>
#include <cmath>
#include <limits>

#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

namespace {

// Series colours by role family: MLP warm, attention cool, so the two stories separate.
ImU32 series_colour(const std::string& label, std::size_t index) {
    static const palette::Rgb mlp[] = {{255, 140, 60}, {255, 190, 80}, {230, 100, 120}};
    static const palette::Rgb attn[] = {{90, 170, 255}, {120, 220, 230}, {160, 140, 255}, {100, 210, 160}};
    const bool is_mlp = label.find("mlp") != std::string::npos;
    const palette::Rgb c = is_mlp ? mlp[index % 3] : attn[index % 4];
    return col32(c, 200);
}

struct Plot {
    ImVec2 p0, p1;
    double x0, x1, y0, y1;
    bool log_y;
    float x(double v) const { return p0.x + static_cast<float>((v - x0) / (x1 - x0 == 0 ? 1 : x1 - x0)) * (p1.x - p0.x); }
    float y(double v) const {
        if (log_y) v = std::log10(std::max(v, 1e-30));
        return p1.y - static_cast<float>((v - y0) / (y1 - y0 == 0 ? 1 : y1 - y0)) * (p1.y - p0.y);
    }
};

// Returns the index of the step the user clicked, if any.
std::optional<std::size_t> draw_plot(AppState& s, const char* id, const analysis::Timeline& t, const std::vector<std::string>& labels,
                                     SeriesFigure figure, bool log_y, const std::vector<std::pair<double, std::string>>& thresholds,
                                     const std::string& help, std::size_t current, ImVec2 size) {
    std::vector<double> steps;
    for (const auto& p : t.points) steps.push_back(static_cast<double>(p.step));
    std::vector<std::vector<double>> series;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& l : labels) {
        series.push_back(timeline_series(t, l, figure));
        for (double v : series.back()) {
            if (!std::isfinite(v) || (log_y && v <= 0)) continue;
            const double y = log_y ? std::log10(v) : v;
            lo = std::min(lo, y);
            hi = std::max(hi, y);
        }
    }
    for (const auto& th : thresholds) {
        const double y = log_y ? std::log10(th.first) : th.first;
        lo = std::min(lo, y);
        hi = std::max(hi, y);
    }
    if (!(hi > lo)) {
        lo = log_y ? lo - 1 : 0;
        hi = log_y ? hi + 1 : 1;
    }
    if (!log_y) lo = std::min(lo, 0.0), hi = std::max(hi, 1.0);  // fractions: always the whole 0..1
    const double pad = (hi - lo) * 0.05;

    ImGui::TextUnformatted(id);
    help_marker(help);
    const float left = 58.0f, bottom = ImGui::GetTextLineHeight() + 4.0f;
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    ImGui::InvisibleButton(id, size);
    const bool hovered = ImGui::IsItemHovered();
    const bool clicked = ImGui::IsItemClicked(0);
    Plot pl{ImVec2(origin.x + left, origin.y + 4), ImVec2(origin.x + size.x - 8, origin.y + size.y - bottom), steps.front(),
            steps.back(), lo - pad, hi + pad, log_y};
    if (steps.size() == 1) pl.x0 -= 1, pl.x1 += 1;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    dl->AddRectFilled(pl.p0, pl.p1, IM_COL32(22, 24, 30, 255));
    dl->AddRect(pl.p0, pl.p1, IM_COL32(90, 90, 100, 255));
    // Grid lines: whole decades on the log axis (steps of several decades when the range is
    // wide), quarters on the fraction axis.
    std::vector<double> ticks;
    if (log_y) {
        const int first = static_cast<int>(std::ceil(lo)), last = static_cast<int>(std::floor(hi));
        const int stride = std::max(1, (last - first) / 6 + 1);
        for (int e = first; e <= last; e += stride) ticks.push_back(e);
        if (ticks.empty()) ticks = {lo, hi};
    } else {
        ticks = {0.0, 0.25, 0.5, 0.75, 1.0};
    }
    for (double yv : ticks) {
        const float py = pl.p1.y - static_cast<float>((yv - pl.y0) / (pl.y1 - pl.y0)) * (pl.p1.y - pl.p0.y);
        const std::string text = log_y ? (yv == std::floor(yv) ? "1e" + fmt("%.0f", yv) : fmt("%.2g", std::pow(10.0, yv))) : percent(yv, 0);
        dl->AddLine(ImVec2(pl.p0.x, py), ImVec2(pl.p1.x, py), IM_COL32(50, 52, 60, 255));
        dl->AddText(ImVec2(origin.x, py - ImGui::GetFontSize() * 0.5f), IM_COL32(180, 180, 180, 255), text.c_str());
    }
    for (const auto& th : thresholds) {
        const float py = pl.y(th.first);
        dl->AddLine(ImVec2(pl.p0.x, py), ImVec2(pl.p1.x, py), IM_COL32(200, 200, 200, 120), 1.0f);
        dl->AddText(ImVec2(pl.p0.x + 4, py - ImGui::GetFontSize()), IM_COL32(200, 200, 200, 170), th.second.c_str());
    }
    // Markers under the lines: the onset in red, the last healthy checkpoint in green.
    for (const auto& m : s.markers) {
        const palette::Rgb c = m.kind == TimelineMarker::Kind::LastHealthy ? palette::kLastHealthy : palette::kOnset;
        const float px = pl.x(static_cast<double>(m.step));
        dl->AddLine(ImVec2(px, pl.p0.y), ImVec2(px, pl.p1.y), col32(c), m.kind == TimelineMarker::Kind::Collapsed ? 1.5f : 3.0f);
        dl->AddText(ImVec2(px + 3, pl.p0.y + 2), col32(c), m.label.c_str());
    }
    // The checkpoint the other views show.
    const float cx = pl.x(steps[std::min(current, steps.size() - 1)]);
    dl->AddLine(ImVec2(cx, pl.p0.y), ImVec2(cx, pl.p1.y), IM_COL32(255, 255, 255, 70), 7.0f);
    dl->PushClipRect(pl.p0, pl.p1, true);
    for (std::size_t k = 0; k < series.size(); ++k) {
        const ImU32 col = series_colour(labels[k], k);
        const bool focus = k == s.timeline_role;
        std::optional<ImVec2> prev;
        for (std::size_t i = 0; i < steps.size(); ++i) {
            const double v = series[k][i];
            if (!std::isfinite(v)) {
                prev.reset();
                continue;
            }
            const ImVec2 pt(pl.x(steps[i]), pl.y(v));
            if (prev) dl->AddLine(*prev, pt, focus ? IM_COL32(255, 255, 255, 255) : col, focus ? 3.0f : 1.5f);
            dl->AddCircleFilled(pt, focus ? 3.5f : 2.5f, focus ? IM_COL32(255, 255, 255, 255) : col);
            prev = pt;
        }
    }
    dl->PopClipRect();
    for (std::size_t i = 0; i < steps.size(); ++i) {
        const std::string st = std::to_string(t.points[i].step);
        const float w = ImGui::CalcTextSize(st.c_str()).x;
        if (i == 0 || i + 1 == steps.size() || steps.size() <= 12)
            dl->AddText(ImVec2(std::clamp(pl.x(steps[i]) - w * 0.5f, pl.p0.x, pl.p1.x - w), pl.p1.y + 2), IM_COL32(180, 180, 180, 255), st.c_str());
    }
    // The step nearest to the mouse: hover shows its figures, a click opens it.
    std::optional<std::size_t> near;
    if (hovered) {
        const float mx = ImGui::GetIO().MousePos.x;
        float best = std::numeric_limits<float>::max();
        for (std::size_t i = 0; i < steps.size(); ++i)
            if (std::fabs(pl.x(steps[i]) - mx) < best) best = std::fabs(pl.x(steps[i]) - mx), near = i;
    }
    if (near) {
        const auto& p = t.points[*near];
        std::string text = "step " + std::to_string(p.step) + ": " + std::string(analysis::verdict_name(p.verdict)) + "\n" + p.file;
        if (s.timeline_role < labels.size()) {
            const double v = series[s.timeline_role][*near];
            text += "\n" + labels[s.timeline_role] + ": " + (log_y ? fmt("%.3g", v) : percent(v));
        }
        text += "\nClick to open this checkpoint in the layers view.";
        ImGui::SetTooltip("%s", text.c_str());
    }
    return clicked ? near : std::nullopt;
}

}  // namespace

void draw_timeline(AppState& s) {
    const Document* d = selected_document(s);
    if (!d || !d->timeline) {
        ImGui::TextWrapped("Open a run folder (a folder of a training run's checkpoints, e.g. step_*.pt) to see how each "
                           "layer-role evolved, when collapse began and which checkpoint is the last healthy one.");
        return;
    }
    const analysis::Timeline& t = *d->timeline;
    const analysis::Thresholds& th = t.thresholds;
    const std::vector<std::string> labels = timeline_labels(t);
    std::string head = "RUN " + std::string(analysis::verdict_name(t.final_verdict));
    if (t.onset_step) head += "  -  collapse onset at step " + std::to_string(*t.onset_step) + " (" + t.onset_file + ")";
    else head += "  -  no collapse onset: every checkpoint is healthy";
    banner(verdict_row_colour(t.final_verdict), head);
    tooltip("Onset: the first step whose verdict is not healthy, judging each checkpoint alone and against the first one "
            "(a gamma that fell below " + fmt("%g", th.collapsed_role_ratio) + " x its first value).\n" + explain_verdict(th));
    if (t.last_healthy_step) ImGui::TextColored(colvec(palette::kLastHealthy), "last healthy checkpoint: step %lld  %s",
                                                static_cast<long long>(*t.last_healthy_step), t.last_healthy_file.c_str());
    else if (t.onset_step) ImGui::TextColored(colvec(palette::kOnset), "no healthy checkpoint before the onset");
    tooltip("The last healthy checkpoint before the onset: the one to resume training from.");

    ImGui::BeginChild("series", ImVec2(190.0f, 0), true);
    ImGui::TextDisabled("layer-roles");
    help_marker("Hover or click a series to highlight it in both plots.");
    for (std::size_t k = 0; k < labels.size(); ++k) {
        ImGui::PushStyleColor(ImGuiCol_Text, ImGui::ColorConvertU32ToFloat4(series_colour(labels[k], k) | IM_COL32_A_MASK));
        if (ImGui::Selectable(labels[k].c_str(), s.timeline_role == k)) s.timeline_role = k;
        if (ImGui::IsItemHovered()) s.timeline_role = k;
        ImGui::PopStyleColor();
    }
    ImGui::EndChild();
    ImGui::SameLine();
    ImGui::BeginGroup();
    const float w = ImGui::GetContentRegionAvail().x;
    const float h = (ImGui::GetContentRegionAvail().y - ImGui::GetTextLineHeightWithSpacing() * 2 - 8) * 0.5f;
    auto clicked = draw_plot(s, "std per layer-role (log scale)", t, labels, SeriesFigure::Std, true,
                             {{th.collapsed_std, "collapsed_std " + fmt("%g", th.collapsed_std)}}, explain_std(th), d->current,
                             ImVec2(w, h));
    auto clicked2 = draw_plot(s, "ternary zeros per layer-role", t, labels, SeriesFigure::TernaryZero, false,
                              {{th.collapsed_zero_frac, "collapsed " + percent(th.collapsed_zero_frac, 0)},
                               {th.degraded_zero_frac, "degraded " + percent(th.degraded_zero_frac, 0)}},
                              explain_ternary_zero(th), d->current, ImVec2(w, h));
    ImGui::EndGroup();
    if (!clicked) clicked = clicked2;
    if (clicked && select_checkpoint(s, *clicked)) s.view = View::Layers;
}

}  // namespace bitfsck::app
