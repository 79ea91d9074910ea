#pragma once
// Which tensors a step touches, by layer, by role and by name pattern: shared by repair's steps and
// fine-tuning's regularizers, so that `--layers 2-5 --roles mlp` means the same thing in both.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bitfsck::analysis {

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

// Whether every filter the selection gives holds for the tensor name, and why ("matches 'g'",
// "selected as layers.3.mlp_up"). Without --roles or --match only ternary-matrix roles qualify.
// A default (empty) selection matches nothing here: its meaning is the caller's.
std::optional<std::string> explicit_selection_matches(const TensorSelection& selection, std::string_view name);

}  // namespace bitfsck::analysis
