#pragma once
// What a tensor is, from its name: one table of the naming conventions real producers use,
// read by every part of bitfsck that asks which layer and role a tensor has (scan verdicts,
// diff, repair selection, convert's packing choice, model config inference).
#include <optional>
#include <string>
#include <string_view>

namespace bitfsck::io {

// What a tensor does in the model.
enum class Role {
    AttnQ, AttnK, AttnV, AttnO, AttnQKV,   // AttnQKV: fused (GPT-2 c_attn, llama.cpp attn_qkv)
    MlpGate, MlpUp, MlpDown,               // GPT-2 c_fc is MlpUp, c_proj in mlp is MlpDown
    Embedding, Position, Norm, Head, Other,
};
std::string_view role_name(Role r);         // "attn_q", "mlp_gate", "embedding", ...
bool role_is_mlp(Role r);
bool role_is_attention(Role r);
bool role_is_ternary_matrix(Role r);        // the projections BitLinear quantizes

// The naming convention a name follows, as far as its components tell.
enum class NameLayout {
    Llama,        // Distillix / Hugging Face Llama and BitNet: [model.]layers.N.self_attn.q_proj, mlp.gate_proj
    MetaLlama,    // Meta's original: layers.N.attention.wq, feed_forward.w1, tok_embeddings, output
    Gpt2,         // [transformer.]h.N.attn.c_attn, mlp.c_fc, wte, wpe
    Gguf,         // llama.cpp / bitnet.cpp GGUF: blk.N.attn_q, ffn_gate, attn_sub_norm, token_embd, output_norm
    Other,        // BERT, NeoX, timm blocks and other names the table knows a component of
    Unknown,      // nothing in the name is known
};
std::string_view name_layout_name(NameLayout l);  // "llama", "meta-llama", "gpt2", "gguf", "other", "unknown"

struct TensorPlace {
    std::optional<int> layer;   // block index, when the name has one
    Role role = Role::Other;
    bool is_weight = true;      // ".weight"-like, not a bias / scale buffer
    NameLayout layout = NameLayout::Unknown;
};

// Understands Llama-style `layers.N.self_attn.q_proj`, Hugging Face `model.layers.N...` (with
// BitNet's attn_sub_norm / ffn_sub_norm), Meta's `layers.N.attention.wq`, GPT-2 `h.N.attn.c_attn`
// / `h.N.mlp.c_fc`, `transformer.h.N`, llama.cpp's `blk.N.attn_q` / `ffn_up` / `token_embd` /
// `output`, DataParallel `module.` and torch.compile `_orig_mod.` prefixes, and falls back on
// any `.N.` index.
TensorPlace place_of(std::string_view tensor_name);

// The name llama.cpp's converters give this tensor in a GGUF file (convert_hf_to_gguf.py and
// gguf-py's tensor_mapping.py: `model.layers.3.mlp.up_proj.weight` -> `blk.3.ffn_up.weight`,
// `model.embed_tokens.weight` -> `token_embd.weight`, `lm_head.weight` -> `output.weight`), or
// nullopt when the table has no GGUF name for it. Names already in GGUF form map to themselves.
std::optional<std::string> gguf_tensor_name(std::string_view tensor_name);

}  // namespace bitfsck::io
