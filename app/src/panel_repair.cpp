// Repair: pick a step of bitfsck_repair (svd, align, inflate) and its parameters, preview one
// tensor repaired in memory (its value histogram and ternary codes before and after, side by
// side), then write the repaired checkpoint in the background and open it next to the original.
// Every figure and the repair itself are bitfsck_repair's (preview_repair, repair_checkpoint).
#include <algorithm>

#include "bitfsck/analysis/report_json.hpp"  // verdict_of_subject
#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

namespace {

namespace fs = std::filesystem;

const analysis::TensorStats* stats_named(const analysis::ScanReport& r, const std::string& name) {
    for (const auto& t : r.tensors)
        if (t.name == name) return &t;
    return nullptr;
}

void draw_step_params(RepairParams& p) {
    ImGui::AlignTextToFramePadding();
    ImGui::SetNextItemWidth(100.0f);
    if (ImGui::BeginCombo("step", std::string(repair::step_name(p.step)).c_str())) {
        for (const auto k : kRepairSteps) {
            if (ImGui::Selectable(std::string(repair::step_name(k)).c_str(), p.step == k)) p.step = k;
            tooltip(explain_repair_step(k));
        }
        ImGui::EndCombo();
    }
    tooltip(explain_repair_step(p.step));
    ImGui::SameLine();
    switch (p.step) {
        case repair::StepKind::Svd: {
            ImGui::SetNextItemWidth(170.0f);
            if (ImGui::BeginCombo("rank rule", std::string(repair::rank_rule_name(p.rule)).c_str())) {
                for (const auto r : {repair::RankRule::GavishDonoho, repair::RankRule::MarchenkoPastur, repair::RankRule::Energy,
                                     repair::RankRule::Fixed})
                    if (ImGui::Selectable(std::string(repair::rank_rule_name(r)).c_str(), p.rule == r)) p.rule = r;
                ImGui::EndCombo();
            }
            tooltip("rank: keep a fixed number of singular triplets. energy: the smallest k whose share of sum(sigma^2) reaches E. "
                    "gavish_donoho (default): keep sigma > omega(beta) median(sigma), beta = min(m,n)/max(m,n). "
                    "marchenko_pastur: noise from the median singular value, keep what lies above the bulk edge sigma_n(sqrt m + sqrt n).");
            if (p.rule == repair::RankRule::Fixed) {
                ImGui::SameLine();
                const std::int64_t one = 1;
                ImGui::SetNextItemWidth(110.0f);
                if (ImGui::InputScalar("rank", ImGuiDataType_S64, &p.rank, &one, &one)) p.rank = std::max<std::int64_t>(1, p.rank);
                tooltip("Singular triplets kept (at most min(rows, cols)).");
            } else if (p.rule == repair::RankRule::Energy) {
                ImGui::SameLine();
                ImGui::SetNextItemWidth(140.0f);
                float e = static_cast<float>(p.energy);
                if (ImGui::SliderFloat("energy", &e, 0.01f, 1.0f, "%.3f")) p.energy = e;
                tooltip("Share of sum(sigma^2) the kept triplets must reach.");
            }
            break;
        }
        case repair::StepKind::Align: {
            float t = static_cast<float>(p.strength), w = static_cast<float>(p.width);
            ImGui::SetNextItemWidth(140.0f);
            if (ImGui::SliderFloat("strength", &t, 0.0f, 1.0f, "%.2f")) p.strength = t;
            tooltip("t in [0, 1]: w <- (1 - t) w + t T(w). 1 moves the weights all the way to the three-peak target; the W2 "
                    "distance to the target shrinks to (1 - t) of what it was.");
            ImGui::SameLine();
            ImGui::SetNextItemWidth(140.0f);
            if (ImGui::SliderFloat("width", &w, 0.001f, 1.0f, "%.3f")) p.width = w;
            tooltip("Width of each target peak as a share of S: sigma = width x S (default 0.1).");
            break;
        }
        case repair::StepKind::Inflate: {
            float z = static_cast<float>(p.zeros), tau = static_cast<float>(p.tau);
            ImGui::SetNextItemWidth(140.0f);
            if (ImGui::SliderFloat("zeros", &z, 0.0f, 1.0f, "%.2f")) p.zeros = z;
            tooltip("The ternary zero fraction to reach: dead-zone weights move out until at most this share rounds to 0 "
                    "(default 0.3; a healthy Gaussian layer has about 0.30).");
            ImGui::SameLine();
            ImGui::SetNextItemWidth(140.0f);
            if (ImGui::SliderFloat("tau", &tau, 0.01f, 1.0f, "%.2f")) p.tau = tau;
            tooltip("Dead zone |w| < tau x g (g the quantizer's effective absmean scale). 0.5: exactly the weights the quantizer "
                    "snaps to 0. Weights outside it are never touched.");
            break;
        }
        case repair::StepKind::Pick: break;
    }
    if (p.step == repair::StepKind::Align || p.step == repair::StepKind::Inflate) {
        ImGui::SameLine();
        ImGui::SetNextItemWidth(260.0f);
        char buf[1024];
        const std::size_t n = std::min(p.like.size(), sizeof buf - 1);
        std::copy_n(p.like.data(), n, buf);
        buf[n] = 0;
        if (ImGui::InputTextWithHint("like", "optional: a healthy checkpoint", buf, sizeof buf)) p.like = buf;
        tooltip("--like: a healthy checkpoint of the same model. align takes its masses and scale from the same tensor there (by "
                "role when the name is absent); inflate its absmean as the target magnitude and the signs of exact zeros. Empty: "
                "the healthy layers of the same role in this checkpoint, else the tensor's own figures.");
    }
}

void draw_tensor_picker(AppState& s, const CheckpointData& c) {
    ImGui::AlignTextToFramePadding();
    ImGui::SetNextItemWidth(360.0f);
    if (ImGui::BeginCombo("tensor", s.repair.tensor.empty() ? "(no matrix)" : s.repair.tensor.c_str())) {
        for (const auto& t : c.report.tensors) {
            if (t.shape.size() < 2) continue;
            const analysis::Verdict v = analysis::verdict_of_subject(c.report, t.name);
            ImGui::PushStyleColor(ImGuiCol_Text, verdict_text_colour(v));
            if (ImGui::Selectable(t.name.c_str(), s.repair.tensor == t.name)) s.repair.tensor = t.name;
            ImGui::PopStyleColor();
        }
        ImGui::EndCombo();
    }
    tooltip("The tensor to preview (matrices only; red: collapsed, amber: degraded). It starts on the tensor picked in the "
            "tensor view, else the first matrix of a collapsed layer-role.");
}

void draw_stats_card(const char* id, const char* title, const analysis::TensorStats& t, palette::Rgb colour, ImVec2 size) {
    ImGui::BeginChild(id, size, true);
    ImGui::TextColored(colvec(colour), "%s", title);
    ImGui::Text("std %.3g   absmean %.3g   gamma' %.3g", t.std, t.absmean, t.ternary.scale);
    ImGui::Text("ternary -1 %s   0 %s   +1 %s", percent(t.ternary.neg).c_str(), percent(t.ternary.zero).c_str(),
                percent(t.ternary.pos).c_str());
    ImGui::Text("dead rows %lld / %lld", static_cast<long long>(t.dead.dead_rows), static_cast<long long>(t.dead.rows));
    const float bar_h = ImGui::GetFrameHeight();
    const float hist_h = std::max(60.0f, ImGui::GetContentRegionAvail().y - bar_h - ImGui::GetTextLineHeightWithSpacing() * 2 -
                                                   ImGui::GetStyle().ItemSpacing.y * 2 - 2.0f);
    ImGui::TextUnformatted("value histogram");
    ImGui::PushID(id);
    draw_histogram(HistogramView{&t.values, false, t.ternary.scale / 2}, colour, ImVec2(ImGui::GetContentRegionAvail().x, hist_h));
    ImGui::TextUnformatted("ternary codes -1 / 0 / +1");
    draw_ternary_bar(t.ternary, ImVec2(ImGui::GetContentRegionAvail().x, bar_h));
    ImGui::PopID();
    ImGui::EndChild();
}

void draw_preview(const RepairPreview& p) {
    const repair::TensorRepair& r = p.preview.repair;
    std::string line = "Preview of " + p.tensor + " (" + repair_params_label(p.params) + "): relative change " +
                       fmt("%.3g", r.relative_change) + ", " + std::to_string(r.changed_elements) + " elements changed";
    if (r.svd) line += ", rank " + std::to_string(r.svd->rank) + " / " + std::to_string(r.svd->max_rank) + " (energy kept " +
                       percent(r.svd->energy_kept) + ")";
    if (r.align) line += ", S " + fmt("%.3g", r.align->scale) + ", mass error " + fmt("%.3g", r.align->mass_error);
    if (r.inflate) line += ", moved " + std::to_string(r.inflate->moved) + ", zeros " + percent(r.inflate->zeros_before) + " -> " +
                           percent(r.inflate->zeros_after) + (r.inflate->reached ? "" : " (not reached)");
    ImGui::PushTextWrapPos(0.0f);
    ImGui::TextUnformatted(line.c_str());
    if (!r.scale_source.empty()) ImGui::TextDisabled("scale from: %s", r.scale_source.c_str());
    ImGui::PopTextWrapPos();
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const float w = (avail.x - ImGui::GetStyle().ItemSpacing.x) * 0.5f;
    draw_stats_card("repair_before", "before", p.preview.before_stats, palette::kHistogramA, ImVec2(w, avail.y));
    ImGui::SameLine();
    draw_stats_card("repair_after", "after", p.preview.after_stats, palette::kHistogramB, ImVec2(w, avail.y));
}

}  // namespace

void draw_repair(AppState& s) {
    const std::optional<CheckpointRef> ref = current_checkpoint_ref(s);
    const CheckpointData* c = ref ? find_checkpoint(s, *ref) : nullptr;
    if (!c) {
        ImGui::TextWrapped("Open a checkpoint to repair it: svd, align or inflate, previewed on one tensor, then written as a new "
                           "checkpoint with its log (as `bitfsck repair` does).");
        ImGui::Spacing();
        for (const auto k : kRepairSteps) {
            ImGui::BulletText("%s", std::string(repair::step_name(k)).c_str());
            tooltip(explain_repair_step(k));
        }
        return;
    }
    RepairView& v = s.repair;
    if (v.tensor_of != ref || v.tensor.empty() || !stats_named(c->report, v.tensor)) {
        std::optional<std::string> selected;
        if (s.tensor_a && CheckpointRef{s.tensor_a->document, s.tensor_a->checkpoint} == *ref) selected = s.tensor_a->name;
        v.tensor = default_repair_tensor(c->report, selected).value_or("");
        v.tensor_of = ref;
    }

    ImGui::Text("Repair %s", checkpoint_label(s, *ref).c_str());
    ImGui::SameLine();
    ImGui::TextColored(verdict_text_colour(c->report.verdict), "(%s)", std::string(analysis::verdict_name(c->report.verdict)).c_str());
    help_marker("A step never modifies its input: it writes a new checkpoint in which everything it did not repair is carried "
                "over byte for byte, scans the output afresh and writes OUT.repair.json beside it (see docs/repair.md).");
    draw_step_params(v.params);

    draw_tensor_picker(s, *c);
    ImGui::SameLine();
    const bool previewing = v.preview_job.has_value();
    ImGui::BeginDisabled(v.tensor.empty());
    if (ImGui::Button(previewing ? "Preview again" : "Preview")) start_repair_preview(s, *ref, v.tensor, v.params);
    ImGui::EndDisabled();
    tooltip("Repairs this tensor in memory with the step above (the same step and scale sources as Run; nothing is written) "
            "and draws its histograms before and after.");

    const fs::path output = repair_output_path(c->path, v.params.step);
    ImGui::Checkbox("only this tensor", &v.only_tensor);
    tooltip("On: Run repairs only the tensor above (--match NAME). Off: the library's default selection, the ternary matrices "
            "of every layer-role the scan calls degraded or collapsed.");
    ImGui::SameLine();
    const bool running = v.run_job.has_value();
    ImGui::BeginDisabled(running || (v.only_tensor && v.tensor.empty()));
    if (ImGui::Button("Run")) start_repair_run(s, *ref, v.params, output, v.only_tensor ? v.tensor : std::string());
    ImGui::EndDisabled();
    tooltip("Writes the repaired checkpoint in the background (progress and Cancel in the bottom strip), then opens it as a new "
            "document and sets the compare view to original vs repaired.");
    ImGui::SameLine();
    ImGui::TextDisabled("-> %s", output.string().c_str());
    tooltip("The input's folder when it is writable, else the system temp folder; never the input itself. The log goes to " +
            repair::repair_log_path(output).string());

    if (running) ImGui::TextColored(ImVec4(1.0f, 0.80f, 0.30f, 1.0f), "Writing: %s", v.run_job->job->title().c_str());
    if (v.last_run) {
        const repair::RepairLog& log = v.last_run->log;
        ImGui::TextColored(verdict_text_colour(log.verdict_after), "Last repair: %s -> %s, verdict %s, %zu tensors changed",
                           fs::path(log.input).filename().string().c_str(), log.output.c_str(), verdict_change(log).c_str(),
                           log.tensors.size());
        ImGui::SameLine();
        if (ImGui::SmallButton("compare with the original")) s.view = View::Compare;
    }
    ImGui::Separator();
    if (previewing) ImGui::TextColored(ImVec4(1.0f, 0.80f, 0.30f, 1.0f), "Preview running: %s", v.preview_job->tensor.c_str());
    if (!v.preview_error.empty()) {
        ImGui::PushTextWrapPos(0.0f);
        ImGui::TextColored(ImVec4(1.0f, 0.45f, 0.45f, 1.0f), "Preview failed: %s", v.preview_error.c_str());
        ImGui::PopTextWrapPos();
    }
    if (v.preview && v.preview->checkpoint == *ref) {
        draw_preview(*v.preview);
    } else if (!previewing) {
        ImGui::TextDisabled("Pick a step and a tensor and press Preview to see its histograms before and after.");
    }
}

}  // namespace bitfsck::app
