#pragma once
// Which files of a run folder are checkpoints. Shared by every front (scan, timeline, the app)
// so that they agree on what a folder means.
#include <filesystem>
#include <string>
#include <vector>

namespace bitfsck::io {

// Checkpoint files directly inside `folder`, sorted by name: .pt .pth .ckpt .safetensors .gguf
// .bit2 by extension; .bin only when its first bytes look like a checkpoint, since training
// folders also hold token arrays named train.bin / val.bin. Throws FileError when unreadable.
std::vector<std::filesystem::path> checkpoint_files_in(const std::filesystem::path& folder);

// Command-line inputs: folders expanded with checkpoint_files_in, files taken as given.
std::vector<std::filesystem::path> expand_checkpoint_inputs(const std::vector<std::string>& inputs);

// Whether the first bytes are those of a format io/ reads (zip, legacy pickle, safetensors, GGUF).
bool starts_like_checkpoint(const std::filesystem::path& file);

}  // namespace bitfsck::io
