// Layers: the layer-role table (sortable, rows tinted by verdict) and two layers x roles heat
// maps, std on a log scale and ternary zeros, so a dead band of layers shows at a glance.
#include <algorithm>
#include <cmath>

#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

namespace {

using analysis::LayerRoleStats;

// A perceptual dark-blue -> teal -> yellow ramp (viridis-like), t in [0, 1]: dead cells end up
// dark, healthy ones bright, which reads at a glance without a legend.
ImU32 ramp(double t) {
    static const palette::Rgb stops[] = {{20, 18, 60}, {50, 80, 150}, {35, 150, 140}, {120, 200, 90}, {250, 230, 60}};
    t = std::clamp(t, 0.0, 1.0) * 4.0;
    const int i = std::min(3, static_cast<int>(t));
    const double f = t - i;
    auto mix = [&](std::uint8_t a, std::uint8_t b) { return static_cast<int>(a + (b - a) * f); };
    return IM_COL32(mix(stops[i].r, stops[i + 1].r), mix(stops[i].g, stops[i + 1].g), mix(stops[i].b, stops[i + 1].b), 255);
}

std::string layer_text(const LayerRoleStats& l) { return l.layer ? std::to_string(*l.layer) : "-"; }

std::string layer_tooltip(const LayerRoleStats& l, const std::vector<analysis::Finding>& findings) {
    std::string t = analysis::layer_role_label(l.layer, l.role) + ": " + std::string(analysis::verdict_name(l.verdict));
    auto about = findings_about(findings, l);
    if (about.empty()) t += "\nNo rule fired.";
    for (const auto* f : about) t += "\n- " + f->message;
    t += "\nTensors:";
    for (const auto& n : l.tensors) t += "\n  " + n;
    return t;
}

void draw_table(AppState& s, const std::vector<LayerRoleStats>& layers, const std::vector<analysis::Finding>& findings,
                const analysis::Thresholds& th, float height) {
    const ImGuiTableFlags flags = ImGuiTableFlags_Sortable | ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV |
                                  ImGuiTableFlags_ScrollY | ImGuiTableFlags_Resizable | ImGuiTableFlags_SizingFixedFit;
    if (!ImGui::BeginTable("layers", kLayerColumnCount, flags, ImVec2(0, height))) return;
    ImGui::TableSetupScrollFreeze(0, 1);
    for (int c = 0; c < kLayerColumnCount; ++c) {
        ImGuiTableColumnFlags cf = c == 0 ? ImGuiTableColumnFlags_DefaultSort : ImGuiTableColumnFlags_None;
        if (c == static_cast<int>(LayerColumn::Verdict)) cf |= ImGuiTableColumnFlags_WidthStretch;
        ImGui::TableSetupColumn(std::string(layer_column_name(static_cast<LayerColumn>(c))).c_str(), cf, 0.0f, static_cast<ImGuiID>(c));
    }
    ImGui::TableHeadersRow();
    if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs(); specs && specs->SpecsDirty) {
        if (specs->SpecsCount > 0)
            sort_layers(s, static_cast<LayerColumn>(specs->Specs[0].ColumnUserID),
                        specs->Specs[0].SortDirection != ImGuiSortDirection_Descending);
        specs->SpecsDirty = false;
    }
    const std::string std_help = explain_std(th), zero_help = explain_ternary_zero(th), exact_help = explain_exact_zero(),
                      dead_help = explain_dead_rows(th);
    for (std::size_t i : layer_order(layers, s.layer_sort)) {
        const LayerRoleStats& l = layers[i];
        ImGui::TableNextRow();
        ImGui::TableSetBgColor(ImGuiTableBgTarget_RowBg0, col32(verdict_row_colour(l.verdict)));
        ImGui::TableSetColumnIndex(0);
        ImGui::PushID(static_cast<int>(i));
        if (ImGui::Selectable(layer_text(l).c_str(), s.selected_layer == i,
                              ImGuiSelectableFlags_SpanAllColumns | ImGuiSelectableFlags_AllowDoubleClick)) {
            select_layer(s, i);
            if (ImGui::IsMouseDoubleClicked(0)) s.view = View::Tensor;
        }
        ImGui::PopID();
        tooltip(layer_tooltip(l, findings) + "\nClick selects its first tensor; double-click opens the tensor view.");
        auto cell = [&](int column, const std::string& text, const std::string& help) {
            ImGui::TableSetColumnIndex(column);
            ImGui::TextUnformatted(text.c_str());
            tooltip(help);
        };
        cell(1, std::string(analysis::role_name(l.role)), "Role, from the tensor names: what this projection does in the block.");
        cell(2, fmt("%.3g", l.std), std_help + "\nThis row: std " + fmt("%.3g", l.std) + ", absmean gamma " + fmt("%.3g", l.absmean));
        cell(3, fmt("%.1f", 100 * l.zero_frac), exact_help);
        cell(4, fmt("%.1f", 100 * l.neg), "Share of weights quantized to -1 (w <= -gamma'/2).");
        cell(5, fmt("%.1f", 100 * l.zero), zero_help);
        cell(6, fmt("%.1f", 100 * l.pos), "Share of weights quantized to +1 (w >= gamma'/2).");
        cell(7, std::to_string(l.dead_rows) + "/" + std::to_string(l.rows), dead_help);
        ImGui::TableSetColumnIndex(8);
        ImGui::TextColored(verdict_text_colour(l.verdict), "%s", std::string(analysis::verdict_name(l.verdict)).c_str());
        tooltip(layer_tooltip(l, findings) + "\n\n" + explain_verdict(th));
    }
    ImGui::EndTable();
}

// One heat map: rows are layers (top to bottom), columns roles; value(l) in [0, 1] picks the
// colour, a red or amber frame marks the cell's verdict.
template <class ValueFn, class TextFn>
void draw_heatmap(const char* id, const std::vector<LayerRoleStats>& layers, ValueFn value, TextFn text, const std::string& help,
                  const std::vector<analysis::Finding>& findings, ImVec2 size) {
    std::vector<int> layer_ids;
    std::vector<analysis::Role> roles;
    for (const auto& l : layers) {
        if (!l.layer) continue;  // embedding / head have no place in a per-layer band
        if (std::find(layer_ids.begin(), layer_ids.end(), *l.layer) == layer_ids.end()) layer_ids.push_back(*l.layer);
        if (std::find(roles.begin(), roles.end(), l.role) == roles.end()) roles.push_back(l.role);
    }
    std::sort(layer_ids.begin(), layer_ids.end());
    std::sort(roles.begin(), roles.end());
    ImGui::BeginChild(id, size, true);
    ImGui::TextUnformatted(id);
    help_marker(help);
    if (layer_ids.empty()) {
        ImGui::TextDisabled("No numbered layers.");
        ImGui::EndChild();
        return;
    }
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float label_w = 34.0f, header_h = ImGui::GetTextLineHeightWithSpacing();
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const float cell_w = std::max(8.0f, (avail.x - label_w) / static_cast<float>(roles.size()));
    const float cell_h = std::clamp((avail.y - header_h - 4.0f) / static_cast<float>(layer_ids.size()), 3.0f, 28.0f);
    for (std::size_t c = 0; c < roles.size(); ++c) {
        const std::string name(analysis::role_name(roles[c]));
        const ImVec2 tsize = ImGui::CalcTextSize(name.c_str());
        const float x = origin.x + label_w + cell_w * c + std::max(0.0f, (cell_w - tsize.x) * 0.5f);
        dl->PushClipRect(ImVec2(origin.x + label_w + cell_w * c, origin.y), ImVec2(origin.x + label_w + cell_w * (c + 1), origin.y + header_h), true);
        dl->AddText(ImVec2(x, origin.y), IM_COL32(220, 220, 220, 255), name.c_str());
        dl->PopClipRect();
    }
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    for (std::size_t r = 0; r < layer_ids.size(); ++r) {
        const float y = origin.y + header_h + cell_h * r;
        if (cell_h >= ImGui::GetFontSize() || r % std::max<std::size_t>(1, layer_ids.size() / 8) == 0)
            dl->AddText(ImVec2(origin.x, y + std::max(0.0f, (cell_h - ImGui::GetFontSize()) * 0.5f)), IM_COL32(200, 200, 200, 255),
                        std::to_string(layer_ids[r]).c_str());
        for (std::size_t c = 0; c < roles.size(); ++c) {
            auto it = std::find_if(layers.begin(), layers.end(), [&](const LayerRoleStats& l) { return l.layer == layer_ids[r] && l.role == roles[c]; });
            const ImVec2 a(origin.x + label_w + cell_w * c, y), b(a.x + cell_w - 1.0f, y + cell_h - 1.0f);
            if (it == layers.end()) {
                dl->AddRect(a, b, IM_COL32(80, 80, 80, 255));
                continue;
            }
            dl->AddRectFilled(a, b, ramp(value(*it)));
            if (it->verdict != analysis::Verdict::Healthy)
                dl->AddRect(a, b, it->verdict == analysis::Verdict::Collapsed ? IM_COL32(255, 60, 60, 255) : IM_COL32(255, 200, 60, 255), 0.0f, 0,
                            std::min(2.0f, cell_h * 0.25f));
            if (ImGui::IsWindowHovered() && mouse.x >= a.x && mouse.x < b.x && mouse.y >= a.y && mouse.y < b.y) {
                ImGui::BeginTooltip();
                ImGui::PushTextWrapPos(ImGui::GetFontSize() * 36.0f);
                ImGui::TextUnformatted((text(*it) + "\n" + layer_tooltip(*it, findings)).c_str());
                ImGui::PopTextWrapPos();
                ImGui::EndTooltip();
            }
        }
    }
    ImGui::Dummy(ImVec2(label_w + cell_w * roles.size(), header_h + cell_h * layer_ids.size()));
    ImGui::EndChild();
}

}  // namespace

void draw_layers(AppState& s) {
    const Document* d = selected_document(s);
    const CheckpointData* c = current_checkpoint(s);
    const auto* layers = current_layers(s);
    if (!d || !c || !layers) {
        ImGui::TextWrapped("Open a checkpoint to see its layers.");
        return;
    }
    const analysis::Thresholds& th = c->report.thresholds;
    const std::vector<analysis::Finding>& findings =
        d->timeline && d->current < d->timeline->points.size() ? d->timeline->points[d->current].findings : c->report.findings;
    ImGui::Text("%s%s: %zu layer-roles", c->path.filename().string().c_str(),
                c->report.step ? (", step " + std::to_string(*c->report.step)).c_str() : "", layers->size());
    help_marker("One row per (layer, role): the ternary-matrix weights of that projection, figures weighted by element count. "
                "Rows are tinted by verdict: red collapsed, amber degraded, green healthy. Click a header to sort.");
    if (layers->empty()) {
        ImGui::TextWrapped("No ternary-matrix projections (q/k/v/o, gate/up/down) of at least %llu elements were found.",
                           static_cast<unsigned long long>(th.min_elements));
        return;
    }
    const float avail = ImGui::GetContentRegionAvail().y;
    draw_table(s, *layers, findings, th, std::max(120.0f, avail * 0.52f));

    // std spans orders of magnitude; the log scale runs from a decade under the collapse
    // threshold up to the largest std, so everything under the threshold is the darkest band.
    double hi = std::log10(th.collapsed_std) + 1;
    for (const auto& l : *layers)
        if (l.std > 0) hi = std::max(hi, std::log10(l.std));
    const double lo = std::log10(th.collapsed_std) - 1;
    const ImVec2 size((ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemSpacing.x) * 0.5f, ImGui::GetContentRegionAvail().y);
    draw_heatmap(
        "std (log10)", *layers,
        [&](const LayerRoleStats& l) { return l.std > 0 ? (std::log10(l.std) - lo) / (hi - lo) : 0.0; },
        [](const LayerRoleStats& l) { return "std " + fmt("%.3g", l.std); },
        explain_std(th) + "\nColour: log10(std) from " + fmt("%.0f", lo) + " (dark) to " + fmt("%.1f", hi) +
            " (bright). Frames: red collapsed, amber degraded.",
        findings, size);
    ImGui::SameLine();
    draw_heatmap(
        "ternary zeros", *layers, [](const LayerRoleStats& l) { return 1.0 - l.zero; },
        [](const LayerRoleStats& l) { return "ternary zeros " + percent(l.zero); },
        explain_ternary_zero(th) + "\nColour: bright = few zeros, dark = all zeros. Frames: red collapsed, amber degraded.", findings,
        size);
}

}  // namespace bitfsck::app
