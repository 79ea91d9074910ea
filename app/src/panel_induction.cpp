// Induction: runs bitfsck_model's induction probe (model::run_induction) on the checkpoint shown,
// in the background, and draws a layers x heads heat map of IPMR, the induction score or the
// previous-/duplicate-token scores, with every figure of a head on hover and the library's top
// heads beside it. Built without model/, the view says so.
#include <algorithm>
#include <cmath>

#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

namespace {

void draw_metric_help() {
    for (int i = 0; i < kInductionMetricCount; ++i) {
        const auto m = static_cast<InductionMetric>(i);
        ImGui::BulletText("%s", std::string(induction_metric_name(m)).c_str());
        tooltip(explain_induction_metric(m));
    }
}

#ifdef BITFSCK_APP_HAVE_MODEL

// The heat map's ramp over palette::kInductionRamp, t in [0, 1]; t = 1 is exactly the last stop.
palette::Rgb ramp(double t) {
    const auto& stops = palette::kInductionRamp;
    t = std::clamp(t, 0.0, 1.0) * 4.0;
    const int i = std::min(3, static_cast<int>(t));
    const double f = t - i;
    auto mix = [&](std::uint8_t a, std::uint8_t b) { return static_cast<std::uint8_t>(std::lround(a + (b - a) * f)); };
    return {mix(stops[i].r, stops[i + 1].r), mix(stops[i].g, stops[i + 1].g), mix(stops[i].b, stops[i + 1].b)};
}

ImU32 text_on(palette::Rgb c) {
    const double y = 0.299 * c.r + 0.587 * c.g + 0.114 * c.b;
    return y > 140 ? IM_COL32(20, 20, 20, 255) : IM_COL32(235, 235, 235, 255);
}

void draw_params(AppState& s, const CheckpointRef& ref) {
    InductionParams& p = s.induction.params;
    ImGui::AlignTextToFramePadding();
    ImGui::SetNextItemWidth(80.0f);
    if (ImGui::BeginCombo("device", p.device.c_str())) {
        for (const char* d : {"cpu", "cuda"})
            if (ImGui::Selectable(d, p.device == d)) p.device = d;
        ImGui::EndCombo();
    }
    tooltip("Where LibTorch runs the model. cuda needs a LibTorch built with CUDA and a visible GPU; where there is none the "
            "probe fails and the log says why.");
    ImGui::SameLine();
    const std::int64_t one = 1, sixteen = 16;
    ImGui::SetNextItemWidth(110.0f);
    if (ImGui::InputScalar("seq_len", ImGuiDataType_S64, &p.seq_len, &sixteen, &sixteen)) p.seq_len = std::clamp<std::int64_t>(p.seq_len, 2, 8192);
    tooltip("Random tokens per row, repeated twice: each row holds 2 x seq_len tokens (plus BOS when the config names one). "
            "Must fit the model's context.");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(100.0f);
    if (ImGui::InputScalar("batch", ImGuiDataType_S64, &p.batch, &one, &one)) p.batch = std::clamp<std::int64_t>(p.batch, 1, 1024);
    tooltip("Rows of the probe, fed in one forward pass: more rows, steadier figures.");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(110.0f);
    ImGui::InputScalar("seed", ImGuiDataType_U64, &p.seed);
    tooltip("Seed of the random tokens (mt19937_64): the same seed gives the same rows on every platform.");
    ImGui::SameLine();
    ImGui::Checkbox("quantized", &p.quantized);
    tooltip("On: the forward pass as trained, ternary weights (absmean) and int8 activations. Off: the same latent weights "
            "unquantized, to tell the quantizer's damage from the weights'.");
    ImGui::SameLine();
    const bool running = s.induction.job.has_value();
    if (ImGui::Button(running ? "Run again" : "Run probe")) start_induction(s, ref, p);
    tooltip("Runs the probe on the checkpoint shown (for a run: the step picked in the sidebar) in the background; the bar "
            "at the bottom shows its progress and can cancel it.\n\n" +
            explain_induction_probe());
}

void draw_metric_choice(AppState& s) {
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted("show");
    for (int i = 0; i < kInductionMetricCount; ++i) {
        const auto m = static_cast<InductionMetric>(i);
        ImGui::SameLine();
        if (ImGui::RadioButton(std::string(induction_metric_name(m)).c_str(), s.induction.metric == m)) s.induction.metric = m;
        tooltip(explain_induction_metric(m));
    }
    ImGui::SameLine();
    ImGui::Checkbox("scale to the largest value", &s.induction.scale_to_max);
    tooltip("On: the brightest colour is the largest value of the figure over all heads, so weak heads still tell apart. "
            "Off: the colours span 0 to 1, comparable between checkpoints.");
}

void draw_heatmap(AppState& s, const model::InductionReport& r, ImVec2 size) {
    const InductionMetric metric = s.induction.metric;
    const std::string name(induction_metric_name(metric));
    const ColourRange range = colour_range(r, metric, s.induction.scale_to_max);
    ImGui::BeginChild("induction heat map", size, true);
    ImGui::Text("%s per head: %lld layers x %lld heads", name.c_str(), static_cast<long long>(r.layers), static_cast<long long>(r.heads));
    help_marker(explain_induction_metric(metric) + "\n\nRows are layers (0 at the top), columns heads. Colour: " + fmt("%.3g", range.lo) +
                " (dark) to " + fmt("%.3g", range.hi) + " (bright). The cyan frame marks the top head by this figure, the white "
                "one the head picked (click a cell).");
    s.induction.hovered.reset();
    if (r.layers <= 0 || r.heads <= 0 || r.metrics.empty()) {
        ImGui::TextDisabled("The report has no heads.");
        ImGui::EndChild();
        return;
    }
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float label_w = 58.0f, header_h = ImGui::GetTextLineHeightWithSpacing();
    const float legend_h = ImGui::GetTextLineHeightWithSpacing() * 2.0f;
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    HeatGrid g;
    g.layers = r.layers;
    g.heads = r.heads;
    g.x = origin.x + label_w;
    g.y = origin.y + header_h;
    g.cell_w = std::max(4.0f, (avail.x - label_w) / static_cast<float>(r.heads));
    g.cell_h = std::clamp((avail.y - header_h - legend_h) / static_cast<float>(r.layers), 3.0f, 90.0f);

    const std::int64_t head_step = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(36.0f / g.cell_w)));
    for (std::int64_t h = 0; h < r.heads; h += head_step) {
        const std::string t = "h" + std::to_string(h);
        const float tw = ImGui::CalcTextSize(t.c_str()).x;
        dl->AddText(ImVec2(g.x + g.cell_w * h + std::max(0.0f, (g.cell_w - tw) * 0.5f), origin.y), IM_COL32(220, 220, 220, 255), t.c_str());
    }
    const std::int64_t layer_step =
        std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(ImGui::GetFontSize() / g.cell_h)));
    const std::optional<HeadCell> top = top_head(r, metric);
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    const bool hovering = ImGui::IsWindowHovered();
    if (hovering) s.induction.hovered = head_at(g, mouse.x, mouse.y);
    for (std::int64_t l = 0; l < r.layers; ++l) {
        const float y = g.y + g.cell_h * l;
        if (l % layer_step == 0)
            dl->AddText(ImVec2(origin.x, y + std::max(0.0f, (g.cell_h - ImGui::GetFontSize()) * 0.5f)), IM_COL32(200, 200, 200, 255),
                        ("layer " + std::to_string(l)).c_str());
        for (std::int64_t h = 0; h < r.heads; ++h) {
            const model::HeadMetrics* m = head_metrics(r, {l, h});
            const ImVec2 a(g.x + g.cell_w * h, y), b(a.x + g.cell_w - 1.0f, y + g.cell_h - 1.0f);
            if (!m) {
                dl->AddRect(a, b, IM_COL32(80, 80, 80, 255));
                continue;
            }
            const double v = metric_value(*m, metric);
            const palette::Rgb c = ramp(colour_fraction(v, range));
            dl->AddRectFilled(a, b, col32(c));
            const std::string text = std::isnan(v) ? "-" : fmt("%.3f", v);
            const ImVec2 ts = ImGui::CalcTextSize(text.c_str());
            if (ts.x + 6.0f < g.cell_w && ts.y + 2.0f < g.cell_h)
                dl->AddText(ImVec2(a.x + (g.cell_w - ts.x) * 0.5f, a.y + (g.cell_h - ts.y) * 0.5f), text_on(c), text.c_str());
        }
    }
    // Frames over the cells: the head picked (white), the top head (cyan), the hovered one.
    auto frame = [&](const HeadCell& cell, ImU32 colour, float thickness) {
        const ImVec2 a(g.x + g.cell_w * cell.head, g.y + g.cell_h * cell.layer);
        const float inset = thickness * 0.5f;
        dl->AddRect(ImVec2(a.x + inset, a.y + inset), ImVec2(a.x + g.cell_w - 1.0f - inset, a.y + g.cell_h - 1.0f - inset), colour, 0.0f, 0,
                    thickness);
    };
    const float thick = std::clamp(std::min(g.cell_w, g.cell_h) * 0.08f, 1.0f, 4.0f);
    if (s.induction.selected && head_metrics(r, *s.induction.selected)) frame(*s.induction.selected, IM_COL32(255, 255, 255, 255), thick);
    if (top) frame(*top, col32(palette::kInductionTop), thick);
    if (s.induction.hovered) {
        ImGui::BeginTooltip();
        ImGui::PushTextWrapPos(ImGui::GetFontSize() * 36.0f);
        ImGui::TextUnformatted(head_tooltip(r, *s.induction.hovered, metric).c_str());
        ImGui::PopTextWrapPos();
        ImGui::EndTooltip();
        if (ImGui::IsMouseClicked(0)) s.induction.selected = s.induction.hovered;
    }

    // The legend: the ramp from the bottom to the top of the scale.
    const float ly = g.y + g.cell_h * r.layers + 6.0f;
    const float lw = std::min(260.0f, g.cell_w * r.heads);
    const float lh = ImGui::GetFontSize() * 0.7f;
    constexpr int kSteps = 32;
    for (int i = 0; i < kSteps; ++i)
        dl->AddRectFilled(ImVec2(g.x + lw * i / kSteps, ly), ImVec2(g.x + lw * (i + 1) / kSteps + 0.5f, ly + lh),
                          col32(ramp((i + 0.5) / kSteps)));
    dl->AddText(ImVec2(origin.x, ly - 2.0f), IM_COL32(200, 200, 200, 255), fmt("%.3g", range.lo).c_str());
    dl->AddText(ImVec2(g.x + lw + 6.0f, ly - 2.0f), IM_COL32(200, 200, 200, 255),
                (fmt("%.3g", range.hi) + (s.induction.scale_to_max ? "  (largest value)" : "")).c_str());
    ImGui::Dummy(ImVec2(label_w + g.cell_w * r.heads, header_h + g.cell_h * r.layers + legend_h));
    ImGui::EndChild();
}

void draw_side(AppState& s, const model::InductionReport& r, ImVec2 size) {
    ImGui::BeginChild("induction heads", size, true);
    ImGui::TextUnformatted("Top heads");
    help_marker("The library's ranking (as `bitfsck induction` prints it): by IPMR, then by induction score. Click a row to "
                "frame the head in the heat map.");
    const ImGuiTableFlags flags = ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_SizingFixedFit;
    if (ImGui::BeginTable("top heads", 5, flags)) {
        ImGui::TableSetupColumn("head");
        for (const char* c : {"IPMR", "induction", "prev-token", "dup-token"}) ImGui::TableSetupColumn(c);
        ImGui::TableHeadersRow();
        for (const auto& h : r.top) {
            ImGui::TableNextRow();
            ImGui::TableSetColumnIndex(0);
            const HeadCell cell{h.layer, h.head};
            if (ImGui::Selectable(head_label(cell).c_str(), s.induction.selected == cell, ImGuiSelectableFlags_SpanAllColumns))
                s.induction.selected = cell;
            tooltip(head_tooltip(r, cell, s.induction.metric));
            const double v[] = {h.metrics.ipmr, h.metrics.induction, h.metrics.previous_token, h.metrics.duplicate_token};
            for (int i = 0; i < 4; ++i) {
                ImGui::TableSetColumnIndex(i + 1);
                ImGui::TextUnformatted(fmt("%.3f", v[i]).c_str());
            }
        }
        ImGui::EndTable();
    }
    ImGui::Text("Specialist heads (IPMR >= %s): %lld of %lld", fmt("%.3g", r.specialist_threshold).c_str(),
                static_cast<long long>(r.specialists), static_cast<long long>(r.layers * r.heads));
    tooltip("Heads whose IPMR reaches the specialist threshold of the library (model::InductionOptions::specialist_threshold). "
            "A trained model with working induction has a few; a collapsed or untrained one none.");
    ImGui::Separator();
    const std::optional<HeadCell> shown = s.induction.hovered ? s.induction.hovered : s.induction.selected;
    if (shown && head_metrics(r, *shown)) {
        ImGui::TextDisabled(s.induction.hovered ? "Under the pointer" : "Picked");
        ImGui::PushTextWrapPos(0.0f);
        ImGui::TextUnformatted(head_tooltip(r, *shown, s.induction.metric).c_str());
        ImGui::PopTextWrapPos();
    } else {
        ImGui::TextDisabled("Hover or click a cell for its figures.");
    }
    ImGui::EndChild();
}

#endif

}  // namespace

void draw_induction(AppState& s) {
#ifndef BITFSCK_APP_HAVE_MODEL
    (void)s;
    ImGui::TextWrapped("This bitfsck-gui was built without model/ (bitfsck_model and LibTorch), so it cannot run the induction "
                       "probe. Configure with -DBITFSCK_BUILD_MODEL=ON where LibTorch is installed (Debian: libtorch-dev), or "
                       "run `bitfsck induction CHECKPOINT` from a build that has it.");
    ImGui::Spacing();
    ImGui::TextDisabled("What the view would show, per layer and head:");
    draw_metric_help();
#else
    const std::optional<CheckpointRef> ref = current_checkpoint_ref(s);
    if (!ref) {
        ImGui::TextWrapped("Open a checkpoint to probe its attention heads for induction.");
        ImGui::Spacing();
        draw_metric_help();
        return;
    }
    ImGui::Text("Induction heads of %s", checkpoint_label(s, *ref).c_str());
    help_marker(explain_induction_probe());
    draw_params(s, *ref);
    draw_metric_choice(s);

    const bool running = s.induction.job && s.induction.job->checkpoint == *ref;
    if (running)
        ImGui::TextColored(ImVec4(1.0f, 0.80f, 0.30f, 1.0f), "Probe running (%s): progress and Cancel in the bottom strip.",
                           params_label(s.induction.job->params).c_str());
    const InductionResult* result = induction_result_for(s, *ref);
    if (!result) {
        if (!running)
            ImGui::TextWrapped("No probe run on this checkpoint yet: pick the parameters and press Run probe. The model is "
                               "loaded and run by bitfsck_model, as `bitfsck induction` does.");
        return;
    }
    const model::InductionReport& r = result->report;
    if (result->params != s.induction.params)
        ImGui::TextDisabled("Shown: the probe run with %s (the parameters above differ).", params_label(result->params).c_str());
    ImGui::PushTextWrapPos(0.0f);
    ImGui::TextDisabled("%s", report_summary(r).c_str());
    ImGui::PopTextWrapPos();
    tooltip(r.file + (r.config.sources.empty() ? std::string() : "\nconfig from: " + [&] {
        std::string t;
        for (const auto& src : r.config.sources) t += (t.empty() ? "" : ", ") + src;
        return t;
    }()));

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const float side_w = std::clamp(avail.x * 0.36f, 260.0f, 420.0f);
    draw_heatmap(s, r, ImVec2(avail.x - side_w - ImGui::GetStyle().ItemSpacing.x, avail.y));
    ImGui::SameLine();
    draw_side(s, r, ImVec2(0, avail.y));
#endif
}

}  // namespace bitfsck::app
