#pragma once
// GGUF (llama.cpp / ggml) v2 and v3: type ids and a writer for ternary exports. The reader is
// behind Checkpoint::open (Format::Gguf). Dimensions in GGUF are innermost-first; everything
// here uses PyTorch order ([out, in]) and the writer reverses them.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace bitfsck::io {

// ggml_type ids bitfsck knows by name (ggml.h). 36 is I2_S in bitnet.cpp's fork but
// IQ4_NL_4_4 in upstream ggml; the reader decides from metadata and sizes.
enum class GgmlType : std::uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, I2_S = 36,
    TL1 = 38, TL2 = 39,  // bitnet.cpp's fork; upstream: 38 reserved, 39 MXFP4
};
std::string ggml_type_name(std::uint32_t type);

// GGUF metadata value types (gguf.h gguf_type).
enum class GgufValueType : std::uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
    U64 = 10, I64 = 11, F64 = 12,
};

// A metadata value the writer can emit.
using GgufMeta = std::variant<std::string, std::uint32_t, std::int32_t, std::uint64_t, float, bool, std::vector<std::string>>;

struct GgufTensorOut {
    std::string name;
    std::vector<std::int64_t> shape;  // PyTorch order
    GgmlType type = GgmlType::F32;
    std::vector<std::uint8_t> data;   // exactly the bytes ggml expects for type and shape
};

// Writes a GGUF v3 file (atomically: temporary file renamed into place). general.alignment is
// written when it differs from 32. Throws bitfsck::Error.
void write_gguf(const std::filesystem::path& path, const std::vector<std::pair<std::string, GgufMeta>>& metadata,
                const std::vector<GgufTensorOut>& tensors, std::uint32_t alignment = 32);

}  // namespace bitfsck::io
