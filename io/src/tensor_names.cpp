#include "bitfsck/io/tensor_names.hpp"

#include <array>
#include <charconv>
#include <vector>

namespace bitfsck::io {

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

std::string_view name_layout_name(NameLayout l) {
    switch (l) {
        case NameLayout::Llama: return "llama";
        case NameLayout::MetaLlama: return "meta-llama";
        case NameLayout::Gpt2: return "gpt2";
        case NameLayout::Gguf: return "gguf";
        case NameLayout::Other: return "other";
        case NameLayout::Unknown: return "unknown";
    }
    return "unknown";
}

bool role_is_mlp(Role r) { return r == Role::MlpGate || r == Role::MlpUp || r == Role::MlpDown; }

bool role_is_attention(Role r) {
    return r == Role::AttnQ || r == Role::AttnK || r == Role::AttnV || r == Role::AttnO || r == Role::AttnQKV;
}

// BitLinear replaces the block projections; embeddings, norms and the head stay full precision.
bool role_is_ternary_matrix(Role r) { return role_is_mlp(r) || role_is_attention(r); }

namespace {

// The table: a module name component, the role it gives, and the convention that uses it.
// `parent`, when set, is required of the component before it (GPT-2 names both output
// projections c_proj; only the parent module tells them apart).
struct ComponentRule {
    std::string_view component;
    std::string_view parent;
    Role role;
    NameLayout layout;
};

constexpr ComponentRule kComponents[] = {
    // Distillix / Hugging Face Llama and BitNet.
    {"q_proj", "", Role::AttnQ, NameLayout::Llama},
    {"k_proj", "", Role::AttnK, NameLayout::Llama},
    {"v_proj", "", Role::AttnV, NameLayout::Llama},
    {"o_proj", "", Role::AttnO, NameLayout::Llama},
    {"qkv_proj", "", Role::AttnQKV, NameLayout::Llama},
    {"gate_proj", "", Role::MlpGate, NameLayout::Llama},
    {"up_proj", "", Role::MlpUp, NameLayout::Llama},
    {"down_proj", "", Role::MlpDown, NameLayout::Llama},
    {"embed_tokens", "", Role::Embedding, NameLayout::Llama},
    {"lm_head", "", Role::Head, NameLayout::Llama},
    // Meta's original Llama.
    {"wq", "", Role::AttnQ, NameLayout::MetaLlama},
    {"wk", "", Role::AttnK, NameLayout::MetaLlama},
    {"wv", "", Role::AttnV, NameLayout::MetaLlama},
    {"wo", "", Role::AttnO, NameLayout::MetaLlama},
    {"w1", "", Role::MlpGate, NameLayout::MetaLlama},
    {"w3", "", Role::MlpUp, NameLayout::MetaLlama},
    {"w2", "", Role::MlpDown, NameLayout::MetaLlama},
    {"tok_embeddings", "", Role::Embedding, NameLayout::MetaLlama},
    // GPT-2.
    {"c_attn", "", Role::AttnQKV, NameLayout::Gpt2},
    {"c_fc", "", Role::MlpUp, NameLayout::Gpt2},
    {"c_proj", "attn", Role::AttnO, NameLayout::Gpt2},
    {"c_proj", "self_attn", Role::AttnO, NameLayout::Gpt2},
    {"c_proj", "attention", Role::AttnO, NameLayout::Gpt2},
    {"c_proj", "mlp", Role::MlpDown, NameLayout::Gpt2},
    {"c_proj", "feed_forward", Role::MlpDown, NameLayout::Gpt2},
    {"c_proj", "ffn", Role::MlpDown, NameLayout::Gpt2},
    {"wte", "", Role::Embedding, NameLayout::Gpt2},
    {"wpe", "", Role::Position, NameLayout::Gpt2},
    // llama.cpp / bitnet.cpp GGUF (llama-arch.cpp LLM_TENSOR_NAMES, gguf-py constants.py).
    {"attn_q", "", Role::AttnQ, NameLayout::Gguf},
    {"attn_k", "", Role::AttnK, NameLayout::Gguf},
    {"attn_v", "", Role::AttnV, NameLayout::Gguf},
    {"attn_output", "", Role::AttnO, NameLayout::Gguf},
    {"attn_qkv", "", Role::AttnQKV, NameLayout::Gguf},
    {"ffn_gate", "", Role::MlpGate, NameLayout::Gguf},
    {"ffn_up", "", Role::MlpUp, NameLayout::Gguf},
    {"ffn_down", "", Role::MlpDown, NameLayout::Gguf},
    {"ffn_gate_exps", "", Role::MlpGate, NameLayout::Gguf},
    {"ffn_up_exps", "", Role::MlpUp, NameLayout::Gguf},
    {"ffn_down_exps", "", Role::MlpDown, NameLayout::Gguf},
    {"token_embd", "", Role::Embedding, NameLayout::Gguf},
    {"position_embd", "", Role::Position, NameLayout::Gguf},
    // BERT, NeoX, timm and other stacks.
    {"query", "", Role::AttnQ, NameLayout::Other},
    {"key", "", Role::AttnK, NameLayout::Other},
    {"value", "", Role::AttnV, NameLayout::Other},
    {"out_proj", "", Role::AttnO, NameLayout::Other},
    {"qkv", "", Role::AttnQKV, NameLayout::Other},
    {"query_key_value", "", Role::AttnQKV, NameLayout::Other},
    {"Wqkv", "", Role::AttnQKV, NameLayout::Other},
    {"fc1", "", Role::MlpUp, NameLayout::Other},
    {"fc2", "", Role::MlpDown, NameLayout::Other},
    {"word_embeddings", "", Role::Embedding, NameLayout::Other},
    {"position_embeddings", "", Role::Position, NameLayout::Other},
};

// Containers of numbered blocks, and the convention they belong to.
struct ContainerRule {
    std::string_view name;
    NameLayout layout;
};
constexpr ContainerRule kContainers[] = {
    {"layers", NameLayout::Llama}, {"h", NameLayout::Gpt2}, {"blk", NameLayout::Gguf}, {"blocks", NameLayout::Other}, {"layer", NameLayout::Other},
};

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

struct LayerIndex {
    std::optional<int> layer;
    std::optional<std::size_t> at;  // the component holding the number
    NameLayout layout = NameLayout::Unknown;
};

LayerIndex layer_of(const std::vector<std::string_view>& parts) {
    for (std::size_t i = 0; i + 1 < parts.size(); ++i)
        for (const auto& c : kContainers)
            if (parts[i] == c.name)
                if (auto n = parse_index(parts[i + 1])) return {n, i + 1, c.layout};
    // Unknown container names (nn.Sequential, custom stacks): any numeric component that is
    // not the leaf itself.
    for (std::size_t i = 0; i + 1 < parts.size(); ++i)
        if (auto n = parse_index(parts[i])) return {n, i, NameLayout::Unknown};
    return {};
}

const ComponentRule* rule_of(std::string_view c, std::string_view parent) {
    for (const auto& r : kComponents)
        if (r.component == c && (r.parent.empty() || r.parent == parent)) return &r;
    return nullptr;
}

bool is_norm_component(std::string_view p) { return p.find("norm") != std::string_view::npos || p.substr(0, 3) == "ln_" || p == "ln"; }

}  // namespace

TensorPlace place_of(std::string_view tensor_name) {
    TensorPlace place;
    std::string_view name = strip_wrappers(tensor_name);
    auto parts = split_dots(name);
    std::string_view leaf = parts.back();

    place.is_weight = !(leaf == "bias" || ends_with(leaf, "_bias") || ends_with(leaf, "_scale") ||
                        ends_with(leaf, "_shape"));
    const LayerIndex index = layer_of(parts);
    place.layer = index.layer;
    place.layout = index.layout;

    // Norms first: q_norm / k_norm would otherwise read as attention projections.
    for (auto p : parts) {
        if (is_norm_component(p)) {
            place.role = Role::Norm;
            if (p == "output_norm") place.layout = NameLayout::Gguf;
            return place;
        }
    }
    // The innermost named module decides (`attention.self.query` is a query, not attention).
    for (std::size_t i = parts.size(); i-- > 0;) {
        std::string_view parent = i > 0 ? parts[i - 1] : std::string_view{};
        if (const ComponentRule* r = rule_of(parts[i], parent)) {
            place.role = r->role;
            if (place.layout == NameLayout::Unknown || r->layout == NameLayout::Gguf || r->layout == NameLayout::MetaLlama)
                place.layout = r->layout;
            return place;
        }
        if (parts[i].find("position") != std::string_view::npos) {  // position_ids, rotary position tables
            place.role = Role::Position;
            return place;
        }
    }
    // Meta's Llama and llama.cpp call the head plain `output.weight`; inside a block `output` is a
    // submodule (BERT's attention.output.dense), which has a layer index.
    if (!place.layer && parts.size() == 2 && parts[0] == "output") place.role = Role::Head;
    return place;
}

namespace {

// Hugging Face Llama / BitNet module paths inside a block, and their llama.cpp names
// (gguf-py tensor_mapping.py MODEL_TENSOR -> its HF names; llama-arch.cpp for the GGUF side).
struct GgufBlockName {
    std::string_view hf;    // after "layers.N."
    std::string_view gguf;  // after "blk.N."
};
constexpr GgufBlockName kGgufBlock[] = {
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    {"self_attn.attn_sub_norm", "attn_sub_norm"},
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"mlp.ffn_sub_norm", "ffn_sub_norm"},
    {"attention.wq", "attn_q"},
    {"attention.wk", "attn_k"},
    {"attention.wv", "attn_v"},
    {"attention.wo", "attn_output"},
    {"attention_norm", "attn_norm"},
};
constexpr GgufBlockName kGgufBlockMeta[] = {
    {"feed_forward.w1", "ffn_gate"},
    {"feed_forward.w3", "ffn_up"},
    {"feed_forward.w2", "ffn_down"},
    {"ffn_norm", "ffn_norm"},
};
constexpr GgufBlockName kGgufTop[] = {
    {"embed_tokens", "token_embd"},
    {"tok_embeddings", "token_embd"},
    {"norm", "output_norm"},
    {"lm_head", "output"},
    {"output", "output"},
};

}  // namespace

std::optional<std::string> gguf_tensor_name(std::string_view tensor_name) {
    std::string_view name = strip_wrappers(tensor_name);
    // The parameter's own name (weight, bias, weight_scale) stays as it is.
    const auto dot = name.rfind('.');
    if (dot == std::string_view::npos) return std::nullopt;
    const std::string_view module = name.substr(0, dot), leaf = name.substr(dot);
    if (module.substr(0, 4) == "blk." || module == "token_embd" || module == "output_norm" || module == "output")
        return std::string(name);
    for (const auto& t : kGgufTop)
        if (module == t.hf) return std::string(t.gguf) + std::string(leaf);
    if (module.substr(0, 7) != "layers.") return std::nullopt;
    const auto block_end = module.find('.', 7);
    if (block_end == std::string_view::npos) return std::nullopt;
    const auto layer = parse_index(module.substr(7, block_end - 7));
    if (!layer) return std::nullopt;
    const std::string_view inner = module.substr(block_end + 1);
    auto lookup = [&](const auto& table) -> std::optional<std::string> {
        for (const auto& t : table)
            if (inner == t.hf) return "blk." + std::to_string(*layer) + "." + std::string(t.gguf) + std::string(leaf);
        return std::nullopt;
    };
    if (auto n = lookup(kGgufBlock)) return n;
    return lookup(kGgufBlockMeta);
}

}  // namespace bitfsck::io
