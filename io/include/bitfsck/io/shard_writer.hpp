#pragma once
// Writing a model in its input's shape: a rewrite that carries everything it does not replace
// over byte for byte, for single files and sharded checkpoints alike, and fresh shards laid out
// as a sharded input's were. Sharded outputs are a folder (written under a temporary name and
// renamed when complete) with the shards under the names Hugging Face gives them, their index,
// and the input folder's other small files (config.json, tokenizer files) copied.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/pt_writer.hpp"

namespace bitfsck::io {

// Rewrites `source` to `output` with `replacements` (state-dict names -> same dtype and shape):
// torch checkpoints through rewrite_checkpoint_pt, safetensors through rewrite_safetensors, a
// sharded checkpoint shard by shard into the folder `output`, its index copied. Refuses to
// replace any of `inputs` or of the source's files.
// Returns what rewrite_checkpoint_pt reports (for shards: their dropped keys together).
RewriteReport rewrite_checkpoint(const Checkpoint& source, const std::filesystem::path& output,
                                 const std::map<std::string, ReplacementTensor>& replacements, const RewriteOptions& options = {},
                                 std::vector<std::filesystem::path> inputs = {});

// Fresh shards: by_shard[i] goes into a file named after source.shards()[i] in `format`
// (Safetensors or TorchZip: "model-0000N-of-0000M.safetensors" or "pytorch_model-….bin"),
// with an index of the same kind.
void write_shards_like(const Checkpoint& source, const std::filesystem::path& output,
                       const std::vector<std::vector<OutputTensor>>& by_shard, Format format);

// Refuses (FileError) an output name for a sharded checkpoint that promises one file
// (a .pt/.bin/.safetensors/.gguf/.bit2 extension): sharded outputs are folders.
void ensure_folder_output(const std::filesystem::path& output);

}  // namespace bitfsck::io
