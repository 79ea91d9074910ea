#!/usr/bin/env python3
"""Checkpoints shaped like real releases, written by the producers' own code.

  gguf OUT_DIR     GGUF files written by gguf-py (llama.cpp's own package: GGUFWriter and
                   gguf.quants' TQ1_0/TQ2_0 quantizers): llama- and bitnet-architecture models
                   with llama.cpp's tensor names, one with collapsed MLPs; and bitnet.cpp's I2_S
                   (all three build layouts) and TL1, whose packing gguf-py does not know: those
                   lines are re-implemented here from bitnet.cpp's sources, named where they are.
  sharded OUT_DIR  Hugging Face checkpoints sharded by huggingface_hub's save_torch_state_dict
                   (what transformers' save_pretrained calls), as safetensors and as pickles, with
                   a config.json beside them; BitNet weights packed as transformers'
                   integrations/bitnet.py packs them (re-implemented: transformers needs torch 2.x).

Beside every fixture, <name>.expected.json holds what the producer's own decoder (gguf-py's
dequantize, or the unpacking the packer inverts) says each tensor holds. Run with the project's
venv python (scripts/setup), which has gguf, safetensors, huggingface_hub and Debian's torch.
"""
import json
import os
import sys

import numpy as np

SEED = 20261202
HIDDEN, KV, FFN, VOCAB, LAYERS, HEADS, KV_HEADS = 256, 128, 512, 64, 2, 4, 2


def code_stats(codes2d):
    """What bitfsck must report of a ternary matrix: code fractions and dead output rows."""
    c = np.asarray(codes2d)
    n = c.size
    return {
        "neg": float((c < 0).sum()) / n,
        "zero": float((c == 0).sum()) / n,
        "pos": float((c > 0).sum()) / n,
        "dead_rows": int((np.abs(c).sum(axis=1) == 0).sum()),
        "rows": int(c.shape[0]),
    }


def random_codes(rng, shape, zero_frac):
    side = (1.0 - zero_frac) / 2
    return rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=shape, p=[side, zero_frac, side])


# --------------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------------

GGUF_BLOCK_MATRICES = [  # llama.cpp names (gguf-py constants.py MODEL_TENSOR), [rows, cols]
    ("attn_q", (HIDDEN, HIDDEN)),
    ("attn_k", (KV, HIDDEN)),
    ("attn_v", (KV, HIDDEN)),
    ("attn_output", (HIDDEN, HIDDEN)),
    ("ffn_gate", (FFN, HIDDEN)),
    ("ffn_up", (FFN, HIDDEN)),
    ("ffn_down", (HIDDEN, FFN)),
]
# An fp16-exact scale, so that the TQ blocks' fp16 d holds it without rounding.
GAMMA = 0.0234375


def model_codes(rng, collapsed_layer=None, dead_rows=None):
    """Codes of every block matrix; the MLPs of `collapsed_layer` 97% zero, as a collapse leaves them."""
    out = {}
    for layer in range(LAYERS):
        for name, shape in GGUF_BLOCK_MATRICES:
            zero = 0.97 if layer == collapsed_layer and name.startswith("ffn_") else 0.31
            codes = random_codes(rng, shape, zero)
            if dead_rows and (layer, name) in dead_rows:
                codes[dead_rows[(layer, name)]] = 0
            out[f"blk.{layer}.{name}.weight"] = codes
    return out


def gguf_writer(path, arch):
    import gguf

    w = gguf.GGUFWriter(path, arch)
    w.add_name("bitfsck fixture")
    w.add_block_count(LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    return w


def add_float_tensors(w, rng, arch):
    """Embedding, output head (F16, as convert_hf_to_gguf.py keeps TOKEN_EMBD and OUTPUT) and norms (F32)."""
    w.add_tensor("token_embd.weight", rng.normal(0, 0.02, (VOCAB, HIDDEN)).astype(np.float16))
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    if arch == "llama":
        w.add_tensor("output.weight", rng.normal(0, 0.02, (VOCAB, HIDDEN)).astype(np.float16))
    for layer in range(LAYERS):
        w.add_tensor(f"blk.{layer}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        w.add_tensor(f"blk.{layer}.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        if arch.startswith("bitnet"):
            w.add_tensor(f"blk.{layer}.attn_sub_norm.weight", np.ones(HIDDEN, dtype=np.float32))
            w.add_tensor(f"blk.{layer}.ffn_sub_norm.weight", np.ones(FFN, dtype=np.float32))


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tq_model(out_dir, name, arch, qtype, collapsed_layer):
    import gguf
    from gguf.quants import dequantize, quantize

    rng = np.random.default_rng(SEED)
    codes = model_codes(rng, collapsed_layer)
    path = os.path.join(out_dir, name)
    w = gguf_writer(path, arch)
    add_float_tensors(w, rng, arch)
    expected = {"architecture": arch, "type": qtype.name, "tensors": {}}
    for tname, c in codes.items():
        values = c.astype(np.float32) * GAMMA
        q = quantize(values, qtype)  # llama.cpp's own quantizer (gguf-py quants.py)
        w.add_tensor(tname, q, raw_dtype=qtype)
        back = dequantize(q, qtype).reshape(values.shape)  # and its own decoder
        stats = code_stats(np.sign(back))
        stats["max_abs"] = float(np.abs(back).max())
        expected["tensors"][tname] = stats
    finish(w)
    with open(path + ".expected.json", "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


# bitnet.cpp src/ggml-bitnet-mad.cpp quantize_i2_s: codes 0/1/2 for -1/0/+1, one float32 scale
# (max|w|, a multiplier) at byte n/4 of a tensor of n/4 + 32 bytes. The byte layout depends on
# the build (include/gemm-config.h ACT_PARALLEL; QK_I2_S 128 on x86, 64 on ARM).
def pack_i2s(codes, layout):
    rows, cols = codes.shape
    q = (codes.astype(np.int64) + 1).reshape(-1)
    n = q.size
    e = np.arange(n)
    if layout == "act-parallel":  # x86 with ACT_PARALLEL: i2_weight[i * 32 + group_pos] |= q << (6 - 2 * group_idx)
        at, shift = (e // 128) * 32 + e % 32, 6 - 2 * ((e % 128) // 32)
    elif layout == "arm":  # ARM NEON: i2_weight[i * 16 + group_pos] |= q << (6 - 2 * group_idx), QK_I2_S 64
        at, shift = (e // 64) * 16 + e % 16, 6 - 2 * ((e % 64) // 16)
    elif layout == "interleaved":  # x86 without ACT_PARALLEL, quantize_i2_s_1x4: out[rg * n_per_row + col]
        r, k = e // cols, e % cols
        at, shift = (r // 4) * cols + k, 6 - 2 * (r % 4)
    else:
        raise ValueError(layout)
    packed = np.zeros(n // 4 + 32, dtype=np.uint8)
    np.bitwise_or.at(packed, at, (q << shift).astype(np.uint8))
    packed[n // 4 : n // 4 + 4] = np.frombuffer(np.float32(GAMMA).tobytes(), dtype=np.uint8)
    return packed


def write_i2s_model(out_dir, layout):
    rng = np.random.default_rng(SEED + 1)
    # Dead rows one apart in four, so that a wrong layout guess cannot keep them whole.
    dead = {(0, "ffn_up"): np.arange(1, 64, 4)}
    codes = model_codes(rng, collapsed_layer=1, dead_rows=dead)
    name = f"i2s_{layout}.gguf"
    path = os.path.join(out_dir, name)
    arch = "bitnet-b1.58"  # what microsoft's bitnet-b1.58-2B-4T GGUF says of itself
    w = gguf_writer(path, arch)
    w.add_file_type(40)  # LLAMA_FTYPE_MOSTLY_I2_S in bitnet.cpp's fork
    add_float_tensors(w, rng, arch)
    expected = {"architecture": arch, "type": "I2_S", "layout": layout, "scale": GAMMA, "tensors": {}}
    for tname, c in codes.items():
        packed = pack_i2s(c, layout)
        # gguf-py knows no type 36: int8 bytes with the logical shape keep its size rule out of the way.
        w.add_tensor(tname, packed.view(np.int8), raw_shape=c.shape, raw_dtype=36)
        expected["tensors"][tname] = code_stats(c)
    finish(w)
    with open(path + ".expected.json", "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


# bitnet.cpp utils/convert-hf-to-gguf-bitnet.py preprocess_weights_tl1 / transform_to_tl1: pairs of
# ternary weights along K become one nibble 3*w0 + w1 + 4, ordered by the kernel tiling (BM, BK,
# bm) taken from include/kernel_config.ini at conversion time; the scale max|w| goes into a
# float32 <name>_scale tensor. The closed form below is that chain of reshapes and transposes.
def pack_tl1(codes, BM=128, BK=64, bm=32):
    M, K = codes.shape
    by = 256 // bm
    out = np.zeros(M * K // 4, dtype=np.uint8)
    for m in range(M):
        mb, rest = divmod(m, BM)
        ib, rest = divmod(rest, bm)
        i16, l = divmod(rest, 16)
        for p in range(K // 2):
            kb, rest = divmod(p, BK // 2)
            yb, rest = divmod(rest, by // 2)
            q, h = divmod(rest, 2)
            byte = ((((((mb * (K // BK) + kb) * (BM // bm) + ib) * (BK // by) + yb) * (bm // 16) + i16) * (by // 4) + q) * 16 + l)
            v = 3 * int(codes[m, 2 * p]) + int(codes[m, 2 * p + 1]) + 4
            out[byte] |= (v << 4) if h == 0 else v
    return out


def write_tl1_model(out_dir):
    rng = np.random.default_rng(SEED + 2)
    codes = model_codes(rng)
    path = os.path.join(out_dir, "tl1.gguf")
    w = gguf_writer(path, "bitnet")
    w.add_file_type(38)  # LLAMA_FTYPE_MOSTLY_TL1 in bitnet.cpp's fork
    add_float_tensors(w, rng, "bitnet")
    for tname, c in codes.items():
        w.add_tensor(tname, pack_tl1(c).view(np.int8), raw_shape=c.shape, raw_dtype=38)
        w.add_tensor(tname + "_scale", np.array([GAMMA], dtype=np.float32))
    finish(w)


def make_gguf(out_dir):
    import gguf

    os.makedirs(out_dir, exist_ok=True)
    T = gguf.GGMLQuantizationType
    write_tq_model(out_dir, "llama_tq2_0.gguf", "llama", T.TQ2_0, collapsed_layer=1)
    write_tq_model(out_dir, "llama_tq1_0.gguf", "llama", T.TQ1_0, collapsed_layer=1)
    write_tq_model(out_dir, "bitnet_tq2_0.gguf", "bitnet", T.TQ2_0, collapsed_layer=None)
    for layout in ("act-parallel", "interleaved", "arm"):
        write_i2s_model(out_dir, layout)
    write_tl1_model(out_dir)


# --------------------------------------------------------------------------------------------
# Sharded Hugging Face checkpoints
# --------------------------------------------------------------------------------------------


# transformers integrations/bitnet.py pack_weights: 4 codes (code+1, 2 bits) per uint8 along dim 0;
# with R = ceil(rows/4), original row i*R + r sits in bits 2i of packed row r.
def pack_weights(codes):
    import torch

    q = torch.as_tensor(codes, dtype=torch.int8).clone()
    rows = q.shape[0]
    row_dim = (rows + 3) // 4
    packed = torch.zeros((row_dim, *q.shape[1:]), dtype=torch.uint8)
    unpacked = (q + 1).to(torch.uint8)
    it = min(4, (rows // row_dim) + 1)
    for i in range(it):
        start = i * row_dim
        end = min(start + row_dim, rows)
        packed[: (end - start)] |= unpacked[start:end] << 2 * i
    return packed


HF_MATRICES = [  # transformers BitNet module paths, [rows, cols]
    ("self_attn.q_proj", (HIDDEN, HIDDEN)),
    ("self_attn.k_proj", (KV, HIDDEN)),
    ("self_attn.v_proj", (KV, HIDDEN)),
    ("self_attn.o_proj", (HIDDEN, HIDDEN)),
    ("mlp.gate_proj", (FFN, HIDDEN)),
    ("mlp.up_proj", (FFN, HIDDEN)),
    ("mlp.down_proj", (HIDDEN, FFN)),
]


def bitnet_state_dict(linear_class, absmean):
    """A packed BitNet state dict whose dequantized weights are code × absmean. BitLinear
    (linear_class bitlinear) stores weight_scale = 1/absmean and divides; AutoBitLinear offline
    stores absmean and multiplies (transformers integrations/bitnet.py)."""
    import torch

    rng = np.random.default_rng(SEED + 3)
    stored_scale = 1.0 / absmean if linear_class == "bitlinear" else absmean
    sd, expected = {}, {}
    sd["model.embed_tokens.weight"] = torch.tensor(rng.normal(0, 0.02, (VOCAB * 8, HIDDEN)).astype(np.float32)).to(torch.bfloat16)
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        sd[p + "input_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        for name, shape in HF_MATRICES:
            zero = 0.97 if layer == 1 and name.startswith("mlp.") else 0.31
            codes = random_codes(rng, shape, zero)
            sd[p + name + ".weight"] = pack_weights(codes)
            sd[p + name + ".weight_scale"] = torch.tensor([stored_scale], dtype=torch.bfloat16)
            stats = code_stats(codes)
            stats["absmean"] = float(torch.tensor([stored_scale], dtype=torch.bfloat16).float().item())
            if linear_class == "bitlinear":
                stats["absmean"] = 1.0 / stats["absmean"]
            stats["absmean"] *= 1.0 - stats["zero"]  # mean |code × scale|
            expected[p + name + ".weight"] = stats
        sd[p + "self_attn.attn_sub_norm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
        sd[p + "mlp.ffn_sub_norm.weight"] = torch.ones(FFN, dtype=torch.bfloat16)
    sd["model.norm.weight"] = torch.ones(HIDDEN, dtype=torch.bfloat16)
    return sd, expected


def bitnet_config(linear_class):
    """config.json with the keys transformers' BitNetConfig and BitNetQuantConfig serialise."""
    return {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_act": "relu2",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "vocab_size": VOCAB * 8,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "bitnet", "linear_class": linear_class, "quantization_mode": "offline"},
    }


def save_release(folder, sd, config, max_shard_size, safe=True):
    from huggingface_hub import save_torch_state_dict

    os.makedirs(folder, exist_ok=True)
    save_torch_state_dict(sd, folder, max_shard_size=max_shard_size, safe_serialization=safe)
    if config is not None:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)


def make_sharded(out_dir):
    import torch
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    # Scales near 1 (real releases report ≈1.5): the magnitude alone would read the first two
    # wrongly. The third has a trained model's absmean, whose reciprocal no one mistakes.
    for linear_class, absmean, name in (
        ("autobitlinear", 1.5, "bitnet_autobitlinear"),
        ("bitlinear", 1.4, "bitnet_bitlinear"),
        ("bitlinear", 0.02, "bitnet_bitlinear_trained"),
    ):
        sd, expected = bitnet_state_dict(linear_class, absmean)
        folder = os.path.join(out_dir, name)
        # A shard holds exactly a layer norm and the packed q_proj after it (512 + 16384 bytes):
        # q_proj's weight_scale opens the next shard, as happens in real releases.
        save_release(folder, sd, bitnet_config(linear_class), max_shard_size=HIDDEN * 2 + HIDDEN * HIDDEN // 4)
        with open(folder + ".expected.json", "w") as f:
            json.dump({"linear_class": linear_class, "tensors": expected}, f, indent=1, sort_keys=True)
        if name == "bitnet_bitlinear_trained":
            continue
        # The same weights in one file, beside the same config.json.
        single = folder + "_single"
        os.makedirs(single, exist_ok=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(single, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(single, "config.json"), "w") as f:
            json.dump(bitnet_config(linear_class), f, indent=2, sort_keys=True)

    # The sample run's collapsed latent weights, sharded as pickles the way save_pretrained does
    # with safe_serialization=False, and as safetensors.
    here = os.path.dirname(os.path.abspath(__file__))
    ckpt = torch.load(os.path.join(here, "run", "step_000350.pt"), map_location="cpu")
    sd = {k: v.contiguous() for k, v in ckpt["model_state_dict"].items()}
    save_release(os.path.join(out_dir, "run350_bin"), sd, None, max_shard_size=100_000, safe=False)
    save_release(os.path.join(out_dir, "run350_safetensors"), sd, None, max_shard_size=100_000, safe=True)

    # The whole sample run as transformers' Trainer leaves one: checkpoint-N/ folders of shards,
    # each with its trainer_state.json.
    for step in range(50, 351, 50):
        ckpt = torch.load(os.path.join(here, "run", f"step_{step:06d}.pt"), map_location="cpu")
        folder = os.path.join(out_dir, "hf_run", f"checkpoint-{step}")
        save_release(folder, {k: v.contiguous() for k, v in ckpt["model_state_dict"].items()}, None, max_shard_size=100_000)
        with open(os.path.join(folder, "trainer_state.json"), "w") as f:
            json.dump({"global_step": step, "epoch": step / 350.0, "log_history": []}, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("gguf", "sharded"):
        sys.exit(__doc__)
    {"gguf": make_gguf, "sharded": make_sharded}[sys.argv[1]](sys.argv[2])
