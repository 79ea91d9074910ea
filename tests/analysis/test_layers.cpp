#include <catch2/catch.hpp>

#include <string>

#include "bitfsck/analysis/layers.hpp"
#include "support.hpp"

using namespace bitfsck::analysis;

namespace {

void check_place(const std::string& name, std::optional<int> layer, Role role, bool is_weight = true) {
    INFO(name);
    TensorPlace p = place_of(name);
    CHECK(p.layer == layer);
    CHECK(role_name(p.role) == role_name(role));
    CHECK(p.is_weight == is_weight);
}

}  // namespace

TEST_CASE("Llama / Hugging Face names", "[layers]") {
    check_place("model.layers.7.self_attn.q_proj.weight", 7, Role::AttnQ);
    check_place("model.layers.7.self_attn.k_proj.weight", 7, Role::AttnK);
    check_place("model.layers.7.self_attn.v_proj.weight", 7, Role::AttnV);
    check_place("model.layers.7.self_attn.o_proj.weight", 7, Role::AttnO);
    check_place("model.layers.12.mlp.gate_proj.weight", 12, Role::MlpGate);
    check_place("model.layers.12.mlp.up_proj.weight", 12, Role::MlpUp);
    check_place("model.layers.12.mlp.down_proj.weight", 12, Role::MlpDown);
    check_place("model.layers.0.input_layernorm.weight", 0, Role::Norm);
    check_place("model.layers.0.post_attention_layernorm.weight", 0, Role::Norm);
    check_place("model.layers.3.self_attn.q_norm.weight", 3, Role::Norm);
    check_place("model.layers.3.self_attn.k_norm.weight", 3, Role::Norm);
    check_place("model.embed_tokens.weight", std::nullopt, Role::Embedding);
    check_place("model.norm.weight", std::nullopt, Role::Norm);
    check_place("lm_head.weight", std::nullopt, Role::Head);
    check_place("model.layers.2.mlp.down_proj.weight_scale", 2, Role::MlpDown, false);
    check_place("model.layers.2.self_attn.q_proj.bias", 2, Role::AttnQ, false);
    check_place("layers.2.mlp.up_proj.weight_shape", 2, Role::MlpUp, false);
    check_place("layers.2.mlp.up_proj.input_scale", 2, Role::MlpUp, false);
}

TEST_CASE("Meta Llama names", "[layers]") {
    check_place("layers.4.attention.wq.weight", 4, Role::AttnQ);
    check_place("layers.4.attention.wk.weight", 4, Role::AttnK);
    check_place("layers.4.attention.wv.weight", 4, Role::AttnV);
    check_place("layers.4.attention.wo.weight", 4, Role::AttnO);
    check_place("layers.4.feed_forward.w1.weight", 4, Role::MlpGate);
    check_place("layers.4.feed_forward.w3.weight", 4, Role::MlpUp);
    check_place("layers.4.feed_forward.w2.weight", 4, Role::MlpDown);
    check_place("layers.4.attention_norm.weight", 4, Role::Norm);
    check_place("tok_embeddings.weight", std::nullopt, Role::Embedding);
    check_place("output.weight", std::nullopt, Role::Head);
}

TEST_CASE("GPT-2 names", "[layers]") {
    check_place("transformer.h.5.attn.c_attn.weight", 5, Role::AttnQKV);
    check_place("transformer.h.5.attn.c_proj.weight", 5, Role::AttnO);
    check_place("transformer.h.5.mlp.c_fc.weight", 5, Role::MlpUp);
    check_place("transformer.h.5.mlp.c_proj.weight", 5, Role::MlpDown);
    check_place("transformer.h.5.mlp.c_proj.bias", 5, Role::MlpDown, false);
    check_place("transformer.h.5.ln_1.weight", 5, Role::Norm);
    check_place("transformer.ln_f.weight", std::nullopt, Role::Norm);
    check_place("transformer.wte.weight", std::nullopt, Role::Embedding);
    check_place("transformer.wpe.weight", std::nullopt, Role::Position);
    check_place("h.0.attn.bias", 0, Role::Other, false);
}

TEST_CASE("BERT / NeoX / block names", "[layers]") {
    check_place("encoder.layer.3.attention.self.query.weight", 3, Role::AttnQ);
    check_place("encoder.layer.3.attention.self.key.weight", 3, Role::AttnK);
    check_place("encoder.layer.3.attention.self.value.weight", 3, Role::AttnV);
    check_place("gpt_neox.layers.9.attention.query_key_value.weight", 9, Role::AttnQKV);
    check_place("embeddings.word_embeddings.weight", std::nullopt, Role::Embedding);
    check_place("embeddings.position_embeddings.weight", std::nullopt, Role::Position);
    check_place("blocks.11.attn.qkv.weight", 11, Role::AttnQKV);
    check_place("blocks.11.attn.out_proj.weight", 11, Role::AttnO);
    check_place("blocks.11.mlp.fc1.weight", 11, Role::MlpUp);
    check_place("blocks.11.mlp.fc2.weight", 11, Role::MlpDown);
}

TEST_CASE("wrapper prefixes are stripped, also stacked", "[layers]") {
    check_place("module.layers.1.mlp.up_proj.weight", 1, Role::MlpUp);
    check_place("_orig_mod.model.layers.1.mlp.up_proj.weight", 1, Role::MlpUp);
    check_place("module._orig_mod.transformer.h.2.mlp.c_fc.weight", 2, Role::MlpUp);
    check_place("module.output.weight", std::nullopt, Role::Head);
}

TEST_CASE("any numeric component gives a layer when no known container does", "[layers]") {
    check_place("stack.3.mlp.up_proj.weight", 3, Role::MlpUp);
    check_place("decoder.blocks_x.10.self_attn.v_proj.weight", 10, Role::AttnV);
    check_place("rotary.inv_freq", std::nullopt, Role::Other);
    // The leaf of a Sequential is a name, not a block index.
    check_place("head.0", std::nullopt, Role::Other);
    // BERT's attention.output is a submodule inside a block, not the head.
    check_place("encoder.layer.1.attention.output.dense.weight", 1, Role::Other);
}

TEST_CASE("role names and classes", "[layers]") {
    CHECK(role_name(Role::AttnQ) == "attn_q");
    CHECK(role_name(Role::AttnK) == "attn_k");
    CHECK(role_name(Role::AttnV) == "attn_v");
    CHECK(role_name(Role::AttnO) == "attn_o");
    CHECK(role_name(Role::AttnQKV) == "attn_qkv");
    CHECK(role_name(Role::MlpGate) == "mlp_gate");
    CHECK(role_name(Role::MlpUp) == "mlp_up");
    CHECK(role_name(Role::MlpDown) == "mlp_down");
    CHECK(role_name(Role::Embedding) == "embedding");
    CHECK(role_name(Role::Position) == "position");
    CHECK(role_name(Role::Norm) == "norm");
    CHECK(role_name(Role::Head) == "head");
    CHECK(role_name(Role::Other) == "other");
    CHECK(role_is_mlp(Role::MlpDown));
    CHECK_FALSE(role_is_mlp(Role::AttnO));
    CHECK(role_is_attention(Role::AttnQKV));
    CHECK_FALSE(role_is_attention(Role::Embedding));
    CHECK(role_is_ternary_matrix(Role::AttnQ));
    CHECK(role_is_ternary_matrix(Role::MlpGate));
    CHECK_FALSE(role_is_ternary_matrix(Role::Head));
    CHECK_FALSE(role_is_ternary_matrix(Role::Embedding));
    CHECK_FALSE(role_is_ternary_matrix(Role::Norm));
}
