#pragma once
// Which tensors a repair step touches: by layer, by role, by name pattern, or (by default) the
// ternary matrices of every layer-role the scan did not call healthy.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bitfsck/analysis/report.hpp"
#include "bitfsck/analysis/selection.hpp"
#include "bitfsck/io/checkpoint.hpp"

namespace bitfsck::repair {

using analysis::TensorSelection;
using analysis::check_role_names;
using analysis::glob_match;
using analysis::parse_layer_ranges;

struct SelectedTensor {
    std::string name;
    std::string reason;  // "layers.0.mlp_up is collapsed", "--match 'layers.*.mlp.*'"
};

// Candidates are the plain (not packed) floating-point state-dict tensors with at least two
// dimensions. With an explicit selection every given filter must hold; without --roles or --match
// only ternary-matrix roles are candidates. The default selection is every ternary matrix of a
// layer-role whose verdict in `scan` is degraded or collapsed. In file order.
std::vector<SelectedTensor> select_tensors(const io::Checkpoint& checkpoint, const analysis::ScanReport& scan,
                                           const TensorSelection& selection);

}  // namespace bitfsck::repair
