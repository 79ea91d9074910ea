#include "bitfsck/analysis/layers.hpp"

#include <array>
#include <charconv>
#include <vector>

namespace bitfsck::analysis {

std::string_view role_name(Role r) {
    switch (r) {
        case Role::AttnQ: return "attn_q";
        case Role::AttnK: return "attn_k";
        case Role::AttnV: return "attn_v";
        case Role::AttnO: return "attn_o";
        case Role::AttnQKV: return "attn_qkv";
        case Role::MlpGate: return "mlp_gate";
        case Role::MlpUp: return "mlp_up";
        case Role::MlpDown: return "mlp_down";
        case Role::Embedding: return "embedding";
        case Role::Position: return "position";
        case Role::Norm: return "norm";
        case Role::Head: return "head";
        case Role::Other: return "other";
    }
    return "other";
}

bool role_is_mlp(Role r) { return r == Role::MlpGate || r == Role::MlpUp || r == Role::MlpDown; }

bool role_is_attention(Role r) {
    return r == Role::AttnQ || r == Role::AttnK || r == Role::AttnV || r == Role::AttnO || r == Role::AttnQKV;
}

// BitLinear replaces the block projections; embeddings, norms and the head stay full precision.
bool role_is_ternary_matrix(Role r) { return role_is_mlp(r) || role_is_attention(r); }

namespace {

std::vector<std::string_view> split_dots(std::string_view s) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    while (true) {
        std::size_t dot = s.find('.', start);
        parts.push_back(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return parts;
}

std::optional<int> parse_index(std::string_view s) {
    if (s.empty() || s.size() > 9) return std::nullopt;  // 9 digits always fit an int
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Wrappers that add a prefix without changing what the tensor is (DataParallel, HF base
// models, GPT-2's `transformer`, torch.compile), possibly stacked.
std::string_view strip_wrappers(std::string_view name) {
    static constexpr std::array<std::string_view, 4> prefixes = {"module.", "model.", "transformer.", "_orig_mod."};
    bool stripped = true;
    while (stripped) {
        stripped = false;
        for (auto p : prefixes) {
            if (name.substr(0, p.size()) == p) {
                name.remove_prefix(p.size());
                stripped = true;
            }
        }
    }
    return name;
}

std::optional<int> layer_of(const std::vector<std::string_view>& parts) {
    static constexpr std::array<std::string_view, 4> containers = {"layers", "h", "blocks", "layer"};
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        for (auto c : containers) {
            if (parts[i] == c) {
                if (auto n = parse_index(parts[i + 1])) return n;
            }
        }
    }
    // Unknown container names (nn.Sequential, custom stacks): any numeric component that is
    // not the leaf itself.
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        if (auto n = parse_index(parts[i])) return n;
    }
    return std::nullopt;
}

std::optional<Role> role_of_component(std::string_view c, std::string_view parent) {
    if (c == "q_proj" || c == "query" || c == "wq") return Role::AttnQ;
    if (c == "k_proj" || c == "key" || c == "wk") return Role::AttnK;
    if (c == "v_proj" || c == "value" || c == "wv") return Role::AttnV;
    if (c == "o_proj" || c == "out_proj" || c == "wo") return Role::AttnO;
    if (c == "c_attn" || c == "qkv" || c == "qkv_proj" || c == "query_key_value" || c == "Wqkv") return Role::AttnQKV;
    if (c == "gate_proj" || c == "w1") return Role::MlpGate;
    if (c == "up_proj" || c == "w3" || c == "c_fc" || c == "fc1") return Role::MlpUp;
    if (c == "down_proj" || c == "w2" || c == "fc2") return Role::MlpDown;
    // GPT-2 names both output projections c_proj; only the parent module tells them apart.
    if (c == "c_proj") {
        if (parent == "attn" || parent == "self_attn" || parent == "attention") return Role::AttnO;
        if (parent == "mlp" || parent == "feed_forward" || parent == "ffn") return Role::MlpDown;
    }
    if (c == "embed_tokens" || c == "wte" || c == "tok_embeddings" || c == "word_embeddings") return Role::Embedding;
    if (c == "wpe" || c.find("position") != std::string_view::npos) return Role::Position;
    if (c == "lm_head") return Role::Head;
    return std::nullopt;
}

}  // namespace

TensorPlace place_of(std::string_view tensor_name) {
    TensorPlace place;
    std::string_view name = strip_wrappers(tensor_name);
    auto parts = split_dots(name);
    std::string_view leaf = parts.back();

    place.is_weight = !(leaf == "bias" || ends_with(leaf, "_bias") || ends_with(leaf, "_scale") ||
                        ends_with(leaf, "_shape"));
    place.layer = layer_of(parts);

    // Norms first: q_norm / k_norm would otherwise read as attention projections.
    for (auto p : parts) {
        if (p.find("norm") != std::string_view::npos || p.substr(0, 3) == "ln_" || p == "ln") {
            place.role = Role::Norm;
            return place;
        }
    }
    // The innermost named module decides (`attention.self.query` is a query, not attention).
    for (std::size_t i = parts.size(); i-- > 0;) {
        std::string_view parent = i > 0 ? parts[i - 1] : std::string_view{};
        if (auto r = role_of_component(parts[i], parent)) {
            place.role = *r;
            return place;
        }
    }
    // Meta's Llama layout calls the head plain `output.weight`; inside a block `output` is a
    // submodule (BERT's attention.output.dense), which has a layer index.
    if (!place.layer && parts.size() == 2 && parts[0] == "output") place.role = Role::Head;
    return place;
}

}  // namespace bitfsck::analysis
