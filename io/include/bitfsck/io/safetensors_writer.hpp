#pragma once
// Writing safetensors files (huggingface/safetensors): an 8-byte little-endian header length, a
// JSON header padded with spaces to a multiple of 8 bytes, then the tensors' bytes back to back.
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bitfsck/io/pt_writer.hpp"

namespace bitfsck::io {

// Writes `tensors` in the given order (the header lists them in that order too; a tied tensor
// gets a copy of the data it is tied to, as safetensors has no sharing) with `metadata` as
// "__metadata__" when non-empty. Atomic (temporary file, rename); refuses to replace `inputs`.
// Throws bitfsck::Error (FileError for I/O).
void write_safetensors(const std::filesystem::path& path, const std::vector<OutputTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata = {},
                       const std::vector<std::filesystem::path>& inputs = {});

// Rewrites the safetensors checkpoint `source` to `path` with the tensors named in `replacements`
// holding new bytes (same dtype and shape) and every other tensor and the metadata as they are.
// Atomic; refuses to replace `inputs` (the source included).
void rewrite_safetensors(const Checkpoint& source, const std::filesystem::path& path,
                         const std::map<std::string, ReplacementTensor>& replacements,
                         std::vector<std::filesystem::path> inputs = {});

}  // namespace bitfsck::io
