#include "bitfsck/io/object_tree.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstdio>
#include <unordered_map>
#include <unordered_set>

#include "bitfsck/io/json_document.hpp"
#include "bitfsck/io/text.hpp"

namespace bitfsck::io {
namespace {

std::string clip(std::string s, std::size_t max) {
    if (s.size() > max) s = s.substr(0, max) + "…";
    return s;
}

std::string printable(const std::string& raw) {
    std::string out;
    for (unsigned char c : raw) {
        if (c >= 0x20 && c != 0x7f) out += static_cast<char>(c);
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

std::string float_text(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

std::string key_label(const Value* k) {
    if (!k) return "?";
    if (k->kind == ValueKind::String) return printable(k->text);
    if (k->kind == ValueKind::Int) return std::to_string(k->integer);
    return std::string("<") + std::string(k->kind_name()) + ">";
}

// A short tuple or list of numbers and strings, written on one line: "(0.9, 0.95)".
std::optional<std::string> scalars_inline(const Value& seq) {
    if (seq.items.empty() || seq.items.size() > 8) return std::nullopt;
    std::string out;
    for (const Value* item : seq.items) {
        if (!item) return std::nullopt;
        std::string text;
        switch (item->kind) {
            case ValueKind::Int: text = std::to_string(item->integer); break;
            case ValueKind::Float: text = float_text(item->real); break;
            case ValueKind::Bool: text = item->boolean ? "True" : "False"; break;
            case ValueKind::None: text = "None"; break;
            case ValueKind::String: text = "'" + clip(printable(item->text), 24) + "'"; break;
            default: return std::nullopt;
        }
        out += (out.empty() ? "" : ", ") + text;
    }
    bool tuple = seq.kind == ValueKind::Tuple;
    return (tuple ? "(" : "[") + out + (tuple && seq.items.size() == 1 ? ",)" : (tuple ? ")" : "]"));
}

// When a dict holds several dicts that all have the same string keys, those keys joined.
std::optional<std::string> common_keys(const Value& dict) {
    if (dict.entries.size() < 4) return std::nullopt;
    std::vector<std::string> first;
    for (std::size_t i = 0; i < dict.entries.size(); ++i) {
        const Value* child = dict.entries[i].second;
        if (!child || child->kind != ValueKind::Dict) return std::nullopt;
        std::vector<std::string> keys;
        for (const auto& [k, v] : child->entries) {
            if (!k || k->kind != ValueKind::String) return std::nullopt;
            keys.push_back(k->text);
        }
        if (i == 0) first = std::move(keys);
        else if (keys != first) return std::nullopt;
    }
    std::string joined;
    for (const auto& k : first) joined += (joined.empty() ? "" : ", ") + k;
    return joined;
}

class TreeBuilder {
public:
    TreeBuilder(const Checkpoint& c, const TreeLimits& l) : limits_(l) {
        if (c.state_dict_path() && !c.state_dict_path()->empty()) state_dict_path_ = *c.state_dict_path();
        root_is_state_dict_ = c.state_dict_path() && c.state_dict_path()->empty();
        for (const auto& t : c.tensors()) tensor_names_.emplace(t.path, &t);
    }

    TreeNode build(const Value* v, const std::string& key, const std::string& path, int depth) {
        TreeNode n;
        n.key = key;
        if (!v) {
            n.type = "none";
            n.summary = "None";
            return n;
        }
        switch (v->kind) {
            case ValueKind::None: n.type = "none"; n.summary = "None"; return n;
            case ValueKind::Bool: n.type = "bool"; n.summary = v->boolean ? "True" : "False"; return n;
            case ValueKind::Int: n.type = "int"; n.summary = std::to_string(v->integer); return n;
            case ValueKind::BigInt: n.type = "int"; n.summary = clip(v->text, limits_.max_text); return n;
            case ValueKind::Float: n.type = "float"; n.summary = float_text(v->real); return n;
            case ValueKind::String: n.type = "str"; n.summary = "'" + clip(printable(v->text), limits_.max_text) + "'"; return n;
            case ValueKind::Bytes: n.type = "bytes"; n.summary = std::to_string(v->text.size()) + " bytes"; return n;
            case ValueKind::Global: n.type = "global"; n.summary = v->qualified_name(); return n;
            case ValueKind::Storage: n.type = "storage"; n.summary = std::string(dtype_name(v->dtype)) + " key " + v->text; return n;
            case ValueKind::Tensor:
                n.type = v->is_parameter ? "parameter" : "tensor";
                n.summary = std::string(dtype_name(v->dtype)) + " " + shape_text(v->shape);
                return n;
            default: break;
        }
        if ((v->kind == ValueKind::Tuple || v->kind == ValueKind::List) && scalars_inline(*v)) {
            n.type = std::string(v->kind_name());
            n.summary = *scalars_inline(*v);  // betas: (0.9, 0.95) reads better on one line
            return n;
        }
        if (depth >= limits_.max_depth || !on_path_.insert(v).second) {
            n.type = std::string(v->kind_name());
            n.summary = depth >= limits_.max_depth ? "(deeper levels not shown)" : "(shared reference)";
            return n;
        }
        bool is_state_dict = (path == state_dict_path_ && !state_dict_path_.empty()) || (depth == 0 && root_is_state_dict_);
        switch (v->kind) {
            case ValueKind::Dict:
                // A defaultdict or Counter is a dict that says so; a defaultdict also names its factory.
                n.type = v->name.empty() ? "dict" : "dict " + v->qualified_name();
                if (v->args && !v->args->items.empty() && v->args->items[0]->kind == ValueKind::Global)
                    n.type += "(" + v->args->items[0]->qualified_name() + ")";
                n.summary = std::to_string(v->entries.size()) + " entries";
                if (is_state_dict) {
                    n.summary += " (the state dict: see the tensor table)";
                    break;
                }
                if (auto keys = common_keys(*v)) {
                    // Optimizer state: many dicts with the same keys; one shows what all are like.
                    n.summary += ", each a dict of {" + *keys + "}";
                    add_child(n, v->entries.front().second, key_label(v->entries.front().first),
                              join(path, key_label(v->entries.front().first)), depth);
                    n.omitted = v->entries.size() - 1;
                    break;
                }
                for (const auto& [k, val] : v->entries) add_child(n, val, key_label(k), join(path, key_label(k)), depth);
                break;
            case ValueKind::List:
            case ValueKind::Tuple:
            case ValueKind::Set:
                n.type = std::string(v->kind_name());
                n.summary = std::to_string(v->items.size()) + " items";
                for (std::size_t i = 0; i < v->items.size(); ++i)
                    add_child(n, v->items[i], "[" + std::to_string(i) + "]", join(path, std::to_string(i)), depth);
                break;
            case ValueKind::Object:
                n.type = "object " + v->qualified_name();
                if (is_state_dict) n.summary = "(the model: see the tensor table)";
                else if (!v->text.empty() && !v->state) n.summary = "'" + clip(printable(v->text), limits_.max_text) + "'";  // a date, a path
                else {
                    if (v->args && !v->args->items.empty()) add_child(n, v->args, "(args)", join(path, "__args__"), depth);
                    if (v->state) {
                        if (v->state->kind == ValueKind::Dict)
                            for (const auto& [k, val] : v->state->entries) add_child(n, val, key_label(k), join(path, key_label(k)), depth);
                        else
                            add_child(n, v->state, "(state)", join(path, "__state__"), depth);
                    }
                    for (std::size_t i = 0; i < v->items.size(); ++i)
                        add_child(n, v->items[i], "[" + std::to_string(i) + "]", join(path, std::to_string(i)), depth);
                    for (const auto& [k, val] : v->entries) add_child(n, val, key_label(k), join(path, key_label(k)), depth);
                }
                break;
            default: break;
        }
        on_path_.erase(v);
        return n;
    }

private:
    static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

    void add_child(TreeNode& n, const Value* v, const std::string& key, const std::string& path, int depth) {
        // The root's keys are what a user looks for first (step, config, optimizer): never cut them short.
        std::size_t limit = depth == 0 ? std::max<std::size_t>(limits_.max_children, 64) : limits_.max_children;
        if (n.children.size() >= limit) {
            ++n.omitted;
            return;
        }
        n.children.push_back(build(v, key, path, depth + 1));
    }

    const TreeLimits& limits_;
    std::string state_dict_path_;
    bool root_is_state_dict_ = false;
    std::unordered_map<std::string, const TensorEntry*> tensor_names_;
    std::unordered_set<const Value*> on_path_;
};

void render(const TreeNode& n, int indent, std::string& out) {
    out.append(static_cast<std::size_t>(indent) * 2, ' ');
    out += (n.key.empty() ? std::string("(root)") : n.key) + ": " + n.type;
    if (!n.summary.empty()) out += "  " + n.summary;
    out += "\n";
    for (const auto& c : n.children) render(c, indent + 1, out);
    if (n.omitted) {
        out.append(static_cast<std::size_t>(indent + 1) * 2, ' ');
        out += "… " + std::to_string(n.omitted) + " more\n";
    }
}

nlohmann::ordered_json node_json(const TreeNode& n) {
    nlohmann::ordered_json j;
    j["key"] = n.key;
    j["type"] = n.type;
    j["summary"] = n.summary;
    if (!n.children.empty()) {
        j["children"] = nlohmann::ordered_json::array();
        for (const auto& c : n.children) j["children"].push_back(node_json(c));
    }
    if (n.omitted) j["omitted"] = n.omitted;
    return j;
}

}  // namespace

std::string severity_name(Severity s) { return s == Severity::Critical ? "critical" : "warning"; }

TreeNode object_tree(const Checkpoint& checkpoint, const TreeLimits& limits) {
    if (!checkpoint.root()) {
        TreeNode n;
        n.type = "dict";
        n.summary = std::to_string(checkpoint.tensors().size()) + " tensors (the state dict: see the tensor table)";
        for (const auto& [k, v] : checkpoint.metadata()) n.children.push_back({"__metadata__." + k, "str", "'" + clip(v, limits.max_text) + "'", {}, 0});
        return n;
    }
    return TreeBuilder(checkpoint, limits).build(checkpoint.root(), "", "", 0);
}

std::string render_tree(const TreeNode& root) {
    std::string out;
    render(root, 0, out);
    return out;
}

nlohmann::ordered_json inspect_json(const Checkpoint& c, const TreeLimits& limits) {
    nlohmann::ordered_json j = json_document(1);
    j["file"] = c.path().string();
    j["file_size"] = c.total_size();
    j["format"] = std::string(format_name(c.format()));
    if (c.sharded()) {
        j["index"] = c.index_path() ? nlohmann::ordered_json(c.index_path()->string()) : nlohmann::ordered_json();
        j["shards"] = nlohmann::ordered_json::array();
        for (const auto& s : c.shards())
            j["shards"].push_back({{"file", s.path.string()}, {"file_size", s.file->size()}, {"stored_tensors", s.stored_tensors}});
    }
    if (c.config()) j["config"] = c.config()->path.string();
    if (c.format() == Format::TorchZip || c.format() == Format::TorchLegacy) j["pickle_protocol"] = c.pickle_protocol();
    j["state_dict_path"] = c.state_dict_path() ? nlohmann::ordered_json(*c.state_dict_path()) : nlohmann::ordered_json();
    auto step = c.step();
    j["step"] = step ? nlohmann::ordered_json(*step) : nlohmann::ordered_json();
    // The same key and fields as a scan report's (docs/scan.schema.json "security").
    j["security"] = nlohmann::ordered_json::array();
    for (const auto& f : c.findings())
        j["security"].push_back({{"global", f.global}, {"severity", severity_name(f.severity)}, {"offset", f.offset},
                                 {"called", f.called}, {"reason", f.reason}});
    if (!c.metadata().empty()) {
        j["metadata"] = nlohmann::ordered_json::object();
        for (const auto& [k, v] : c.metadata()) j["metadata"][k] = v;
    }
    if (!c.notes().empty()) j["notes"] = c.notes();
    if (!c.warnings().empty()) j["warnings"] = c.warnings();
    j["tree"] = node_json(object_tree(c, limits));
    j["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : c.tensors()) {
        nlohmann::ordered_json tj;
        tj["name"] = t.name;
        tj["path"] = t.path;
        tj["in_state_dict"] = t.in_state_dict;
        tj["dtype"] = std::string(dtype_name(t.dtype));
        tj["shape"] = t.shape;
        tj["stride"] = t.stride;
        tj["storage_offset"] = t.storage_offset;
        tj["numel"] = t.numel();
        tj["bytes"] = t.nbytes();
        tj["storage_key"] = t.storage_key;
        if (c.sharded()) tj["shard"] = t.shard;
        if (!t.record.empty()) tj["record"] = t.record;
        tj["file_offset"] = t.encoding != TensorEncoding::Plain
                                ? t.packed.offset
                                : t.storage_file_offset + static_cast<std::uint64_t>(t.storage_offset) * dtype_size(t.dtype);
        if (t.encoding != TensorEncoding::Plain) {
            nlohmann::ordered_json p;
            p["encoding"] = std::string(encoding_name(t.encoding));
            p["stored_bytes"] = t.packed.nbytes;
            p["parts"] = t.packed.parts;
            if (!t.packed.scales.empty()) p["scales"] = t.packed.scales.size() == 1 ? nlohmann::ordered_json(t.packed.scales[0])
                                                                                   : nlohmann::ordered_json(t.packed.scales.size());
            p["reciprocal_scale"] = t.packed.reciprocal_scale;
            if (!t.packed.note.empty()) p["note"] = t.packed.note;
            tj["packed"] = std::move(p);
        }
        tj["shared_with"] = t.shared_with ? nlohmann::ordered_json(*t.shared_with) : nlohmann::ordered_json();
        tj["requires_grad"] = t.requires_grad;
        tj["is_parameter"] = t.is_parameter;
        j["tensors"].push_back(std::move(tj));
    }
    return j;
}

}  // namespace bitfsck::io
