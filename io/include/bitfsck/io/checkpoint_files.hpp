#pragma once
// Which files of a folder are checkpoints, and which files make up one model. Shared by every
// front (scan, timeline, the app) so that they agree on what a folder means.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bitfsck::io {

// `model-00002-of-00005.safetensors`: prefix "model", extension ".safetensors", index 2, count 5
// (the names transformers' save_pretrained and huggingface_hub give shards).
struct ShardName {
    std::string prefix;
    std::string extension;
    int index = 0;
    int count = 0;
};
std::optional<ShardName> shard_name(const std::filesystem::path& file);

// The files of one model in a folder, as Hugging Face save_pretrained leaves them: a sharded
// index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) with its shards, a set
// of `-0000N-of-0000M` shards without an index, or a single weights file.
struct ModelFiles {
    std::filesystem::path folder;
    std::optional<std::filesystem::path> index;
    std::vector<std::filesystem::path> weights;  // the shards in name order, or the one weights file
    std::vector<std::string> notes;              // what else was there and was not taken, and why
};

// The model in `folder`. safetensors is preferred to pickles when a folder has both (as
// transformers does); training-state files beside a model's weights (optimizer.pt, scheduler.pt,
// rng_state.pth, training_args.bin) are not the model. Throws FormatError naming the folder when
// it holds no checkpoint, or several that are not one model.
ModelFiles model_files_in(const std::filesystem::path& folder);

// Whether `folder` holds one model as Hugging Face writes it (an index, a shard set, or a
// weights file with a Hugging Face name such as model.safetensors): what makes a subfolder of a
// run (`checkpoint-500/`) one checkpoint of it.
bool is_model_folder(const std::filesystem::path& folder);

// Whether `file` is a sharded checkpoint's index (`*.index.json`).
bool is_shard_index(const std::filesystem::path& file);

// The checkpoints directly inside a run folder, sorted by name: files with the extensions .pt
// .pth .ckpt .safetensors .gguf .bit2, .bin only when its first bytes look like a checkpoint
// (training folders also hold token arrays named train.bin / val.bin), and subfolders that are
// model folders (is_model_folder). A set of shards counts once, by its index (or its first shard
// when it has none). Throws FileError when unreadable.
std::vector<std::filesystem::path> checkpoint_files_in(const std::filesystem::path& folder);

// Command-line inputs: a folder that is itself one sharded model stays one input; other folders
// are expanded with checkpoint_files_in; files are taken as given.
std::vector<std::filesystem::path> expand_checkpoint_inputs(const std::vector<std::string>& inputs);

// Whether the first bytes are those of a format io/ reads (zip, legacy pickle, safetensors, GGUF).
bool starts_like_checkpoint(const std::filesystem::path& file);

// The bytes a checkpoint input occupies: a file's size, or the sum over a model folder's or an
// index's weights files. 0 when unreadable.
std::uint64_t checkpoint_input_size(const std::filesystem::path& input);

}  // namespace bitfsck::io
