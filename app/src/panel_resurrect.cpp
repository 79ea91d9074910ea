// Resurrection: plan a collapsed run (bitfsck_repair's plan_resurrection), read the reasons, edit
// the recipe, run it in the background with live curves of the stage being fine-tuned and a
// cancel button, then browse the stages, the baselines, the claims and the induction maps before
// and after. Every figure comes from the resurrection log; the run itself is bitfsck_repair's.
#include <algorithm>
#include <cmath>

#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {
namespace {

int resize_string(ImGuiInputTextCallbackData* data) {
    if (data->EventFlag == ImGuiInputTextFlags_CallbackResize) {
        auto* s = static_cast<std::string*>(data->UserData);
        s->resize(static_cast<std::size_t>(data->BufTextLen));
        data->Buf = s->data();
    }
    return 0;
}

bool input_string(const char* label, std::string& s, float width, const char* hint = "") {
    ImGui::SetNextItemWidth(width);
    return ImGui::InputTextWithHint(label, hint, s.data(), s.capacity() + 1, ImGuiInputTextFlags_CallbackResize, resize_string, &s);
}

// ImGui 1.86 has no SeparatorText.
void heading(const char* text) {
    ImGui::Spacing();
    ImGui::TextColored(ImVec4(0.65f, 0.8f, 1.0f, 1.0f), "%s", text);
    ImGui::Separator();
}

void plot_series(const char* label, const std::vector<float>& v, ImVec2 size) {
    if (v.empty()) {
        ImGui::TextDisabled("%s: no data yet", label);
        return;
    }
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    char overlay[96];
    std::snprintf(overlay, sizeof overlay, "%s  %.4g (min %.4g, max %.4g)", label, v.back(), *lo, *hi);
    ImGui::PlotLines("##plot", v.data(), static_cast<int>(v.size()), 0, overlay, *lo, *hi + 1e-9f, size);
}

void draw_live(const analysis::MetricsTimeline& t, const std::filesystem::path& file) {
    ImGui::TextDisabled("%s (%zu steps)", file.string().c_str(), t.points.size());
    std::vector<float> loss, val;
    for (const auto& p : t.points) {
        if (p.loss) loss.push_back(static_cast<float>(*p.loss));
        if (p.val_loss) val.push_back(static_cast<float>(*p.val_loss));
    }
    const float w = ImGui::GetContentRegionAvail().x;
    ImGui::PushID("loss");
    plot_series("training loss", loss, ImVec2(w, 70));
    ImGui::PopID();
    ImGui::PushID("val");
    plot_series("validation loss", val, ImVec2(w, 50));
    ImGui::PopID();
    if (t.points.empty()) return;
    for (std::size_t r = 0; r < t.points.back().roles.size(); ++r) {
        const analysis::Role role = t.points.back().roles[r].role;
        std::vector<float> std_, zero;
        for (const auto& p : t.points)
            for (const auto& x : p.roles)
                if (x.role == role) std_.push_back(static_cast<float>(std::log10(std::max(x.std, 1e-12)))), zero.push_back(static_cast<float>(100 * x.zero));
        ImGui::PushID(static_cast<int>(r));
        const std::string name(analysis::role_name(role));
        plot_series((name + " log10 std").c_str(), std_, ImVec2(w / 2 - 4, 40));
        ImGui::SameLine();
        ImGui::PushID("z");
        plot_series((name + " zeros %").c_str(), zero, ImVec2(w / 2 - 4, 40));
        ImGui::PopID();
        ImGui::PopID();
    }
}

void draw_ipmr(const char* id, const repair::Measurement& m, const char* title) {
    ImGui::BeginGroup();
    ImGui::Text("%s", title);
    if (m.ipmr.empty()) {
        ImGui::TextDisabled("(no induction probe)");
        ImGui::EndGroup();
        return;
    }
    const float cell = 26.0f;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const ImVec2 p0 = ImGui::GetCursorScreenPos();
    for (std::size_t l = 0; l < m.ipmr.size(); ++l)
        for (std::size_t h = 0; h < m.ipmr[l].size(); ++h) {
            const float v = static_cast<float>(std::clamp(m.ipmr[l][h], 0.0, 1.0));
            const ImVec2 a(p0.x + cell * static_cast<float>(h), p0.y + cell * static_cast<float>(l));
            dl->AddRectFilled(a, ImVec2(a.x + cell - 2, a.y + cell - 2), ImGui::GetColorU32(ImVec4(0.15f + 0.8f * v, 0.2f + 0.5f * v, 0.35f, 1.0f)));
        }
    ImGui::Dummy(ImVec2(cell * static_cast<float>(m.ipmr.front().size()), cell * static_cast<float>(m.ipmr.size())));
    ImGui::PushID(id);
    ImGui::TextWrapped("top: %s; specialists %lld", m.top_heads.c_str(), static_cast<long long>(m.specialist_heads));
    ImGui::PopID();
    ImGui::EndGroup();
}

void draw_results(const repair::ResurrectionLog& log) {
    const repair::Measurement* final_m = &log.start;
    for (const auto& s : log.stages)
        if (s.accepted) final_m = &s.after;
    heading("Claims (held-out validation loss, paired 95% intervals)");
    if (!log.beats_best_baseline && log.best_baseline)
        ImGui::TextColored(ImVec4(1.0f, 0.45f, 0.4f, 1), "The result does not beat the best baseline, %s: use %s instead.",
                           log.best_baseline->baseline.c_str(), log.best_baseline->checkpoint.c_str());
    for (const auto& c : log.claims)
        ImGui::TextColored(c.rfind("beats", 0) == 0 ? ImVec4(0.45f, 0.85f, 0.45f, 1) : ImVec4(1.0f, 0.45f, 0.4f, 1), "%s", c.c_str());
    if (ImGui::BeginTable("stages", 5, ImGuiTableFlags_Borders | ImGuiTableFlags_RowBg | ImGuiTableFlags_SizingStretchProp)) {
        ImGui::TableSetupColumn("#", ImGuiTableColumnFlags_WidthFixed, 24);
        ImGui::TableSetupColumn("stage", ImGuiTableColumnFlags_WidthFixed, 250);
        ImGui::TableSetupColumn("val loss", ImGuiTableColumnFlags_WidthFixed, 70);
        ImGui::TableSetupColumn("verdict", ImGuiTableColumnFlags_WidthFixed, 80);
        ImGui::TableSetupColumn("decisions", ImGuiTableColumnFlags_WidthStretch);
        ImGui::TableHeadersRow();
        auto row = [](const std::string& idx, const std::string& stage, const repair::Measurement& m, const std::vector<std::string>& notes, bool ok) {
            ImGui::TableNextRow();
            ImGui::TableNextColumn();
            ImGui::TextUnformatted(idx.c_str());
            ImGui::TableNextColumn();
            ImGui::TextUnformatted(stage.c_str());
            ImGui::TableNextColumn();
            ImGui::Text("%.4f", m.val_loss);
            ImGui::TableNextColumn();
            ImGui::TextColored(verdict_text_colour(m.verdict), "%s", std::string(analysis::verdict_name(m.verdict)).c_str());
            ImGui::TableNextColumn();
            ImGui::PushStyleColor(ImGuiCol_Text, ok ? ImVec4(0.85f, 0.85f, 0.85f, 1) : ImVec4(1.0f, 0.45f, 0.4f, 1));
            for (const auto& n : notes) ImGui::TextWrapped("%s", n.c_str());
            ImGui::PopStyleColor();
        };
        row("0", "start", log.start, {log.recipe.latest}, true);
        for (const auto& s : log.stages) row(std::to_string(s.index), std::string(repair::stage_name(s.stage.kind)), s.after, s.decisions, s.accepted);
        for (const auto& b : log.baselines) row("-", "baseline: " + b.name, b.measurement, {b.description}, true);
        ImGui::EndTable();
    }
    for (const auto& s : log.stages) {
        if (!s.search) continue;
        const repair::SearchRecord& r = *s.search;
        heading(("Candidates of stage " + std::to_string(s.index) + ": selection loss at each rung (windows no claim uses)").c_str());
        ImGui::TextWrapped("%s", r.why.c_str());
        const int columns = 2 + static_cast<int>(r.rung_steps.size());
        if (ImGui::BeginTable(("candidates" + std::to_string(s.index)).c_str(), columns, ImGuiTableFlags_Borders | ImGuiTableFlags_RowBg)) {
            ImGui::TableSetupColumn("candidate", ImGuiTableColumnFlags_WidthStretch);
            for (auto steps : r.rung_steps) ImGui::TableSetupColumn((std::to_string(steps) + " steps").c_str(), ImGuiTableColumnFlags_WidthFixed, 80);
            ImGui::TableSetupColumn("", ImGuiTableColumnFlags_WidthFixed, 40);
            ImGui::TableHeadersRow();
            for (const auto& c : r.candidates) {
                ImGui::TableNextRow();
                ImGui::TableNextColumn();
                ImGui::TextUnformatted(c.name.c_str());
                for (auto steps : r.rung_steps) {
                    ImGui::TableNextColumn();
                    if (const auto loss = repair::selection_loss_at(c, steps)) ImGui::Text("%.4f", *loss);
                }
                ImGui::TableNextColumn();
                if (c.winner) ImGui::TextColored(ImVec4(0.45f, 0.85f, 0.45f, 1), "won");
            }
            ImGui::EndTable();
        }
    }
    draw_ipmr("before", log.start, "IPMR before");
    ImGui::SameLine(0, 40);
    draw_ipmr("after", *final_m, "IPMR after");
    ImGui::SameLine(0, 40);
    ImGui::BeginGroup();
    ImGui::Text("generation before%s", log.start.degenerate ? " (degenerate)" : "");
    ImGui::TextWrapped("%s", log.start.generation.c_str());
    ImGui::Text("generation after%s", final_m->degenerate ? " (degenerate)" : "");
    ImGui::TextWrapped("%s", final_m->generation.c_str());
    ImGui::EndGroup();
    ImGui::TextDisabled("resurrected: %s   report: %s/report.html", log.output.c_str(),
                        std::filesystem::path(log.output).parent_path().string().c_str());
}

}  // namespace

void draw_resurrect(AppState& s) {
    ResurrectView& v = s.resurrect;
    poll_resurrect(v, ImGui::GetTime());
    if (v.run.empty())
        if (const Document* d = selected_document(s)) default_resurrect_paths(v, d->path);

    input_string("run", v.run, 320, "a run folder or checkpoint");
    ImGui::SameLine();
    input_string("tokens", v.tokens, 220, "training tokens");
    ImGui::SameLine();
    input_string("val tokens", v.val_tokens, 220, "held-out tokens");
    input_string("output folder", v.out_dir, 320);
    ImGui::SameLine();
    const bool planning = v.plan_job != nullptr, running = v.run_job != nullptr;
    ImGui::BeginDisabled(planning || running || v.run.empty());
    if (ImGui::Button("Plan")) start_resurrect_plan(s.jobs, v);
    tooltip("Scan the run, find the collapse and propose a recipe (bitfsck plan), each choice with its reason.");
    ImGui::SameLine();
    ImGui::BeginDisabled(v.recipe_text.empty());
    if (ImGui::Button("Run")) start_resurrect_run(s.jobs, v);
    tooltip("Run the recipe below in the background (bitfsck resurrect): every stage measured on the validation tokens and "
            "gated, then the baselines. Running again in the same folder resumes after the last completed stage.");
    ImGui::EndDisabled();
    ImGui::SameLine();
    if (ImGui::Button("Open results")) {
        v.log = read_resurrection_log(v.out_dir);
        if (!v.log) v.error = "no resurrection.json in " + v.out_dir;
    }
    ImGui::EndDisabled();
    if (running) {
        ImGui::SameLine();
        if (ImGui::Button("Cancel")) v.run_job->cancel();
        ImGui::ProgressBar(v.run_job->fraction(), ImVec2(-1, 0), v.run_job->label().c_str());
    }
    if (planning) ImGui::TextColored(ImVec4(1.0f, 0.80f, 0.30f, 1.0f), "Planning %s ...", v.run.c_str());
    if (!v.error.empty()) ImGui::TextColored(ImVec4(1.0f, 0.45f, 0.4f, 1), "%s", v.error.c_str());

    const float left = ImGui::GetContentRegionAvail().x * 0.48f;
    ImGui::BeginChild("recipe", ImVec2(left, ImGui::GetContentRegionAvail().y * (v.log ? 0.45f : 1.0f)), true);
    if (v.plan) {
        heading("Diagnosis");
        for (const auto& d : v.plan->diagnosis) ImGui::TextWrapped("%s", d.c_str());
        heading("Recipe");
        for (std::size_t i = 0; i < v.plan->stages.size(); ++i) {
            const auto& st = v.plan->stages[i];
            const ImVec2 p = ImGui::GetCursorScreenPos();
            ImGui::GetWindowDrawList()->AddRectFilled(ImVec2(p.x, p.y + 2), ImVec2(p.x + 12, p.y + 14), col32(palette::kRecipeStage));
            ImGui::Dummy(ImVec2(14, 14));
            ImGui::SameLine();
            ImGui::Text("%zu. %s", i + 1, std::string(repair::stage_name(st.kind)).c_str());
            ImGui::SameLine();
            ImGui::Indent(20);
            if (st.kind == repair::StageKind::Search) {
                // A page of JSON: the budget, the rungs and the candidates by name instead.
                ImGui::TextDisabled("%lld steps, rungs %s", static_cast<long long>(st.params.value("steps", std::int64_t{0})),
                                    st.params.value("rungs", nlohmann::json::array()).dump().c_str());
                for (const auto& c : st.params.value("candidates", nlohmann::json::array()))
                    ImGui::BulletText("%s", c.value("name", std::string()).c_str());
            } else {
                ImGui::TextDisabled("%s", st.params.dump().c_str());
            }
            ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.7f, 0.7f, 0.7f, 1));
            ImGui::TextWrapped("why: %s", st.reason.c_str());
            ImGui::PopStyleColor();
            ImGui::Unindent(20);
        }
    } else {
        ImGui::TextDisabled("Plan a run to see the diagnosis and the recipe.");
    }
    if (!v.recipe_text.empty()) {
        heading("Edit the recipe (JSON)");
        ImGui::InputTextMultiline("##recipe", v.recipe_text.data(), v.recipe_text.capacity() + 1, ImVec2(-1, -1),
                                  ImGuiInputTextFlags_CallbackResize, resize_string, &v.recipe_text);
        if (!v.recipe_error.empty()) ImGui::TextColored(ImVec4(1.0f, 0.45f, 0.4f, 1), "%s", v.recipe_error.c_str());
    }
    ImGui::EndChild();
    ImGui::SameLine();
    ImGui::BeginChild("live", ImVec2(0, ImGui::GetContentRegionAvail().y * (v.log ? 0.45f : 1.0f)), true);
    heading("Live: the stage being fine-tuned");
    if (v.live) draw_live(*v.live, v.live_file);
    else ImGui::TextDisabled(running ? "waiting for the first fine-tuning step ..." : "Curves appear here while a run fine-tunes.");
    ImGui::EndChild();
    if (v.log) {
        ImGui::BeginChild("results", ImVec2(0, 0), true);
        draw_results(*v.log);
        ImGui::EndChild();
    }
}

}  // namespace bitfsck::app
