#pragma once
// Shared by the format readers: the state a reader fills in, and the walk over the object tree
// that turns tensor values into TensorEntry records and finds the state dict.
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/checkpoint_files.hpp"

namespace bitfsck::io {

struct StorageLocation {
    std::string record;            // zip record, or "" for formats without records
    std::uint64_t file_offset = 0;
    std::uint64_t nbytes = 0;
};

struct CheckpointBuilder {
    std::shared_ptr<MappedFile> file;   // the file a format reader is reading
    Format format = Format::TorchZip;
    PickleDocument document;
    // Every file of the checkpoint, indexed by TensorEntry::shard; finish() makes it {file} when
    // a reader left it empty.
    std::vector<CheckpointShard> shards;
    std::vector<PickleDocument> other_documents;
    std::vector<SecurityFinding> findings;  // finish() uses document.findings when empty
    std::filesystem::path opened_path;      // what the user named; finish() uses file's path when empty
    std::optional<std::filesystem::path> index_path;
    std::optional<HfConfig> config;
    // Where a Storage value's bytes are; throws FormatError when they are not in the file.
    std::function<void(const Value& storage, StorageLocation& where)> resolve_storage;

    std::optional<std::string> state_dict_path;
    std::vector<TensorEntry> tensors;
    std::vector<std::pair<std::string, std::string>> metadata;
    std::vector<std::string> notes;
    std::vector<std::string> warnings;

    const MappedFile& file_of(const TensorEntry& t) const { return shards.empty() ? *file : *shards.at(t.shard).file; }

    void for_each_storage(const std::function<void(const Value&)>& visit) const;
    // Finds the state dict, names every tensor of the tree, locates and validates its bytes.
    void collect_tensors();
    // Validates every entry's byte range against the file and marks shared storages.
    void validate_and_link();
    Checkpoint finish();
};

// After a torch or safetensors checkpoint is read: folds i2s triplets, Hugging Face packed
// pairs and the `__metadata__` shape table into logical packed entries (packed_detect.cpp).
// The weight_scale convention comes from b.config's quantization_config when it has one, else
// from the scales' magnitude; the two are cross-checked.
void detect_packed_tensors(CheckpointBuilder& b);

// Reads one file into a builder (format from the content), without folding packed groups.
CheckpointBuilder read_checkpoint_file(const std::filesystem::path& path, const OpenOptions& options);

// Sharded checkpoints (sharded_checkpoint.cpp): every shard of `model` read and merged into one
// builder, checked against the index (or the shard names' count when there is none). Packed
// groups are folded afterwards, across shards, by detect_packed_tensors.
CheckpointBuilder read_sharded_checkpoint(const ModelFiles& model, const OpenOptions& options);

}  // namespace bitfsck::io
