#pragma once
// Which tensors a repair step touches: by layer, by role, by name pattern, or (by default) the
// ternary matrices of every layer-role the scan did not call healthy.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bitfsck/analysis/report.hpp"
#include "bitfsck/io/checkpoint.hpp"

namespace bitfsck::repair {

struct TensorSelection {
    std::vector<std::pair<int, int>> layers;  // inclusive ranges
    std::vector<std::string> roles;           // "mlp", "attn", or role names ("mlp_up", "attn_q", "embedding")
    std::vector<std::string> match;           // shell globs on state-dict names (any may match)

    bool is_default() const { return layers.empty() && roles.empty() && match.empty(); }
};

// "0,2-5,7" -> {0,0},{2,5},{7,7}. Throws bitfsck::Error for anything else.
std::vector<std::pair<int, int>> parse_layer_ranges(std::string_view text);
// Throws bitfsck::Error naming an unknown role.
void check_role_names(const std::vector<std::string>& roles);
// fnmatch(3) without flags: *, ?, [...].
bool glob_match(std::string_view pattern, std::string_view name);

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
