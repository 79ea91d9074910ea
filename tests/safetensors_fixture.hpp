#pragma once
// Writes small float32 safetensors files for tests that need a real checkpoint on disk, following
// the published format: 8-byte little-endian header length, JSON header, raw row-major data.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace bitfsck::test {

struct FloatTensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<float> values;
};

inline void write_safetensors(const std::filesystem::path& path, const std::vector<FloatTensor>& tensors) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    std::uint64_t offset = 0;
    for (const auto& t : tensors) {
        std::uint64_t bytes = t.values.size() * sizeof(float);
        header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string text = header.dump();
    while (text.size() % 8) text += ' ';
    std::ofstream out(path, std::ios::binary);
    std::uint64_t n = text.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : tensors)
        out.write(reinterpret_cast<const char*>(t.values.data()), static_cast<std::streamsize>(t.values.size() * sizeof(float)));
}

inline std::vector<float> gaussian(std::size_t n, double std, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, static_cast<float>(std));
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// A two-layer Llama-style model whose MLP weights have the given std (attention stays at 0.02).
inline std::vector<FloatTensor> llama_like(double mlp_std, unsigned seed, int hidden = 32, int mlp = 64) {
    std::vector<FloatTensor> t;
    for (int layer = 0; layer < 2; ++layer) {
        std::string p = "model.layers." + std::to_string(layer) + ".";
        for (const char* a : {"q_proj", "k_proj", "v_proj", "o_proj"})
            t.push_back({p + "self_attn." + a + ".weight", {hidden, hidden},
                         gaussian(static_cast<std::size_t>(hidden * hidden), 0.02, seed++)});
        t.push_back({p + "mlp.gate_proj.weight", {mlp, hidden}, gaussian(static_cast<std::size_t>(mlp * hidden), mlp_std, seed++)});
        t.push_back({p + "mlp.up_proj.weight", {mlp, hidden}, gaussian(static_cast<std::size_t>(mlp * hidden), mlp_std, seed++)});
        t.push_back({p + "mlp.down_proj.weight", {hidden, mlp}, gaussian(static_cast<std::size_t>(mlp * hidden), mlp_std, seed++)});
    }
    return t;
}

}  // namespace bitfsck::test
