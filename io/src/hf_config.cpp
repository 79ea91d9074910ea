#include "bitfsck/io/hf_config.hpp"

#include <fstream>
#include <sstream>
#include <system_error>

namespace bitfsck::io {

namespace fs = std::filesystem;

std::string BitNetQuantization::describe() const {
    if (online()) return "AutoBitLinear online (linear_class autobitlinear, quantization_mode online): latent weights, quantized in forward";
    if (scale_divides())
        return "BitLinear (linear_class " + linear_class + "): weight_scale holds 1/absmean, values = code / weight_scale";
    return "AutoBitLinear offline (linear_class autobitlinear): weight_scale holds absmean, values = code × weight_scale";
}

namespace {

std::string string_or(const nlohmann::json& j, const char* key, const std::string& fallback, const std::string& origin,
                      std::vector<std::string>& notes) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_string()) {
        notes.push_back(origin + ": " + key + " is not a string; the default '" + fallback + "' is assumed");
        return fallback;
    }
    return it->get<std::string>();
}

}  // namespace

HfConfig parse_hf_config(const std::string& text, const fs::path& origin) {
    HfConfig c;
    c.path = origin;
    const std::string where = origin.string();
    c.json = nlohmann::json::parse(text, nullptr, false);
    if (c.json.is_discarded() || !c.json.is_object()) {
        c.json = nlohmann::json::object();
        c.notes.push_back(where + ": not a JSON object; ignored");
        return c;
    }
    c.model_type = string_or(c.json, "model_type", "", where, c.notes);
    if (auto a = c.json.find("architectures"); a != c.json.end() && a->is_array())
        for (const auto& name : *a)
            if (name.is_string()) c.architectures.push_back(name.get<std::string>());

    auto q = c.json.find("quantization_config");
    if (q == c.json.end() || q->is_null()) return c;
    if (!q->is_object()) {
        c.notes.push_back(where + ": quantization_config is not an object; ignored");
        return c;
    }
    c.quant_method = string_or(*q, "quant_method", "", where, c.notes);
    if (c.quant_method != "bitnet") return c;

    BitNetQuantization b;
    b.linear_class = string_or(*q, "linear_class", b.linear_class, where, c.notes);
    b.quantization_mode = string_or(*q, "quantization_mode", b.quantization_mode, where, c.notes);
    // transformers refuses any other value (BitNetQuantConfig.__init__): so do we, by ignoring it.
    if (b.linear_class != "bitlinear" && b.linear_class != "autobitlinear") {
        c.notes.push_back(where + ": quantization_config.linear_class '" + b.linear_class +
                          "' is neither bitlinear nor autobitlinear (transformers refuses it); the scale convention is not taken from it");
        return c;
    }
    if (b.quantization_mode != "online" && b.quantization_mode != "offline") {
        c.notes.push_back(where + ": quantization_config.quantization_mode '" + b.quantization_mode +
                          "' is neither online nor offline (transformers refuses it); the scale convention is not taken from it");
        return c;
    }
    if (auto m = q->find("modules_to_not_convert"); m != q->end() && m->is_array())
        for (const auto& name : *m)
            if (name.is_string()) b.modules_to_not_convert.push_back(name.get<std::string>());
    c.bitnet = std::move(b);
    return c;
}

std::optional<HfConfig> read_hf_config_beside(const fs::path& weights) {
    std::error_code ec;
    const fs::path folder = fs::is_directory(weights, ec) ? weights : weights.parent_path();
    const fs::path file = (folder.empty() ? fs::path(".") : folder) / "config.json";
    if (!fs::is_regular_file(file, ec)) return std::nullopt;
    std::ifstream in(file, std::ios::binary);
    if (!in) return std::nullopt;
    // config.json files are a few KB; anything past 16 MB is not one.
    constexpr std::uintmax_t kMaxConfig = 16u << 20;
    if (fs::file_size(file, ec) > kMaxConfig) {
        HfConfig c;
        c.path = file;
        c.json = nlohmann::json::object();
        c.notes.push_back(file.string() + ": larger than 16 MB, not read as a model config");
        return c;
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_hf_config(text.str(), file);
}

}  // namespace bitfsck::io
