#pragma once
// Shared by the format readers: the state a reader fills in, and the walk over the object tree
// that turns tensor values into TensorEntry records and finds the state dict.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bitfsck/io/checkpoint.hpp"

namespace bitfsck::io {

struct StorageLocation {
    std::string record;            // zip record, or "" for formats without records
    std::uint64_t file_offset = 0;
    std::uint64_t nbytes = 0;
};

struct CheckpointBuilder {
    std::shared_ptr<MappedFile> file;
    Format format = Format::TorchZip;
    PickleDocument document;
    // Where a Storage value's bytes are; throws FormatError when they are not in the file.
    std::function<void(const Value& storage, StorageLocation& where)> resolve_storage;

    std::optional<std::string> state_dict_path;
    std::vector<TensorEntry> tensors;
    std::vector<std::pair<std::string, std::string>> metadata;
    std::vector<std::string> notes;
    std::vector<std::string> warnings;

    void for_each_storage(const std::function<void(const Value&)>& visit) const;
    // Finds the state dict, names every tensor of the tree, locates and validates its bytes.
    void collect_tensors();
    // Validates every entry's byte range against the file and marks shared storages.
    void validate_and_link();
    Checkpoint finish();
};

// After a torch or safetensors checkpoint is read: folds i2s triplets, Hugging Face packed
// pairs and the `__metadata__` shape table into logical packed entries (packed_detect.cpp).
void detect_packed_tensors(CheckpointBuilder& b);

}  // namespace bitfsck::io
