#pragma once
// config.json beside a checkpoint's weights, as Hugging Face `save_pretrained` writes it. Read,
// never required. Its quantization_config is what says how a BitNet weight_scale is meant
// (transformers integrations/bitnet.py); its sizes feed model/'s config inference.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bitfsck::io {

// quantization_config with quant_method "bitnet" (transformers BitNetQuantConfig). The defaults
// are BitNetQuantConfig's own.
struct BitNetQuantization {
    std::string linear_class = "bitlinear";     // "bitlinear" | "autobitlinear"
    std::string quantization_mode = "offline";  // "offline" | "online"
    std::vector<std::string> modules_to_not_convert;

    // BitLinear stores 1/absmean and divides (post_quant_process: y / (input_scale · weight_scale));
    // AutoBitLinear offline stores absmean and multiplies (output · weight_scale).
    bool scale_divides() const { return linear_class != "autobitlinear"; }
    // AutoBitLinear online keeps latent full-precision weights and quantizes them in forward.
    bool online() const { return linear_class == "autobitlinear" && quantization_mode == "online"; }
    // "BitLinear (linear_class bitlinear): weight_scale = 1/absmean, values = code / weight_scale".
    std::string describe() const;
};

struct HfConfig {
    std::filesystem::path path;
    nlohmann::json json;                       // the whole document (an object)
    std::string model_type;                    // "bitnet", "llama", ... ("" when absent)
    std::vector<std::string> architectures;    // "BitNetForCausalLM", ...
    std::string quant_method;                  // quantization_config.quant_method, "" when absent
    std::optional<BitNetQuantization> bitnet;  // set when quant_method is "bitnet"
    std::vector<std::string> notes;            // what was odd about it (unknown values, wrong types)
};

// The config.json in the folder of `weights` (a file, an index or a folder), if there is one.
// A config.json that is not a JSON object is reported in the notes of an otherwise empty result
// rather than thrown: the weights are readable without it.
std::optional<HfConfig> read_hf_config_beside(const std::filesystem::path& weights);

// Parses config.json text; `origin` names it in notes.
HfConfig parse_hf_config(const std::string& text, const std::filesystem::path& origin);

}  // namespace bitfsck::io
