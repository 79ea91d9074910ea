// The one list of panels: the tab bar and the shortcuts iterate it, so adding a view is one
// draw function and one line here.
#include "bitfsck/app/ui.hpp"

namespace bitfsck::app {

const std::vector<Panel>& panels() {
    static const std::vector<Panel> list{
        {"overview", "Overview", View::Overview, &draw_overview},
        {"layers", "Layers", View::Layers, &draw_layers},
        {"tensor", "Tensor", View::Tensor, &draw_tensor},
        {"timeline", "Run timeline", View::Timeline, &draw_timeline},
        {"compare", "Compare", View::Compare, &draw_compare},
        {"induction", "Induction", View::Induction, &draw_induction},
        {"repair", "Repair", View::Repair, &draw_repair},
        {"resurrect", "Resurrect", View::Resurrect, &draw_resurrect},
        {"help", "Help", std::nullopt, &draw_help},
    };
    return list;
}

}  // namespace bitfsck::app
