// Sharded checkpoints as one model: every shard read as a file of its own, then merged, with
// the checks that tell a whole model from a broken or mixed set of files.
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/shard_index.hpp"
#include "checkpoint_builder.hpp"

namespace bitfsck::io {

namespace fs = std::filesystem;

namespace {

std::string file_name(const fs::path& p) { return p.filename().string(); }

// Without an index, the names are all there is: model-00001-of-00003 … model-00003-of-00003.
void check_shard_names(const ModelFiles& model) {
    std::set<int> seen;
    std::optional<ShardName> first;
    for (const auto& f : model.weights) {
        auto s = shard_name(f);
        if (!s) return;  // not named as shards: nothing to check against
        if (!first) first = s;
        if (s->count != first->count || s->prefix != first->prefix || s->extension != first->extension)
            throw FormatError(model.folder.string(), file_name(model.weights.front()) + " and " + file_name(f) +
                                                          " are shards of different sets");
        seen.insert(s->index);
    }
    if (!first) return;
    for (int i = 1; i <= first->count; ++i) {
        if (seen.count(i)) continue;
        char name[32];
        std::snprintf(name, sizeof name, "-%05d-of-%05d", i, first->count);
        throw FormatError(model.folder.string(), "shard " + first->prefix + name + first->extension + " of " +
                                                      std::to_string(first->count) + " is missing");
    }
}

}  // namespace

CheckpointBuilder read_sharded_checkpoint(const ModelFiles& model, const OpenOptions& options) {
    std::optional<ShardIndex> index;
    if (model.index) index = read_shard_index(*model.index);
    const std::string where = model.index ? model.index->string() : model.folder.string();
    for (const auto& f : model.weights) {
        std::error_code ec;
        if (!fs::is_regular_file(f, ec))
            throw FormatError(where, "lists shard " + file_name(f) + ", which is missing");
    }
    check_shard_names(model);

    CheckpointBuilder merged;
    merged.index_path = model.index;
    std::unordered_map<std::string, std::uint32_t> stored_in;  // state-dict tensor -> shard
    for (std::uint32_t i = 0; i < model.weights.size(); ++i) {
        CheckpointBuilder shard = read_checkpoint_file(model.weights[i], options);
        const std::string shard_file = shard.file->display_name();
        if (shard.format == Format::Gguf || shard.format == Format::Bit2)
            throw FormatError(shard_file, "a " + std::string(format_name(shard.format)) +
                                              " file cannot be a shard of a Hugging Face checkpoint");
        if (i == 0) {
            merged.file = shard.file;
            merged.format = shard.format;
            merged.state_dict_path = shard.state_dict_path;
        } else if (shard.format != merged.format &&
                   !((shard.format == Format::TorchZip || shard.format == Format::TorchLegacy) &&
                     (merged.format == Format::TorchZip || merged.format == Format::TorchLegacy))) {
            throw FormatError(where, file_name(model.weights[0]) + " is " + std::string(format_name(merged.format)) + " but " +
                                         file_name(model.weights[i]) + " is " + std::string(format_name(shard.format)) +
                                         ": shards of different checkpoints");
        }
        merged.shards.push_back(CheckpointShard{model.weights[i], shard.file, shard.format, shard.tensors.size()});
        for (auto& t : shard.tensors) {
            t.shard = i;
            if (t.in_state_dict) {
                auto [it, fresh] = stored_in.emplace(t.name, i);
                if (!fresh)
                    throw FormatError(where, "tensor '" + t.name + "' is stored twice, in " + file_name(model.weights[it->second]) +
                                                 " and in " + file_name(model.weights[i]));
            }
            merged.tensors.push_back(std::move(t));
        }
        for (auto& f : shard.document.findings) {
            f.reason = file_name(model.weights[i]) + ": " + f.reason;
            merged.findings.push_back(std::move(f));
        }
        // A plain pair, not a structured binding: clang 14 (the fuzz build) cannot capture bindings.
        for (auto& entry : shard.metadata) {
            const auto& key = entry.first;
            if (std::none_of(merged.metadata.begin(), merged.metadata.end(), [&](const auto& kv) { return kv.first == key; }))
                merged.metadata.emplace_back(std::move(entry));
        }
        for (auto& n : shard.notes) merged.notes.push_back(file_name(model.weights[i]) + ": " + n);
        for (auto& w : shard.warnings) merged.warnings.push_back(file_name(model.weights[i]) + ": " + w);
        if (i == 0) merged.document = std::move(shard.document);
        else merged.other_documents.push_back(std::move(shard.document));
    }

    if (index) {
        std::uint64_t data_bytes = 0;
        std::map<std::string, std::uint32_t> listed;
        for (const auto& [tensor, file] : index->weight_map) {
            const auto shard = static_cast<std::uint32_t>(
                std::find(model.weights.begin(), model.weights.end(), index->path.parent_path() / file) - model.weights.begin());
            listed.emplace(tensor, shard);
            auto it = stored_in.find(tensor);
            if (it == stored_in.end())
                throw FormatError(where, "lists tensor '" + tensor + "' in " + file + ", which does not hold it");
            if (it->second != shard)
                throw FormatError(where, "lists tensor '" + tensor + "' in " + file + ", but it is stored in " +
                                             file_name(model.weights[it->second]));
        }
        for (const auto& t : merged.tensors) {
            if (!t.in_state_dict) continue;
            if (!listed.count(t.name))
                throw FormatError(where, file_name(model.weights[t.shard]) + " holds tensor '" + t.name +
                                             "', which the index does not list: a shard of another model?");
            data_bytes += t.stored_nbytes();
        }
        // transformers counts the bytes of every stored tensor; other writers round or add padding.
        if (index->total_size && *index->total_size != data_bytes)
            merged.notes.push_back(file_name(*model.index) + ": metadata.total_size is " + std::to_string(*index->total_size) +
                                   " bytes; the shards' tensors hold " + std::to_string(data_bytes));
    }
    merged.notes.insert(merged.notes.begin(),
                        "sharded checkpoint: " + std::to_string(model.weights.size()) + " shards" +
                            (model.index ? " listed by " + file_name(*model.index) : std::string(" without an index")) + ", " +
                            std::to_string(merged.tensors.size()) + " stored tensors");
    return merged;
}

}  // namespace bitfsck::io
