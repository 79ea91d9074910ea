// The frame around the panels: the open bar (path box, recent files), the sidebar of open
// documents and a run's steps, the tab bar over the panel list, and the status strip with the
// progress bar, the cancel button and the log.
#include <GLFW/glfw3.h>

#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

namespace {

// imgui_stdlib is not compiled into Debian's libimgui.a; this is its std::string InputText.
int resize_callback(ImGuiInputTextCallbackData* data) {
    if (data->EventFlag == ImGuiInputTextFlags_CallbackResize) {
        auto* str = static_cast<std::string*>(data->UserData);
        str->resize(static_cast<std::size_t>(data->BufTextLen));
        data->Buf = str->data();
    }
    return 0;
}

bool input_string(const char* label, const char* hint, std::string& text, ImGuiInputTextFlags flags) {
    return ImGui::InputTextWithHint(label, hint, text.data(), text.capacity() + 1, flags | ImGuiInputTextFlags_CallbackResize,
                                    resize_callback, &text);
}

analysis::Verdict document_verdict(const Document& d) {
    if (d.timeline) return d.timeline->final_verdict;
    return d.checkpoints.empty() ? analysis::Verdict::Healthy : d.checkpoints.front()->report.verdict;
}

void draw_open_bar(AppState& s, UiFlags& f) {
    ImGui::AlignTextToFramePadding();
    ImGui::TextUnformatted("Open");
    ImGui::SameLine();
    if (f.focus_path_box) {
        ImGui::SetKeyboardFocusHere();
        f.focus_path_box = false;
    }
    ImGui::SetNextItemWidth(ImGui::GetContentRegionAvail().x - 330.0f);
    bool go = input_string("##path", "checkpoint file or run folder  (Ctrl+O; or drop files on the window)", s.path_box,
                           ImGuiInputTextFlags_EnterReturnsTrue);
    tooltip("A checkpoint (.pt zip or legacy, .safetensors) or a folder of a run's checkpoints (step_*.pt). "
            "Enter opens it; files can also be dropped onto the window.");
    ImGui::SameLine();
    go |= ImGui::Button("Open");
    if (go && !s.path_box.empty()) {
        start_open(s, s.path_box);
        s.path_box.clear();
    }
    ImGui::SameLine();
    ImGui::SetNextItemWidth(150.0f);
    if (ImGui::BeginCombo("##recent", "Recent files")) {
        if (s.recent.empty()) ImGui::TextDisabled("(none yet)");
        for (const auto& r : s.recent)
            if (ImGui::Selectable(r.c_str())) start_open(s, r);
        ImGui::EndCombo();
    }
    ImGui::SameLine();
    if (ImGui::Button("Help (F1)")) s.show_help = !s.show_help;
}

void draw_sidebar(AppState& s, UiFlags& f) {
    ImGui::TextDisabled("Documents");
    if (s.documents.empty()) ImGui::TextWrapped("Nothing open yet.");
    int close = 0;
    for (const auto& d : s.documents) {
        ImGui::PushID(d.id);
        ImGui::PushStyleColor(ImGuiCol_Text, verdict_text_colour(document_verdict(d)));
        if (ImGui::Selectable(d.title().c_str(), d.id == s.selected_document)) select_document(s, d.id);
        ImGui::PopStyleColor();
        tooltip(d.path.string() + "\n" + (d.is_run ? "run, " + std::to_string(d.checkpoints.size()) + " checkpoints, " : "") +
                "verdict " + std::string(analysis::verdict_name(document_verdict(d))) + "\nRight-click to close.");
        if (ImGui::BeginPopupContextItem("doc")) {
            if (ImGui::MenuItem("Close")) close = d.id;
            ImGui::EndPopup();
        }
        ImGui::PopID();
    }
    if (close) close_document(s, close);

    const Document* d = selected_document(s);
    if (!d || !d->timeline) return;
    ImGui::Separator();
    ImGui::TextDisabled("Steps of %s", d->title().c_str());
    help_marker("The checkpoints of the run in step order, coloured by verdict. Clicking one shows it in the overview, "
                "layers and tensor views.");
    const auto& points = d->timeline->points;
    for (std::size_t i = 0; i < points.size(); ++i) {
        ImGui::PushID(static_cast<int>(i));
        ImGui::PushStyleColor(ImGuiCol_Text, verdict_text_colour(points[i].verdict));
        std::string label = "step " + std::to_string(points[i].step) + "  " + std::string(analysis::verdict_name(points[i].verdict));
        for (const auto& m : s.markers)
            if (m.step == points[i].step) label += "  [" + m.label + "]";
        if (ImGui::Selectable(label.c_str(), d->current == i)) {
            select_checkpoint(s, i);
            if (s.view == View::Timeline || s.view == View::Compare) {
                s.view = View::Layers;
                f.select_view_tab = true;
            }
        }
        ImGui::PopStyleColor();
        tooltip(points[i].file);
        ImGui::PopID();
    }
}

void draw_status_strip(AppState& s) {
    std::string label;
    const float progress = overall_progress(s, &label);
    if (busy(s)) {
        ImGui::ProgressBar(progress, ImVec2(ImGui::GetContentRegionAvail().x - 90.0f, 0), label.c_str());
        ImGui::SameLine();
        if (ImGui::Button("Cancel", ImVec2(-1, 0))) cancel_all(s);
    } else {
        ImGui::ProgressBar(0.0f, ImVec2(-1, 0), s.documents.empty() ? "ready" : "ready - all jobs finished");
    }
    ImGui::BeginChild("log", ImVec2(0, 0), true);
    for (const auto& line : s.log) {
        if (line.level == LogLine::Level::Error) ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.0f, 0.45f, 0.45f, 1.0f));
        ImGui::TextUnformatted(line.text.c_str());
        if (line.level == LogLine::Level::Error) ImGui::PopStyleColor();
    }
    // Follow the newest line unless the user scrolled up to read.
    if (ImGui::GetScrollY() >= ImGui::GetScrollMaxY() - 1.0f) ImGui::SetScrollHereY(1.0f);
    ImGui::EndChild();
}

}  // namespace

void handle_shortcuts(AppState& s, UiFlags& flags) {
    ImGuiIO& io = ImGui::GetIO();
    if (io.KeyCtrl && ImGui::IsKeyPressed(GLFW_KEY_O, false)) flags.focus_path_box = true;
    if (ImGui::IsKeyPressed(GLFW_KEY_F1, false)) s.show_help = !s.show_help;
    // Digits typed into the path box are text, not tab switches.
    if (io.WantTextInput || io.KeyCtrl || io.KeyAlt) return;
    for (int i = 0; i < kViewCount; ++i)
        if (ImGui::IsKeyPressed(GLFW_KEY_1 + i, false)) {
            s.view = static_cast<View>(i);
            flags.select_view_tab = true;
        }
}

void draw_main_window(AppState& s, UiFlags& flags) {
    const ImGuiViewport* vp = ImGui::GetMainViewport();
    ImGui::SetNextWindowPos(vp->WorkPos);
    ImGui::SetNextWindowSize(vp->WorkSize);
    ImGui::Begin("bitfsck", nullptr,
                 ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoSavedSettings |
                     ImGuiWindowFlags_NoBringToFrontOnFocus);
    draw_open_bar(s, flags);

    const float strip = ImGui::GetFrameHeightWithSpacing() + ImGui::GetTextLineHeightWithSpacing() * 4.5f;
    ImGui::BeginChild("body", ImVec2(0, -strip), false);
    ImGui::BeginChild("sidebar", ImVec2(230.0f, 0), true);
    draw_sidebar(s, flags);
    ImGui::EndChild();
    ImGui::SameLine();
    ImGui::BeginChild("views", ImVec2(0, 0), false);
    // Panels and shortcuts switch views by setting s.view; the tab bar follows.
    if (s.view != flags.tab_view) flags.select_view_tab = true;
    std::optional<View> shown;
    if (ImGui::BeginTabBar("views")) {
        for (const Panel& p : panels()) {
            if (!p.tab) continue;
            const ImGuiTabItemFlags tf = flags.select_view_tab && s.view == *p.tab ? ImGuiTabItemFlags_SetSelected : 0;
            const std::string title = std::string(p.title) + " (" + std::to_string(static_cast<int>(*p.tab) + 1) + ")";
            if (ImGui::BeginTabItem(title.c_str(), nullptr, tf)) {
                shown = *p.tab;
                ImGui::BeginChild(p.id);
                p.draw(s);
                ImGui::EndChild();
                ImGui::EndTabItem();
            }
        }
        ImGui::EndTabBar();
    }
    // A tab set from code takes a frame to show; until then the tab bar does not speak for the user.
    if (flags.select_view_tab) {
        if (shown == s.view) flags.select_view_tab = false;
    } else if (shown) {
        s.view = *shown;
    }
    flags.tab_view = s.view;
    ImGui::EndChild();
    ImGui::EndChild();

    draw_status_strip(s);
    ImGui::End();

    if (s.show_help) {
        ImGui::SetNextWindowSize(ImVec2(620, 520), ImGuiCond_FirstUseEver);
        ImGui::SetNextWindowPos(ImVec2(vp->WorkPos.x + vp->WorkSize.x * 0.5f, vp->WorkPos.y + vp->WorkSize.y * 0.5f),
                                ImGuiCond_FirstUseEver, ImVec2(0.5f, 0.5f));
        for (const Panel& p : panels())
            if (!p.tab) {
                if (ImGui::Begin(p.title, &s.show_help)) p.draw(s);
                ImGui::End();
            }
    }
}

}  // namespace bitfsck::app
