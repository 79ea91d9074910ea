#pragma once
// A printable summary of a checkpoint's object tree: what `inspect` shows and the app's
// overview draws. Tensors are summarised by dtype and shape; the state dict collapses to one
// line; long containers are cut after a limit, with the count of what was left out.
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/io/checkpoint.hpp"

namespace bitfsck::io {

struct TreeNode {
    std::string key;       // "model_state_dict", "[3]", "lr"
    std::string type;      // "dict", "list", "tensor", "int", "object argparse.Namespace", ...
    std::string summary;   // "1234", "float32 [64, 32]", "12 entries", "'run'"
    std::vector<TreeNode> children;
    std::size_t omitted = 0;  // children left out past the limit
};

struct TreeLimits {
    std::size_t max_children = 24;
    int max_depth = 8;
    std::size_t max_text = 80;
};

TreeNode object_tree(const Checkpoint& checkpoint, const TreeLimits& limits = {});

// Indented text, one node per line.
std::string render_tree(const TreeNode& root);

// `bitfsck inspect --json`: format, findings, tree, tensors. The one place this becomes JSON.
nlohmann::ordered_json inspect_json(const Checkpoint& checkpoint, const TreeLimits& limits = {});

std::string severity_name(Severity s);  // "critical", "warning"

}  // namespace bitfsck::io
