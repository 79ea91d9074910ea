#include "bitfsck/repair/selection.hpp"

#include "bitfsck/analysis/layers.hpp"
#include "bitfsck/analysis/timeline.hpp"
#include "bitfsck/io/dtype.hpp"

namespace bitfsck::repair {

std::vector<SelectedTensor> select_tensors(const io::Checkpoint& checkpoint, const analysis::ScanReport& scan,
                                           const TensorSelection& selection) {
    check_role_names(selection.roles);
    std::vector<SelectedTensor> out;
    for (const io::TensorEntry* t : checkpoint.state_dict_tensors()) {
        if (!io::dtype_is_floating(t->dtype) || t->encoding != io::TensorEncoding::Plain || t->shape.size() < 2) continue;
        if (t->shared_with) continue;  // a view of a tensor already selectable by its own name
        const analysis::TensorPlace place = analysis::place_of(t->name);
        const std::string label = analysis::layer_role_label(place.layer, place.role);
        if (selection.is_default()) {
            if (!analysis::role_is_ternary_matrix(place.role)) continue;
            for (const auto& l : scan.layers) {
                if (l.layer != place.layer || l.role != place.role || l.verdict == analysis::Verdict::Healthy) continue;
                out.push_back({t->name, label + " is " + std::string(analysis::verdict_name(l.verdict))});
                break;
            }
            continue;
        }
        auto why = analysis::explicit_selection_matches(selection, t->name);
        if (!why) continue;
        out.push_back({t->name, *why});
    }
    return out;
}

}  // namespace bitfsck::repair
