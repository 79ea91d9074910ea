#pragma once
// Token id files for the probes: raw little-endian ids (nanoGPT's train.bin/val.bin are uint16) or
// NumPy .npy arrays (detected by their magic, any shape, flattened in C order).
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string_view>
#include <vector>

namespace bitfsck::model {

enum class TokenDType : std::uint8_t { U16, U32 };
// "u16"/"uint16" or "u32"/"uint32"; throws ModelError otherwise.
TokenDType parse_token_dtype(std::string_view s);

// Reads at most max_tokens ids from the start of the file. Throws io::FileError when the file cannot
// be opened, ModelError (naming the file) for a malformed .npy or a size that is not whole ids.
std::vector<std::int64_t> read_token_file(const std::filesystem::path& path, TokenDType dtype,
                                          std::int64_t max_tokens = std::numeric_limits<std::int64_t>::max());

}  // namespace bitfsck::model
