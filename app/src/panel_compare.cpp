// Compare: two checkpoints side by side and what changed tensor by tensor (analysis::
// diff_checkpoints): how far the latent weights moved and how many ternary codes flipped.
#include <algorithm>

#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

namespace {

void draw_side(const AppState& s, const CheckpointRef& ref, const char* which) {
    const CheckpointData* c = find_checkpoint(s, ref);
    ImGui::BeginGroup();
    if (!c) {
        ImGui::TextDisabled("%s: (closed)", which);
        ImGui::EndGroup();
        return;
    }
    const analysis::ScanReport& r = c->report;
    banner(verdict_row_colour(r.verdict), std::string(which) + ": " + checkpoint_label(s, ref) + "  -  " +
                                              std::string(analysis::verdict_name(r.verdict)));
    tooltip(c->path.string() + "\nVerdict of this checkpoint scanned alone.\n" + explain_verdict(r.thresholds));
    ImGui::Text("%zu tensors, %zu findings, %zu security findings", r.tensors.size(), r.findings.size(), r.security.size());
    ImGui::EndGroup();
}

void draw_transitions(const analysis::TransitionMatrix& m) {
    if (!ImGui::BeginTable("transitions", 4, ImGuiTableFlags_Borders | ImGuiTableFlags_SizingFixedFit)) return;
    ImGui::TableSetupColumn("A \\ B");
    for (const char* c : {"-1", "0", "+1"}) ImGui::TableSetupColumn(c);
    ImGui::TableHeadersRow();
    const char* rows[] = {"-1", "0", "+1"};
    for (int i = 0; i < 3; ++i) {
        ImGui::TableNextRow();
        ImGui::TableSetColumnIndex(0);
        ImGui::TextUnformatted(rows[i]);
        for (int j = 0; j < 3; ++j) {
            ImGui::TableSetColumnIndex(j + 1);
            ImGui::Text("%llu", static_cast<unsigned long long>(m[i][j]));
            tooltip(std::string("Weights whose code was ") + rows[i] + " in A and is " + rows[j] + " in B" +
                    (i == j ? " (unchanged)." : " (a flip)."));
        }
    }
    ImGui::EndTable();
}

void draw_rate_bar(double rate, float width) {
    const ImVec2 p = ImGui::GetCursorScreenPos();
    const float h = ImGui::GetTextLineHeight();
    ImGui::GetWindowDrawList()->AddRectFilled(p, ImVec2(p.x + width * static_cast<float>(std::clamp(rate, 0.0, 1.0)), p.y + h),
                                              col32(palette::kFlipBar));
    ImGui::Dummy(ImVec2(width, h));
    ImGui::SameLine();
}

void draw_diff_table(AppState& s, const analysis::CheckpointDiff& d) {
    const ImGuiTableFlags flags = ImGuiTableFlags_Sortable | ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV |
                                  ImGuiTableFlags_ScrollY | ImGuiTableFlags_Resizable | ImGuiTableFlags_SizingFixedFit;
    if (!ImGui::BeginTable("diff", 6, flags)) return;
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("tensor", ImGuiTableColumnFlags_WidthStretch, 0, static_cast<ImGuiID>(DiffColumn::Tensor));
    ImGui::TableSetupColumn("rel L2 change", 0, 0, static_cast<ImGuiID>(DiffColumn::RelL2));
    ImGui::TableSetupColumn("flip rate", ImGuiTableColumnFlags_DefaultSort | ImGuiTableColumnFlags_PreferSortDescending, 150.0f,
                            static_cast<ImGuiID>(DiffColumn::FlipRate));
    ImGui::TableSetupColumn("new dead rows", 0, 0, static_cast<ImGuiID>(DiffColumn::NewDeadRows));
    ImGui::TableSetupColumn("gamma A -> B", ImGuiTableColumnFlags_NoSort);
    ImGui::TableSetupColumn("note", ImGuiTableColumnFlags_NoSort);
    ImGui::TableHeadersRow();
    if (ImGuiTableSortSpecs* specs = ImGui::TableGetSortSpecs(); specs && specs->SpecsDirty) {
        if (specs->SpecsCount > 0) {
            s.diff_sort = static_cast<DiffColumn>(specs->Specs[0].ColumnUserID);
            s.diff_ascending = specs->Specs[0].SortDirection != ImGuiSortDirection_Descending;
        }
        specs->SpecsDirty = false;
    }
    for (std::size_t i : diff_order(d, s.diff_sort, s.diff_ascending)) {
        const analysis::TensorDiff& t = d.tensors[i];
        ImGui::TableNextRow();
        ImGui::TableSetColumnIndex(0);
        ImGui::TextUnformatted(t.name.c_str());
        ImGui::TableSetColumnIndex(5);
        if (t.only_in_a) ImGui::TextDisabled("only in A");
        else if (t.only_in_b) ImGui::TextDisabled("only in B");
        else if (!t.compared) ImGui::TextDisabled("%s", t.note.c_str());
        else if (t.non_finite) ImGui::Text("%llu non-finite pairs skipped", static_cast<unsigned long long>(t.non_finite));
        if (!t.compared) continue;
        ImGui::TableSetColumnIndex(1);
        ImGui::Text("%.3g", t.rel_l2);
        tooltip("||B - A|| / ||A|| over the finite pairs: how far the latent weights moved, relative to their size.");
        ImGui::TableSetColumnIndex(2);
        draw_rate_bar(t.flip_rate, 60.0f);
        ImGui::Text("%s", percent(t.flip_rate, 2).c_str());
        tooltip("Share of weights whose ternary code changed, each side quantized with its own gamma' (" +
                std::to_string(t.flips) + " of " + std::to_string(t.count) + "). A layer collapsing to zero flips its +-1 codes to 0.");
        ImGui::TableSetColumnIndex(3);
        ImGui::Text("%lld", static_cast<long long>(t.new_dead_rows));
        tooltip("Output rows whose codes are all 0 in B but were not in A (dead rows: " + std::to_string(t.dead_rows_a) + " -> " +
                std::to_string(t.dead_rows_b) + " of " + std::to_string(t.rows) + ").");
        ImGui::TableSetColumnIndex(4);
        ImGui::Text("%.3g -> %.3g", t.absmean_a, t.absmean_b);
        tooltip("Absmean gamma = mean|W| of each side; a fall of orders of magnitude is the collapse itself.");
    }
    ImGui::EndTable();
}

}  // namespace

void draw_compare(AppState& s) {
    if (all_checkpoints(s).size() < 2) {
        ImGui::TextWrapped("Open two checkpoints (or a run folder) to compare them: per-tensor change and ternary flip rates.");
        return;
    }
    if (!s.compare_a || !s.compare_b || !find_checkpoint(s, *s.compare_a) || !find_checkpoint(s, *s.compare_b)) {
        if (auto pair = default_compare_pair(s)) {
            s.compare_a = pair->first;
            s.compare_b = pair->second;
        }
    }
    const float half = (ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemSpacing.x) * 0.5f;
    ImGui::SetNextItemWidth(half - 30.0f);
    checkpoint_combo("A", s, s.compare_a);
    tooltip("The earlier checkpoint. For a run, A and B start as the last healthy checkpoint and the collapse onset.");
    ImGui::SameLine();
    ImGui::SetNextItemWidth(half - 30.0f);
    checkpoint_combo("B", s, s.compare_b);
    if (!s.compare_a || !s.compare_b) return;

    // A new pair is diffed once, in the background; a failure is not retried in a loop.
    const std::pair<CheckpointRef, CheckpointRef> pair{*s.compare_a, *s.compare_b};
    if (s.diff_requested != pair) {
        s.diff_requested = pair;
        start_diff(s, pair.first, pair.second);
    }

    ImGui::BeginChild("sideA", ImVec2(half, ImGui::GetTextLineHeightWithSpacing() * 2.6f), false);
    draw_side(s, *s.compare_a, "A");
    ImGui::EndChild();
    ImGui::SameLine();
    ImGui::BeginChild("sideB", ImVec2(half, ImGui::GetTextLineHeightWithSpacing() * 2.6f), false);
    draw_side(s, *s.compare_b, "B");
    ImGui::EndChild();

    if (s.diff_job) {
        ImGui::ProgressBar(s.diff_job->job->fraction(), ImVec2(-1, 0), "comparing...");
        return;
    }
    if (!s.diff || !(s.diff_a == *s.compare_a) || !(s.diff_b == *s.compare_b)) {
        ImGui::TextDisabled("No comparison of this pair (see the log).");
        if (ImGui::Button("Compare again")) start_diff(s, *s.compare_a, *s.compare_b);
        return;
    }
    const analysis::CheckpointDiff& d = *s.diff;
    const analysis::DiffTotals& t = d.totals;
    ImGui::Text("%zu tensors compared, %zu only in A, %zu only in B, %zu not comparable", t.tensors_compared, t.only_in_a, t.only_in_b,
                t.not_compared);
    ImGui::Text("flip rate %s (%llu of %llu codes)   rel L2 change %.3g   new dead rows %lld", percent(t.flip_rate, 2).c_str(),
                static_cast<unsigned long long>(t.flips), static_cast<unsigned long long>(t.count), t.rel_l2,
                static_cast<long long>(t.new_dead_rows));
    tooltip("Over every compared tensor together, quantizer " + std::string(analysis::quantizer_name(d.quantizer)) +
            ". Between neighbouring healthy checkpoints a few percent of codes flip; a collapse flips most +-1 codes to 0.");
    if (ImGui::TreeNode("code transitions A -> B (all tensors)")) {
        draw_transitions(t.transitions);
        ImGui::TreePop();
    }
    draw_diff_table(s, d);
}

}  // namespace bitfsck::app
