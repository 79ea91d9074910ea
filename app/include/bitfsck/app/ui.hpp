#pragma once
// The ImGui side: the panel registry, the main window (sidebar, tab bar, status strip) and the
// drawing helpers the panels share. Panels draw from AppState and change it only through the
// functions of app_state.hpp and loader.hpp.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <imgui.h>

#include "bitfsck/app/app_state.hpp"
#include "bitfsck/app/palette.hpp"
#include "bitfsck/io/text.hpp"  // fmt, shape_text, human_bytes

namespace bitfsck::app {

struct Panel {
    const char* id;               // "overview", ..., "help"
    const char* title;            // tab or window title
    std::optional<View> tab;      // nullopt: a separate window (help), not a tab
    void (*draw)(AppState&);
};

// Every panel, in tab order, help last: the one list the main window iterates.
const std::vector<Panel>& panels();

void draw_overview(AppState& s);
void draw_layers(AppState& s);
void draw_tensor(AppState& s);
void draw_timeline(AppState& s);
void draw_compare(AppState& s);
void draw_induction(AppState& s);
void draw_repair(AppState& s);
void draw_resurrect(AppState& s);
void draw_help(AppState& s);

struct UiFlags {
    bool focus_path_box = false;   // Ctrl+O: put the keyboard focus in the path box this frame
    bool select_view_tab = true;   // the tab bar is being made to show s.view (set from code)
    View tab_view = View::Overview;  // the view the tab bar showed last frame
};

// Keyboard shortcuts (Ctrl+O, 1-7, F1); key codes are GLFW's, which ImGui 1.86 indexes KeysDown by.
void handle_shortcuts(AppState& s, UiFlags& flags);
// The whole frame: one full-viewport window with the sidebar, the tabs and the status strip,
// plus the help window when open.
void draw_main_window(AppState& s, UiFlags& flags);

// --- helpers shared by panels ---------------------------------------------------------------

ImU32 col32(palette::Rgb c, int alpha = 255);
ImVec4 colvec(palette::Rgb c);
palette::Rgb verdict_row_colour(analysis::Verdict v);
ImVec4 verdict_text_colour(analysis::Verdict v);
std::string percent(double fraction, int decimals = 1);
// A tooltip with wrapped text when the last item is hovered.
void tooltip(const std::string& text);
// "(?)" that shows text on hover.
void help_marker(const std::string& text);
// The rule behind each figure, spelled with the report's thresholds.
std::string explain_std(const analysis::Thresholds& t);
std::string explain_ternary_zero(const analysis::Thresholds& t);
std::string explain_exact_zero();
std::string explain_dead_rows(const analysis::Thresholds& t);
std::string explain_verdict(const analysis::Thresholds& t);
// A coloured full-width banner with a line of text (verdicts, security findings).
void banner(palette::Rgb colour, const std::string& text);
// A histogram (values, or log10|w| when log_axis) with the rounding threshold +-threshold drawn
// on it (the tensor view's, reused by the repair view's before/after).
struct HistogramView {
    const analysis::Histogram* h;
    bool log_axis;      // x is log10|w|
    double threshold;   // gamma'/2 in the x units' domain (a value, not its log)
};
void draw_histogram(const HistogramView& v, palette::Rgb colour, ImVec2 size);
// The ternary -1 / 0 / +1 fractions as one bar.
void draw_ternary_bar(const analysis::TernaryFractions& t, ImVec2 size);
// "A vs B" label for a checkpoint ref, shown in pickers.
bool checkpoint_combo(const char* label, AppState& s, std::optional<CheckpointRef>& ref);

}  // namespace bitfsck::app
