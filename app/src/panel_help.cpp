// Help: what each view shows, the shortcuts, and the verdict rules with the thresholds in force.
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

void draw_help(AppState& s) {
    // The thresholds of what is open (they are written into every report), else the defaults.
    const CheckpointData* c = current_checkpoint(s);
    const analysis::Thresholds th = c ? c->report.thresholds : analysis::Thresholds{};
    ImGui::TextWrapped("bitfsck-gui checks ternary (BitNet b1.58) checkpoints for collapse and unsafe pickles, with the same "
                       "libraries as the bitfsck command line. Nothing in a checkpoint is ever imported or executed.");
    if (ImGui::CollapsingHeader("Opening", ImGuiTreeNodeFlags_DefaultOpen)) {
        ImGui::BulletText("Type a file or run folder in the path box and press Enter (Ctrl+O focuses it).");
        ImGui::BulletText("Drop files or folders onto the window, or pass them on the command line.");
        ImGui::BulletText("Recent files: the combo next to the path box.");
        ImGui::BulletText("Loading and scanning run in the background: progress and Cancel are in the bottom strip.");
    }
    if (ImGui::CollapsingHeader("Views and shortcuts", ImGuiTreeNodeFlags_DefaultOpen)) {
        for (const Panel& p : panels()) {
            if (!p.tab) continue;
            ImGui::BulletText("%d  %s", static_cast<int>(*p.tab) + 1, p.title);
        }
        ImGui::BulletText("F1  this help");
        ImGui::TextWrapped("Overview: security findings, the verdict and every finding, the object tree. Layers: one row per "
                           "layer-role, heat maps of std and ternary zeros. Tensor: histograms with the quantizer threshold, "
                           "ternary codes, dead rows; a sick tensor beside a healthy one. Run timeline: figures against step, "
                           "collapse onset and last healthy checkpoint; click a step to open it. Compare: per-tensor change and "
                           "code flips between two checkpoints. Induction: runs bitfsck_model's induction probe on the checkpoint "
                           "shown and draws a layers x heads heat map of IPMR or the induction score (hover a cell for its "
                           "figures). Repair: a bitfsck_repair step (svd, align, inflate) previewed on one tensor, histograms "
                           "before and after, then written beside the input and opened next to it.");
    }
    if (ImGui::CollapsingHeader("Verdict rules", ImGuiTreeNodeFlags_DefaultOpen)) {
        ImGui::TextWrapped("%s", explain_verdict(th).c_str());
        ImGui::Separator();
        ImGui::TextWrapped("%s", explain_std(th).c_str());
        ImGui::Separator();
        ImGui::TextWrapped("%s", explain_ternary_zero(th).c_str());
        ImGui::Separator();
        ImGui::TextWrapped("%s", explain_dead_rows(th).c_str());
        ImGui::Separator();
        ImGui::TextWrapped("Hover any figure for what it means and the rule behind its colour.");
    }
}

}  // namespace bitfsck::app
