// Overview: security findings from the pickle first (in red: they matter before anything else,
// because torch.load would run them), then the verdict with every finding and its reason, the
// file's facts, and the object tree (io::object_tree).
#include "bitfsck/app/ui.hpp"

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/io/dtype.hpp"

namespace bitfsck::app {

namespace {

void draw_tree(const io::TreeNode& n, int depth) {
    const std::string label = n.key + "  " + n.type + (n.summary.empty() ? "" : "  " + n.summary);
    if (n.children.empty() && n.omitted == 0) {
        ImGui::TreeNodeEx(label.c_str(), ImGuiTreeNodeFlags_Leaf | ImGuiTreeNodeFlags_NoTreePushOnOpen | ImGuiTreeNodeFlags_SpanAvailWidth);
        return;
    }
    // The top two levels open at first: that is where the state dict and the training state are.
    if (depth < 1) ImGui::SetNextItemOpen(true, ImGuiCond_Once);
    if (ImGui::TreeNodeEx(label.c_str(), ImGuiTreeNodeFlags_SpanAvailWidth)) {
        for (std::size_t i = 0; i < n.children.size(); ++i) {
            ImGui::PushID(static_cast<int>(i));
            draw_tree(n.children[i], depth + 1);
            ImGui::PopID();
        }
        if (n.omitted) ImGui::TextDisabled("... %zu more not shown", n.omitted);
        ImGui::TreePop();
    }
}

void draw_findings(const std::vector<analysis::Finding>& findings, const analysis::Thresholds& th) {
    if (findings.empty()) {
        ImGui::TextDisabled("No findings: every rule passed.");
        return;
    }
    if (!ImGui::BeginTable("findings", 3, ImGuiTableFlags_RowBg | ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_Resizable |
                                               ImGuiTableFlags_ScrollY,
                           ImVec2(0, ImGui::GetTextLineHeightWithSpacing() * std::min<float>(12.0f, findings.size() + 1.5f))))
        return;
    ImGui::TableSetupScrollFreeze(0, 1);
    ImGui::TableSetupColumn("severity", ImGuiTableColumnFlags_WidthFixed, 80.0f);
    ImGui::TableSetupColumn("rule", ImGuiTableColumnFlags_WidthFixed, 100.0f);
    ImGui::TableSetupColumn("reason", ImGuiTableColumnFlags_WidthStretch);
    ImGui::TableHeadersRow();
    for (const auto& f : findings) {
        ImGui::TableNextRow();
        ImGui::TableSetColumnIndex(0);
        ImGui::TextColored(verdict_text_colour(f.severity), "%s", std::string(analysis::verdict_name(f.severity)).c_str());
        ImGui::TableSetColumnIndex(1);
        ImGui::TextUnformatted(f.rule.c_str());
        tooltip(explain_verdict(th));
        ImGui::TableSetColumnIndex(2);
        ImGui::TextWrapped("%s", f.message.c_str());
        tooltip("Subject: " + f.subject);
    }
    ImGui::EndTable();
}

void draw_run_summary(const AppState& s, const Document& d) {
    const analysis::Timeline& t = *d.timeline;
    std::string text = "RUN " + std::string(analysis::verdict_name(t.final_verdict)) + "  -  " + std::to_string(t.points.size()) +
                       " checkpoints";
    if (t.onset_step) text += ", collapse onset at step " + std::to_string(*t.onset_step);
    if (t.last_healthy_step) text += ", last healthy step " + std::to_string(*t.last_healthy_step);
    banner(verdict_row_colour(t.final_verdict), text);
    tooltip("The run's verdict is its last checkpoint's. Onset: the first step whose verdict is not healthy. "
            "Last healthy: the last healthy checkpoint before it - the one to resume from.");
    for (const auto& m : s.markers) ImGui::BulletText("%s: step %lld  (%s)", m.label.c_str(), static_cast<long long>(m.step), m.file.c_str());
    if (!t.reasons.empty() && ImGui::TreeNodeEx("Why the onset", ImGuiTreeNodeFlags_DefaultOpen)) {
        draw_findings(t.reasons, t.thresholds);
        ImGui::TreePop();
    }
    if (!t.role_onsets.empty() && ImGui::TreeNode("First failure per layer-role")) {
        for (const auto& o : t.role_onsets)
            ImGui::BulletText("%s: %s at step %lld", analysis::layer_role_label(o.layer, o.role).c_str(),
                              std::string(analysis::verdict_name(o.verdict)).c_str(), static_cast<long long>(o.step));
        ImGui::TreePop();
    }
    if (!d.skipped.empty() && ImGui::TreeNode("Files left out of the run")) {
        for (const auto& sk : d.skipped) ImGui::BulletText("%s", sk.c_str());
        ImGui::TreePop();
    }
    ImGui::Separator();
}

}  // namespace

void draw_overview(AppState& s) {
    const Document* d = selected_document(s);
    const CheckpointData* c = current_checkpoint(s);
    if (!d || !c) {
        ImGui::TextWrapped("Open a checkpoint (.pt, .safetensors) or a run folder of checkpoints: type its path above and press "
                           "Enter, drop it onto the window, or pass it on the command line. F1 shows the help.");
        return;
    }
    const analysis::ScanReport& r = c->report;

    for (const auto& sec : r.security) {
        std::string text = "SECURITY " + sec.severity + ": " + sec.reason;
        banner(palette::kSecurity, text);
        tooltip("From the pickle, before any tensor was read: torch.load would import " + sec.global +
                (sec.called ? " and call it" : "") + " (pickle offset " + std::to_string(sec.offset) +
                "). bitfsck never imports or calls anything; load this file with torch.load(weights_only=True) or not at all.");
    }

    if (d->timeline) draw_run_summary(s, *d);

    // For a run, the shown checkpoint's verdict includes the cross-checkpoint rule.
    analysis::Verdict v = r.verdict;
    const std::vector<analysis::Finding>* findings = &r.findings;
    if (d->timeline && d->current < d->timeline->points.size()) {
        v = d->timeline->points[d->current].verdict;
        findings = &d->timeline->points[d->current].findings;
    }
    banner(verdict_row_colour(v), "VERDICT: " + std::string(analysis::verdict_name(v)) + "  -  " + c->path.filename().string() +
                                      "  (" + std::to_string(findings->size()) + " findings)");
    tooltip(explain_verdict(r.thresholds));

    ImGui::Text("%s  |  %s  |  %.1f MB  |  quantizer %s", c->path.string().c_str(), r.format.c_str(), r.file_size / 1e6,
                std::string(analysis::quantizer_name(r.quantizer)).c_str());
    tooltip("Quantizer: the absmean convention the ternary figures use (bitnet: gamma = max(mean|W|, 1e-5); "
            "distillix: mean|W| + 1e-8).");
    ImGui::Text("step %s  |  state dict at '%s'  |  %zu tensors, %zu layer-roles judged",
                r.step ? std::to_string(*r.step).c_str() : "-", r.state_dict_path ? r.state_dict_path->c_str() : "(none found)",
                r.tensors.size(), r.layers.size());
    tooltip("The state dict is where bitfsck found the model's weights in the object tree; only its floating-point tensors "
            "are analysed.");
    ImGui::TextDisabled("%s", r.content_hash.c_str());
    tooltip("xxh3-128 of the whole file: two files with the same hash are the same checkpoint.");

    ImGui::Spacing();
    ImGui::TextUnformatted("Findings");
    help_marker(explain_verdict(r.thresholds));
    draw_findings(*findings, r.thresholds);

    ImGui::Spacing();
    ImGui::TextUnformatted("Object tree");
    help_marker("What the pickle holds, as bitfsck's safe interpreter rebuilt it without importing anything: the state dict "
                "collapsed to one line, optimizer state, step, config objects. Long containers are cut after a limit.");
    ImGui::BeginChild("tree", ImVec2(0, 0), true);
    draw_tree(c->tree, 0);
    ImGui::EndChild();
}

}  // namespace bitfsck::app
