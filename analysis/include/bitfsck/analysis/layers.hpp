#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace bitfsck::analysis {

// What a tensor does in the model, from its name.
enum class Role {
    AttnQ, AttnK, AttnV, AttnO, AttnQKV,   // AttnQKV: fused (GPT-2 c_attn)
    MlpGate, MlpUp, MlpDown,               // GPT-2 c_fc is MlpUp, c_proj in mlp is MlpDown
    Embedding, Position, Norm, Head, Other,
};
std::string_view role_name(Role r);         // "attn_q", "mlp_gate", "embedding", ...
bool role_is_mlp(Role r);
bool role_is_attention(Role r);
bool role_is_ternary_matrix(Role r);        // the projections BitLinear quantizes

struct TensorPlace {
    std::optional<int> layer;   // block index, when the name has one
    Role role = Role::Other;
    bool is_weight = true;      // ".weight"-like, not a bias / scale buffer
};

// Understands Llama-style `layers.N.self_attn.q_proj`, `layers.N.mlp.gate_proj`, Hugging Face
// `model.layers.N...`, GPT-2 `h.N.attn.c_attn` / `h.N.mlp.c_fc`, `transformer.h.N`, DataParallel
// `module.` prefixes, and falls back on any `.N.` index.
TensorPlace place_of(std::string_view tensor_name);

}  // namespace bitfsck::analysis
