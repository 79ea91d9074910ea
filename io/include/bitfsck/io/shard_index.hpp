#pragma once
// The index of a sharded Hugging Face checkpoint (`model.safetensors.index.json`,
// `pytorch_model.bin.index.json`): {"metadata": {"total_size": N}, "weight_map": {tensor: file}},
// as transformers' save_pretrained and huggingface_hub's split_state_dict_into_shards write it.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bitfsck::io {

struct ShardIndex {
    std::filesystem::path path;
    std::optional<std::uint64_t> total_size;                     // metadata.total_size: bytes of tensor data
    std::vector<std::pair<std::string, std::string>> weight_map;  // tensor -> shard file name, in the index's order
    std::vector<std::filesystem::path> shards;                   // the distinct files, sorted, beside the index
};

// Throws FormatError naming the file when it is not such an index (not JSON, no weight_map, a
// file name with a folder in it).
ShardIndex read_shard_index(const std::filesystem::path& path);

// Writes an index for `weight_map` (tensor -> shard file name) atomically, with total_size.
void write_shard_index(const std::filesystem::path& path, const std::map<std::string, std::string>& weight_map,
                       std::uint64_t total_size);

}  // namespace bitfsck::io
