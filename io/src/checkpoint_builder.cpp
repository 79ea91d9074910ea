#include "checkpoint_builder.hpp"

#include <array>
#include <deque>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "bitfsck/io/error.hpp"

namespace bitfsck::io {
namespace {

// Hostile pickles can nest deeply or share containers exponentially; every walk is bounded.
constexpr int kMaxWalkDepth = 1000;
constexpr std::size_t kMaxTensors = 10'000'000;

// Where a checkpoint keeps its weights, most specific first. Training scripts use all of these.
constexpr std::array<std::string_view, 14> kStateDictKeys = {
    "model_state_dict", "state_dict", "model", "module", "net", "network", "model_ema",
    "ema", "ema_state_dict", "weights", "params", "student", "generator", "transformer",
};

std::string key_text(const Value* key) {
    if (!key) return "?";
    switch (key->kind) {
        case ValueKind::String: return key->text;
        case ValueKind::Int: return std::to_string(key->integer);
        case ValueKind::BigInt: return key->text;
        default: return "?";
    }
}

std::string join(const std::string& path, const std::string& part) { return path.empty() ? part : path + "." + part; }

const Value* unwrap_tensor(const Value* v) { return v && v->kind == ValueKind::Tensor ? v : nullptr; }

// A dict whose values are (almost) all tensors: the shape of a state dict.
bool looks_like_state_dict(const Value* v) {
    if (!v || v->kind != ValueKind::Dict || v->entries.empty()) return false;
    std::size_t tensors = 0;
    for (const auto& [k, val] : v->entries) {
        if (!k || k->kind != ValueKind::String) return false;
        if (unwrap_tensor(val)) ++tensors;
    }
    return tensors > 0 && tensors * 2 >= v->entries.size();
}

// A whole nn.Module pickled with torch.save(model): an object whose state has _parameters.
bool looks_like_module(const Value* v) {
    return v && v->kind == ValueKind::Object && v->state && v->state->kind == ValueKind::Dict &&
           v->state->get("_parameters") != nullptr;
}

struct Found {
    const Value* container = nullptr;
    std::string path;
    bool is_module = false;
};

Found find_state_dict(const Value* root) {
    if (looks_like_state_dict(root)) return {root, "", false};
    if (looks_like_module(root)) return {root, "", true};
    // Breadth-first through dicts, known keys first at each level, so {'model': sd, 'ema': sd2}
    // picks 'model' and a state dict nested as state_dict.module is still found.
    struct Item { const Value* v; std::string path; int depth; };
    std::deque<Item> queue{{root, "", 0}};
    std::unordered_set<const Value*> seen;
    while (!queue.empty()) {
        Item it = queue.front();
        queue.pop_front();
        if (!it.v || it.v->kind != ValueKind::Dict || it.depth > 4 || !seen.insert(it.v).second) continue;
        std::vector<std::pair<int, std::pair<const Value*, std::string>>> children;
        for (const auto& [k, val] : it.v->entries) {
            std::string name = key_text(k);
            int rank = static_cast<int>(kStateDictKeys.size());
            for (std::size_t i = 0; i < kStateDictKeys.size(); ++i)
                if (name == kStateDictKeys[i]) rank = static_cast<int>(i);
            if (name.find("optim") != std::string::npos || name.find("scheduler") != std::string::npos) rank += 100;
            children.push_back({rank, {val, join(it.path, name)}});
        }
        std::stable_sort(children.begin(), children.end(), [](auto& a, auto& b) { return a.first < b.first; });
        for (auto& [rank, child] : children) {
            if (rank >= 100) continue;
            if (looks_like_state_dict(child.first)) return {child.first, child.second, false};
            if (looks_like_module(child.first)) return {child.first, child.second, true};
        }
        for (auto& [rank, child] : children) queue.push_back({child.first, child.second, it.depth + 1});
    }
    return {};
}

class TensorCollector {
public:
    TensorCollector(CheckpointBuilder& b) : b_(b) {}

    void add(const Value* tensor, const std::string& name, const std::string& path, bool in_state_dict) {
        if (b_.tensors.size() >= kMaxTensors)
            throw FormatError(b_.file->display_name(), "more than " + std::to_string(kMaxTensors) + " tensors");
        const Value* storage = tensor->storage;
        if (!storage || storage->kind != ValueKind::Storage)
            throw FormatError(b_.file->display_name(), "tensor '" + name + "' has no storage");
        TensorEntry e;
        e.name = name;
        e.path = path;
        e.in_state_dict = in_state_dict;
        e.dtype = storage->dtype;
        e.shape = tensor->shape;
        e.stride = tensor->stride;
        e.storage_offset = tensor->storage_offset;
        e.storage_key = storage->text;
        e.requires_grad = tensor->requires_grad;
        e.is_parameter = tensor->is_parameter;
        const StorageLocation& where = locate(*storage);
        e.record = where.record;
        e.storage_file_offset = where.file_offset;
        e.storage_nbytes = where.nbytes;
        b_.tensors.push_back(std::move(e));
    }

    // Where a storage's bytes are, checked once per storage against the element count the pickle
    // declares for it, whichever tensor views it (or none): torch.load makes a storage of the
    // declared size over the record, so a shorter record is read past its end and a longer one
    // holds bytes no tensor can reach.
    const StorageLocation& locate(const Value& storage) {
        auto it = locations_.find(storage.text);
        if (it != locations_.end()) return it->second;
        StorageLocation where;
        b_.resolve_storage(storage, where);
        if (storage.record_numel >= 0) {
            const std::string name = "storage '" + storage.text + "'";
            const std::string held = where.record.empty() ? "the file stores " : "its record " + where.record + " holds ";
            const auto elem = static_cast<std::uint64_t>(dtype_size(storage.dtype));
            const auto numel = static_cast<std::uint64_t>(storage.record_numel);
            const std::string declared = std::to_string(numel) + " " + std::string(dtype_name(storage.dtype)) + " element(s)";
            if (numel > where.nbytes / elem)
                throw FormatError(b_.file->display_name(), name + " declares " + declared + " (" +
                                                               (numel > std::numeric_limits<std::uint64_t>::max() / elem ? std::string("too many bytes")
                                                                                          : std::to_string(numel * elem) + " bytes") +
                                                               ") but " + held + std::to_string(where.nbytes) +
                                                               " bytes: torch.load would read past them");
            if (numel * elem < where.nbytes) {
                b_.warnings.push_back(name + ": " + held + std::to_string(where.nbytes) + " bytes, " +
                                   std::to_string(where.nbytes - numel * elem) + " more than its " + declared +
                                   " need; tensors are read within the declared elements, as torch.load does");
                where.nbytes = numel * elem;
            }
        }
        return locations_.emplace(storage.text, where).first->second;
    }

    void walk_module(const Value* module, const std::string& prefix, int depth) {
        if (depth > kMaxWalkDepth || !module || !module->state || !visited_.insert(module).second) return;
        const Value* state = module->state;
        for (const char* slot : {"_parameters", "_buffers"}) {
            const Value* d = state->get(slot);
            if (!d || d->kind != ValueKind::Dict) continue;
            for (const auto& [k, v] : d->entries)
                if (const Value* t = unwrap_tensor(v)) add(t, join(prefix, key_text(k)), join(prefix, key_text(k)), true);
        }
        if (const Value* mods = state->get("_modules"); mods && mods->kind == ValueKind::Dict)
            for (const auto& [k, v] : mods->entries) walk_module(v, join(prefix, key_text(k)), depth + 1);
    }

    void walk(const Value* v, const std::string& path, int depth) {
        if (!v || depth > kMaxWalkDepth) return;
        if (v->kind == ValueKind::Tensor) {
            add(v, path, path, false);
            return;
        }
        if (!visited_.insert(v).second) return;
        switch (v->kind) {
            case ValueKind::Dict:
                for (const auto& [k, val] : v->entries) walk(val, join(path, key_text(k)), depth + 1);
                walk(v->state, join(path, "__state__"), depth + 1);
                break;
            case ValueKind::List:
            case ValueKind::Tuple:
            case ValueKind::Set:
                for (std::size_t i = 0; i < v->items.size(); ++i) walk(v->items[i], join(path, std::to_string(i)), depth + 1);
                break;
            case ValueKind::Object:
                walk(v->args, join(path, "__args__"), depth + 1);
                if (v->state && v->state->kind == ValueKind::Dict) {
                    if (visited_.insert(v->state).second)
                        for (const auto& [k, val] : v->state->entries) walk(val, join(path, key_text(k)), depth + 1);
                } else {
                    walk(v->state, join(path, "__state__"), depth + 1);
                }
                for (std::size_t i = 0; i < v->items.size(); ++i) walk(v->items[i], join(path, std::to_string(i)), depth + 1);
                for (const auto& [k, val] : v->entries) walk(val, join(path, key_text(k)), depth + 1);
                break;
            default:
                break;
        }
    }

    void mark_visited(const Value* v) { visited_.insert(v); }

private:
    CheckpointBuilder& b_;
    std::unordered_set<const Value*> visited_;
    std::unordered_map<std::string, StorageLocation> locations_;
};

}  // namespace

void CheckpointBuilder::for_each_storage(const std::function<void(const Value&)>& visit) const {
    // Storages only ever appear inside tensors or as persistent ids; a flat pass over the tree
    // with an explicit stack avoids recursion on hostile nesting.
    std::vector<std::pair<const Value*, int>> stack{{document.root, 0}};
    std::unordered_set<const Value*> seen;
    while (!stack.empty()) {
        // Not a structured binding: clang before 16 cannot capture those in the lambda below.
        const Value* v = stack.back().first;
        const int depth = stack.back().second;
        stack.pop_back();
        if (!v || depth > kMaxWalkDepth || !seen.insert(v).second) continue;
        if (v->kind == ValueKind::Storage) visit(*v);
        auto push = [&](const Value* c) { if (c) stack.push_back({c, depth + 1}); };
        push(v->storage);
        push(v->args);
        push(v->state);
        for (const Value* c : v->items) push(c);
        for (const auto& [k, c] : v->entries) push(c);
    }
}

void CheckpointBuilder::collect_tensors() {
    TensorCollector collector(*this);
    Found sd = find_state_dict(document.root);
    if (sd.container) {
        state_dict_path = sd.path;
        if (sd.is_module) {
            collector.walk_module(sd.container, "", 0);
        } else {
            for (const auto& [k, v] : sd.container->entries)
                if (const Value* t = unwrap_tensor(v)) collector.add(t, key_text(k), join(sd.path, key_text(k)), true);
        }
        collector.mark_visited(sd.container);
    }
    collector.walk(document.root, "", 0);
    // Storages no tensor views (a bare torch.save(storage)) are checked all the same.
    for_each_storage([&](const Value& s) { collector.locate(s); });
    validate_and_link();
}

void CheckpointBuilder::validate_and_link() {
    std::unordered_map<std::string, std::string> first_user;
    for (auto& t : tensors) {
        if (t.encoding != TensorEncoding::Plain) continue;  // packed readers validate their own
        TensorData check(file_of(t), t);  // throws FormatError when the storage is too short
        auto [it, inserted] = first_user.emplace(t.storage_key, t.name);
        if (!inserted) t.shared_with = it->second;
    }
}

Checkpoint CheckpointBuilder::finish() {
    Checkpoint c;
    if (shards.empty()) shards.push_back(CheckpointShard{file->path(), file, format, tensors.size()});
    c.path_ = opened_path.empty() ? file->path() : opened_path;
    c.shards_ = std::move(shards);
    c.index_path_ = std::move(index_path);
    c.config_ = std::move(config);
    c.format_ = format;
    c.findings_ = findings.empty() ? document.findings : std::move(findings);
    c.document_ = std::move(document);
    c.other_documents_ = std::move(other_documents);
    c.state_dict_path_ = state_dict_path;
    c.tensors_ = std::move(tensors);
    c.metadata_ = std::move(metadata);
    c.notes_ = std::move(notes);
    c.warnings_ = std::move(warnings);
    return c;
}

}  // namespace bitfsck::io
