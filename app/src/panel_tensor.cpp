// Tensor: one tensor's value histogram (or log10|w| histogram) with the quantizer's rounding
// threshold +-gamma'/2 drawn on it, the ternary -1/0/+1 bar and dead rows/columns; two tensors
// side by side, so a dead layer is seen next to a healthy one.
#include <algorithm>
#include <cmath>

#include "bitfsck/analysis/report_json.hpp"  // verdict_of_subject
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

void draw_histogram(const HistogramView& v, palette::Rgb colour, ImVec2 size) {
    const analysis::Histogram& h = *v.h;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 p0 = ImGui::GetCursorScreenPos();
    const ImVec2 p1(p0.x + size.x, p0.y + size.y);
    ImGui::InvisibleButton("histogram", size);
    const bool hovered = ImGui::IsItemHovered();
    dl->AddRectFilled(p0, p1, IM_COL32(22, 24, 30, 255));
    dl->AddRect(p0, p1, IM_COL32(90, 90, 100, 255));
    if (h.counts.empty() || !(h.hi > h.lo)) {
        dl->AddText(ImVec2(p0.x + 8, p0.y + 8), IM_COL32(200, 200, 200, 255), "no finite values to histogram");
        return;
    }
    const float axis_h = ImGui::GetTextLineHeight() + 2.0f;
    const float plot_h = size.y - axis_h - 4.0f;
    const std::uint64_t peak = *std::max_element(h.counts.begin(), h.counts.end());
    const float bw = size.x / static_cast<float>(h.counts.size());
    const double bin_width = (h.hi - h.lo) / static_cast<double>(h.counts.size());
    for (std::size_t i = 0; i < h.counts.size(); ++i) {
        if (!h.counts[i]) continue;
        const float bh = peak ? plot_h * static_cast<float>(double(h.counts[i]) / double(peak)) : 0.0f;
        // At least one pixel: a bin with a handful of weights must still show.
        dl->AddRectFilled(ImVec2(p0.x + bw * i, p0.y + 2 + plot_h - std::max(1.0f, bh)), ImVec2(p0.x + bw * (i + 1) - 1, p0.y + 2 + plot_h),
                          col32(colour));
    }
    auto x_of = [&](double x) { return p0.x + static_cast<float>((x - h.lo) / (h.hi - h.lo)) * size.x; };
    // The rounding threshold: weights inside +-gamma'/2 become 0.
    std::vector<double> lines;
    if (v.threshold > 0) {
        if (v.log_axis) lines.push_back(std::log10(v.threshold));
        else lines = {-v.threshold, v.threshold};
    }
    for (double x : lines) {
        if (x >= h.lo && x <= h.hi) {
            dl->AddLine(ImVec2(x_of(x), p0.y + 1), ImVec2(x_of(x), p0.y + 2 + plot_h), col32(palette::kThreshold), 2.0f);
        } else {
            // Off the chart: every weight lies inside the zero band; say so at the edge.
            const float ex = x < h.lo ? p0.x + 2 : p1.x - 2;
            dl->AddLine(ImVec2(ex, p0.y + 1), ImVec2(ex, p0.y + 2 + plot_h), col32(palette::kThreshold), 3.0f);
        }
    }
    const std::string lo = v.log_axis ? "1e" + fmt("%.0f", h.lo) : fmt("%.3g", h.lo);
    const std::string hi = v.log_axis ? "1e" + fmt("%.0f", h.hi) : fmt("%.3g", h.hi);
    dl->AddText(ImVec2(p0.x + 3, p1.y - axis_h), IM_COL32(190, 190, 190, 255), lo.c_str());
    dl->AddText(ImVec2(p1.x - ImGui::CalcTextSize(hi.c_str()).x - 3, p1.y - axis_h), IM_COL32(190, 190, 190, 255), hi.c_str());
    const std::string peak_text = "peak " + std::to_string(peak);
    dl->AddText(ImVec2(p1.x - ImGui::CalcTextSize(peak_text.c_str()).x - 3, p0.y + 3), IM_COL32(190, 190, 190, 255), peak_text.c_str());
    if (hovered) {
        const float mx = ImGui::GetIO().MousePos.x - p0.x;
        const std::size_t i = std::min(h.counts.size() - 1, static_cast<std::size_t>(std::max(0.0f, mx / bw)));
        const double a = h.lo + bin_width * i, b = a + bin_width;
        std::string text = v.log_axis ? "|w| in [1e" + fmt("%.2f", a) + ", 1e" + fmt("%.2f", b) + ")" : "w in [" + fmt("%.4g", a) + ", " + fmt("%.4g", b) + ")";
        text += ": " + std::to_string(h.counts[i]) + " weights";
        text += "\n\nMagenta: the rounding threshold gamma'/2 = " + fmt("%.3g", v.threshold) +
                "; weights with |w| below it are quantized to 0. A thick line at the edge means the threshold lies beyond the "
                "range: every weight rounds to 0.";
        ImGui::SetTooltip("%s", text.c_str());
    }
}

void draw_ternary_bar(const analysis::TernaryFractions& t, ImVec2 size) {
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 p0 = ImGui::GetCursorScreenPos();
    ImGui::InvisibleButton("ternary", size);
    float x = p0.x;
    const struct {
        double f;
        palette::Rgb c;
        const char* name;
    } parts[] = {{t.neg, palette::kTernaryNeg, "-1"}, {t.zero, palette::kTernaryZero, "0"}, {t.pos, palette::kTernaryPos, "+1"}};
    for (const auto& p : parts) {
        const float w = size.x * static_cast<float>(std::clamp(p.f, 0.0, 1.0));
        dl->AddRectFilled(ImVec2(x, p0.y), ImVec2(x + w, p0.y + size.y), col32(p.c));
        const std::string label = std::string(p.name) + " " + percent(p.f, 0);
        if (ImGui::CalcTextSize(label.c_str()).x + 4 < w)
            dl->AddText(ImVec2(x + 3, p0.y + (size.y - ImGui::GetFontSize()) * 0.5f), IM_COL32(0, 0, 0, 255), label.c_str());
        x += w;
    }
}

namespace {

void draw_tensor_card(AppState& s, const TensorRef& ref, palette::Rgb colour, ImVec2 size) {
    const analysis::TensorStats* t = find_tensor_stats(s, ref);
    const CheckpointData* c = find_checkpoint(s, CheckpointRef{ref.document, ref.checkpoint});
    ImGui::BeginChild(("card_" + ref.name + std::to_string(ref.checkpoint)).c_str(), size, true);
    if (!t || !c) {
        ImGui::TextDisabled("(tensor no longer open)");
        ImGui::EndChild();
        return;
    }
    const analysis::Thresholds& th = c->report.thresholds;
    const analysis::Verdict v = tensor_verdict(s, ref);
    ImGui::TextColored(colvec(colour), "%s", t->name.c_str());
    ImGui::TextDisabled("%s", checkpoint_label(s, CheckpointRef{ref.document, ref.checkpoint}).c_str());
    ImGui::TextColored(verdict_text_colour(v), "%s", std::string(analysis::verdict_name(v)).c_str());
    std::string why;
    for (const auto& f : c->report.findings)
        if (f.subject == t->name) why += "\n- " + f.message;
    tooltip((why.empty() ? std::string("No rule fired for this tensor.") : "Findings:" + why) + "\n\n" + explain_verdict(th));

    std::string shape;
    for (std::size_t i = 0; i < t->shape.size(); ++i) shape += (i ? " x " : "") + std::to_string(t->shape[i]);
    ImGui::Text("%s [%s], %llu elements", t->dtype.c_str(), shape.c_str(), static_cast<unsigned long long>(t->count));
    ImGui::Text("std %.3g   mean %.3g   range [%.3g, %.3g]", t->std, t->mean, t->min, t->max);
    tooltip(explain_std(th));
    ImGui::Text("absmean gamma %.3g   gamma' %.3g (%s)", t->absmean, t->ternary.scale,
                std::string(analysis::quantizer_name(t->ternary.quantizer)).c_str());
    tooltip("gamma = mean|W|; gamma' is the scale the quantizer divides by (bitnet floors it at 1e-5, so a tensor whose "
            "weights all shrank below that snaps to all zeros; distillix adds 1e-8). Codes: round(w / gamma') clamped to [-1, 1].");
    ImGui::Text("exact zeros %s   non-finite %llu", percent(t->zero_frac).c_str(),
                static_cast<unsigned long long>(t->nan_count + t->inf_count));
    tooltip(explain_exact_zero() + "\nNon-finite: NaN and Inf values (rule non_finite).");
    ImGui::Text("dead rows %lld / %lld   dead cols %lld / %lld", static_cast<long long>(t->dead.dead_rows),
                static_cast<long long>(t->dead.rows), static_cast<long long>(t->dead.dead_cols), static_cast<long long>(t->dead.cols));
    tooltip(explain_dead_rows(th) + "\nDead columns: input features no output reads (codes all 0 down the column).");
    if (t->lattice.is_ternary) {
        ImGui::Text("stored ternary%s: scale %.3g", t->lattice.per_channel ? " (per channel)" : "", t->lattice.scale);
        tooltip("The values already lie on a lattice {-s, 0, +s}: an exported ternary model, not latent weights.");
    }

    const float bar_h = ImGui::GetFrameHeight();
    const float hist_h = std::max(80.0f, ImGui::GetContentRegionAvail().y - bar_h * 2 - ImGui::GetTextLineHeightWithSpacing() * 2);
    ImGui::TextUnformatted(s.log_histogram ? "log10|w| histogram" : "value histogram");
    tooltip(s.log_histogram ? "Histogram of log10|w| over the non-zero finite weights: a collapsed layer sits orders of magnitude "
                              "left of a healthy one."
                            : "Histogram of the weights over [-max|W|, +max|W|]. Healthy latent weights look Gaussian or "
                              "Laplacian; a collapsed tensor is a spike at 0.");
    ImGui::PushID(ref.name.c_str());
    draw_histogram(HistogramView{s.log_histogram ? &t->log_magnitude : &t->values, s.log_histogram, t->ternary.scale / 2}, colour,
                   ImVec2(ImGui::GetContentRegionAvail().x, hist_h));
    ImGui::TextUnformatted("ternary codes -1 / 0 / +1");
    draw_ternary_bar(t->ternary, ImVec2(ImGui::GetContentRegionAvail().x, bar_h));
    ImGui::PopID();
    tooltip("Codes under the " + std::string(analysis::quantizer_name(t->ternary.quantizer)) + " quantizer: -1 " +
            percent(t->ternary.neg) + ", 0 " + percent(t->ternary.zero) + ", +1 " + percent(t->ternary.pos) + ". Under " +
            std::string(analysis::quantizer_name(t->ternary_other.quantizer)) + ": 0 " + percent(t->ternary_other.zero) + ".\n" +
            explain_ternary_zero(th));
    ImGui::EndChild();
}

}  // namespace

void draw_tensor(AppState& s) {
    const CheckpointData* c = current_checkpoint(s);
    if (!c) {
        ImGui::TextWrapped("Open a checkpoint to look at its tensors.");
        return;
    }
    static ImGuiTextFilter filter;
    ImGui::BeginChild("tensor_list", ImVec2(280.0f, 0), true);
    filter.Draw("##filter", -1.0f);
    tooltip("Filter tensor names (e.g. mlp, -bias). Click: show on the left; right-click: show on the right.");
    for (const auto& t : c->report.tensors) {
        if (!filter.PassFilter(t.name.c_str())) continue;
        const analysis::Verdict v = analysis::verdict_of_subject(c->report, t.name);
        const bool selected = (s.tensor_a && s.tensor_a->name == t.name) || (s.tensor_b && s.tensor_b->name == t.name);
        ImGui::PushStyleColor(ImGuiCol_Text, verdict_text_colour(v));
        if (ImGui::Selectable(t.name.c_str(), selected)) select_tensor(s, t.name, 0);
        ImGui::PopStyleColor();
        if (ImGui::BeginPopupContextItem(t.name.c_str())) {
            if (ImGui::MenuItem("Show on the left")) select_tensor(s, t.name, 0);
            if (ImGui::MenuItem("Show on the right")) select_tensor(s, t.name, 1);
            ImGui::EndPopup();
        }
    }
    ImGui::EndChild();
    ImGui::SameLine();
    ImGui::BeginGroup();
    ImGui::Checkbox("log-magnitude histogram", &s.log_histogram);
    tooltip("Switch between the histogram of values and the histogram of log10|w|.");
    if (s.tensor_b) {
        ImGui::SameLine();
        if (ImGui::SmallButton("hide right")) s.tensor_b.reset();
    }
    if (!s.tensor_a) {
        ImGui::TextDisabled("Pick a tensor from the list.");
    } else {
        const float w = ImGui::GetContentRegionAvail().x;
        const float h = ImGui::GetContentRegionAvail().y;
        const float card_w = s.tensor_b ? (w - ImGui::GetStyle().ItemSpacing.x) * 0.5f : w;
        draw_tensor_card(s, *s.tensor_a, palette::kHistogramA, ImVec2(card_w, h));
        if (s.tensor_b) {
            ImGui::SameLine();
            draw_tensor_card(s, *s.tensor_b, palette::kHistogramB, ImVec2(card_w, h));
        }
    }
    ImGui::EndGroup();
}

}  // namespace bitfsck::app
