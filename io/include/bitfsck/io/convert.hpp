#pragma once
// Conversions between the formats bitfsck reads and writes: .pt, safetensors, i2s-packed .pt,
// Hugging Face packed safetensors, GGUF (TQ2_0 / TQ1_0) and .bit2. The rules live here, once, for
// every front: which tensors are packed (the BitLinear matrices, by tensor_names.hpp's roles),
// when a weight counts as ternary, what each layout can hold, and what GGUF files are named.
// Packing never guesses: a weight that is not exactly ternary is refused unless `quantize` asks
// for the absmean quantizer, and then its loss is reported.
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/progress.hpp"

namespace bitfsck::io {

enum class ConvertTarget { Pt, Safetensors, I2sPt, HfSafetensors, GgufTq2, GgufTq1, Bit2 };

// "pt", "safetensors", "i2s-pt", "hf-packed", "gguf-tq2_0", "gguf-tq1_0", "bit2" (and the
// aliases i2s, hf, gguf, tq2_0, tq1_0); nullopt for anything else.
std::optional<ConvertTarget> convert_target_from_name(std::string_view name, bool pack);
// From the output's extension (.pt .pth .bin .safetensors .gguf .bit2); nullopt when it says nothing.
std::optional<ConvertTarget> convert_target_from_extension(const std::filesystem::path& output, bool pack);
std::string_view convert_target_name(ConvertTarget t);  // "GGUF TQ2_0", "Hugging Face packed safetensors", ...
bool convert_target_packs(ConvertTarget t);

struct ConvertOptions {
    ConvertTarget target = ConvertTarget::Pt;
    bool unpack = false;     // store every tensor as floats (code × scale), even in GGUF / .bit2
    bool quantize = false;   // ternarise non-ternary weights with the absmean quantizer (lossy)
    // GGUF: general.architecture and llama.cpp's tensor names. Empty: "bitnet" when the model has
    // BitNet's sub-norms, else "llama".
    std::string gguf_architecture;
    ProgressCallback progress;  // tensors decoded and packed; false stops before anything is written (Cancelled)
};

// What happened to one tensor, for the report: a report must say what was written.
struct ConvertedTensor {
    std::string name;                 // in the input
    std::string output_name;          // in the output (GGUF: llama.cpp's name)
    std::vector<std::int64_t> shape;
    std::string stored_as;            // "TQ2_0", "F16", "float32", "i2s", "hf-packed", "bit2 ternary", ...
    bool packed = false;
    bool quantized = false;           // ternarised by the absmean quantizer
    QuantizeLoss loss;                // when quantized
    std::array<double, 3> fractions{};  // -1/0/+1 codes, when packed
    std::optional<float> scale;       // when packed with one scale
    std::size_t scales = 0;           // number of scales when packed
    double scale_rounding = 0;        // GGUF: largest relative change of a scale rounded to fp16
    std::string note;                 // why a ternary tensor was stored unpacked, a renamed tensor, ...
};

struct ConvertReport {
    std::filesystem::path output;
    ConvertTarget target = ConvertTarget::Pt;
    std::vector<ConvertedTensor> tensors;
    std::size_t packed = 0, quantized = 0, stored_unpacked = 0;  // stored_unpacked: meant to be packed, written as floats
    std::string gguf_architecture;    // GGUF outputs
    std::vector<std::string> notes;   // the input's notes and warnings
};

// A conversion refused before anything was written: weights that are not ternary (without
// `quantize`), a tensor that cannot be decoded, a dtype the target has no type for. The message
// lists every refused tensor.
class ConvertRefused : public Error {
public:
    explicit ConvertRefused(const std::string& message) : Error(message, ErrorKind::Usage) {}
};

// Converts `input` to `output` (atomically; never over an input). Throws ConvertRefused, or
// FormatError / FileError from reading and writing.
ConvertReport convert_checkpoint(const Checkpoint& input, const std::filesystem::path& output, const ConvertOptions& options);

// `bitfsck convert --json`: the report, opening as every bitfsck JSON document does.
nlohmann::ordered_json to_json(const ConvertReport& report);

}  // namespace bitfsck::io
