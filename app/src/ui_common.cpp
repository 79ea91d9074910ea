// Drawing helpers shared by the panels, and the texts that explain each figure and verdict rule
// with the thresholds actually used (the report's, which the user may have changed).
#include <cstdio>

#include "bitfsck/app/ui.hpp"
#include "bitfsck/io/text.hpp"

namespace bitfsck::app {

ImU32 col32(palette::Rgb c, int alpha) { return IM_COL32(c.r, c.g, c.b, alpha); }

ImVec4 colvec(palette::Rgb c) { return ImVec4(c.r / 255.0f, c.g / 255.0f, c.b / 255.0f, 1.0f); }

palette::Rgb verdict_row_colour(analysis::Verdict v) {
    switch (v) {
        case analysis::Verdict::Collapsed: return palette::kCollapsedRow;
        case analysis::Verdict::Degraded:
        case analysis::Verdict::Unknown: return palette::kDegradedRow;
        case analysis::Verdict::Healthy: return palette::kHealthyRow;
    }
    return palette::kHealthyRow;
}

ImVec4 verdict_text_colour(analysis::Verdict v) {
    switch (v) {
        case analysis::Verdict::Collapsed: return ImVec4(1.0f, 0.42f, 0.42f, 1.0f);
        case analysis::Verdict::Degraded: return ImVec4(1.0f, 0.80f, 0.30f, 1.0f);
        case analysis::Verdict::Unknown: return ImVec4(0.75f, 0.75f, 0.75f, 1.0f);
        case analysis::Verdict::Healthy: return ImVec4(0.45f, 0.90f, 0.55f, 1.0f);
    }
    return ImVec4(1, 1, 1, 1);
}

std::string percent(double fraction, int decimals) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f%%", decimals, 100.0 * fraction);
    return buf;
}

void tooltip(const std::string& text) {
    if (!ImGui::IsItemHovered()) return;
    ImGui::BeginTooltip();
    ImGui::PushTextWrapPos(ImGui::GetFontSize() * 36.0f);
    ImGui::TextUnformatted(text.c_str());
    ImGui::PopTextWrapPos();
    ImGui::EndTooltip();
}

void help_marker(const std::string& text) {
    ImGui::SameLine();
    ImGui::TextDisabled("(?)");
    tooltip(text);
}

std::string explain_std(const analysis::Thresholds& t) {
    return "Standard deviation of the latent (full-precision) weights, element-weighted over the tensors of this "
           "layer-role. Healthy MLP and attention projections of small models sit around 0.01-0.05.\n"
           "Collapsed when std or absmean gamma < " + fmt("%g", t.collapsed_std) + " (collapsed_std), or when std < " +
           fmt("%g", t.collapsed_role_ratio) + " x the median std of the same role in the other layers (collapsed_role_ratio); "
           "degraded below " + fmt("%g", t.degraded_role_ratio) + " x that median (degraded_role_ratio).";
}

std::string explain_ternary_zero(const analysis::Thresholds& t) {
    return "Share of weights the absmean quantizer maps to 0: |w| < gamma'/2, gamma' = mean|W| (with the quantizer's floor). "
           "Gaussian weights give about 31%, Laplace about 39%.\nCollapsed above " + percent(t.collapsed_zero_frac, 0) +
           " (collapsed_zero_frac), degraded above " + percent(t.degraded_zero_frac, 0) + " (degraded_zero_frac).";
}

std::string explain_exact_zero() {
    return "Share of weights that are exactly 0.0 in the file (not after quantization). A tensor that is all exact zeros is "
           "collapsed (rule all_zero): e.g. a layer zeroed by a broken conversion.";
}

std::string explain_dead_rows(const analysis::Thresholds& t) {
    return "Output rows (neurons) whose ternary codes are all 0: they always output 0. Degraded at >= " +
           percent(t.dead_rows_degraded, 0) + " of the rows (dead_rows_degraded), collapsed at >= " +
           percent(t.dead_rows_collapsed, 0) + " (dead_rows_collapsed).";
}

std::string explain_verdict(const analysis::Thresholds& t) {
    return "The worst finding about this tensor or layer-role. Rules: all_zero; std_below (std or gamma < " +
           fmt("%g", t.collapsed_std) + "); zeros_above (ternary zeros > " + percent(t.degraded_zero_frac, 0) + " degraded, > " +
           percent(t.collapsed_zero_frac, 0) + " collapsed); role_outlier (std < " + fmt("%g", t.degraded_role_ratio) + " / " +
           fmt("%g", t.collapsed_role_ratio) + " x the role's median over other layers); dead_rows (>= " +
           percent(t.dead_rows_degraded, 0) + " / " + percent(t.dead_rows_collapsed, 0) +
           " dead output rows); non_finite (NaN or Inf). Tensors under " + std::to_string(t.min_elements) +
           " elements are not judged. In a run, a gamma that fell below " + fmt("%g", t.collapsed_role_ratio) +
           " x its value at the first checkpoint is degraded too.";
}

void banner(palette::Rgb colour, const std::string& text) {
    const ImVec2 p = ImGui::GetCursorScreenPos();
    const float w = ImGui::GetContentRegionAvail().x;
    const float pad = ImGui::GetStyle().FramePadding.y + 2.0f;
    const float wrap = w - 2 * ImGui::GetStyle().FramePadding.x;
    const ImVec2 size = ImGui::CalcTextSize(text.c_str(), nullptr, false, wrap);
    const float h = size.y + 2 * pad;
    ImGui::GetWindowDrawList()->AddRectFilled(p, ImVec2(p.x + w, p.y + h), col32(colour), 3.0f);
    ImGui::SetCursorScreenPos(ImVec2(p.x + ImGui::GetStyle().FramePadding.x, p.y + pad));
    ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + wrap);
    ImGui::TextUnformatted(text.c_str());
    ImGui::PopTextWrapPos();
    ImGui::SetCursorScreenPos(ImVec2(p.x, p.y + h));
    ImGui::Dummy(ImVec2(w, ImGui::GetStyle().ItemSpacing.y * 0.5f));
}

bool checkpoint_combo(const char* label, AppState& s, std::optional<CheckpointRef>& ref) {
    bool changed = false;
    const std::string preview = ref ? checkpoint_label(s, *ref) : std::string("(pick a checkpoint)");
    if (ImGui::BeginCombo(label, preview.c_str())) {
        for (const CheckpointRef& r : all_checkpoints(s)) {
            const bool selected = ref && *ref == r;
            const std::string item = checkpoint_label(s, r) + "##" + std::to_string(r.document) + "_" + std::to_string(r.checkpoint);
            if (ImGui::Selectable(item.c_str(), selected)) {
                ref = r;
                changed = true;
            }
        }
        ImGui::EndCombo();
    }
    return changed;
}

}  // namespace bitfsck::app
