#!/usr/bin/env python3
"""Writes a Llama-style bfloat16 checkpoint of about --gb gigabytes, sharded the way Hugging Face
saves one (model-0000N-of-0000M.safetensors + model.safetensors.index.json), with safetensors'
own writer, for scan's bytes-vs-time linearity and GB/s. Never commit the output.

Values: one block of Gaussian numbers drawn once, each tensor a slice of it times its own scale
(drawing 4 billion fresh numbers would take longer than every scan of them).
Usage: python3 bench/make_big_checkpoint.py OUT_DIR [--gb 8] [--shard-gb 1]
"""
import argparse
import json
import sys
from pathlib import Path

try:
    import torch
    from safetensors.torch import save_file
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--gb", type=float, default=8.0)
    ap.add_argument("--shard-gb", type=float, default=1.0)
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    # Llama-3-8B-like shapes (hidden 4096, MLP 14336, 8 KV heads), as many layers as fit.
    H, F, KV, V = 4096, 14336, 1024, 128256
    layer = {"self_attn.q_proj.weight": (H, H), "self_attn.k_proj.weight": (KV, H), "self_attn.v_proj.weight": (KV, H),
             "self_attn.o_proj.weight": (H, H), "mlp.gate_proj.weight": (F, H), "mlp.up_proj.weight": (F, H),
             "mlp.down_proj.weight": (H, F), "input_layernorm.weight": (H,), "post_attention_layernorm.weight": (H,)}
    per_layer = sum(torch.Size(s).numel() for s in layer.values()) * 2
    fixed = 2 * V * H * 2 + H * 2
    layers = max(1, int((args.gb * 1e9 - fixed) // per_layer))
    tensors = [("model.embed_tokens.weight", (V, H))]
    for i in range(layers):
        tensors += [(f"model.layers.{i}.{k}", s) for k, s in layer.items()]
    tensors += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]

    g = torch.Generator().manual_seed(0)
    base = torch.randn(F * H, generator=g).bfloat16()
    shards, current, size = [], {}, 0
    for k, (name, shape) in enumerate(tensors):
        n = torch.Size(shape).numel()
        if len(shape) == 1:
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            src = base if n <= base.numel() else base.repeat(-(-n // base.numel()))
            t = src[:n].view(shape) * (0.02 * (1 + 0.01 * (k % 7)))
        if current and size + 2 * n > args.shard_gb * 1e9:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += 2 * n
    shards.append(current)
    total = len(shards)
    weight_map, total_size = {}, 0
    for i, sd in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{total:05d}.safetensors"
        save_file(sd, str(out / fname), metadata={"format": "pt"})
        for name, t in sd.items():
            weight_map[name] = fname
            total_size += t.numel() * 2
        print(f"{fname}: {len(sd)} tensors", flush=True)
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2) + "\n")
    print(f"{layers} layers, {total_size / 1e9:.2f} GB in {total} shards under {out}")


if __name__ == "__main__":
    main()
