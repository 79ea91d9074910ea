#!/usr/bin/python3
"""Writes the repair fixtures (sample_ckpts/repair/) with real PyTorch, and what torch itself
measures on them (repair/lowrank.expected.json).

  lowrank.pt        a training checkpoint {"model_state_dict", "optimizer_state_dict", "step"} whose
                    MLP matrices are a planted low-rank signal plus Gaussian noise; the attention
                    matrices and norms are untouched bystanders that a repair must carry over bit
                    for bit, and the optimizer state holds moments for every parameter.
  lowrank_clean.pt  the same state dict with the clean signal only (what SVD denoising aims at).

Expected values, all from torch: the planted rank, the noisy and rank-k truncated relative errors
to the clean signal (torch.linalg.svd), the top singular values, and the rank the Gavish-Donoho
rule (omega(beta) * median(sigma), omega ~ 0.56b^3 - 0.95b^2 + 1.82b + 1.43) keeps.

Run from anywhere:  /usr/bin/python3 sample_ckpts/make_repair.py   (deterministic, fixed seed)
"""
import collections
import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "repair")
PLANTED_RANK = 6
NOISE = 0.01

gen = torch.Generator().manual_seed(20260)


def planted(rows, cols):
    u, _ = torch.linalg.qr(torch.randn(rows, PLANTED_RANK, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, PLANTED_RANK, generator=gen, dtype=torch.float64))
    s = torch.linspace(8.0, 3.0, PLANTED_RANK, dtype=torch.float64)
    clean = (u * s) @ v.T
    noisy = clean + NOISE * torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    return clean.float(), noisy.float()


def gavish_donoho_rank(sigma, rows, cols):
    beta = min(rows, cols) / max(rows, cols)
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    tau = omega * torch.median(sigma).item() if len(sigma) % 2 else omega * sigma.sort().values[len(sigma) // 2 - 1:len(sigma) // 2 + 1].mean().item()
    return int((sigma > tau).sum().item()), tau


def main():
    os.makedirs(OUT, exist_ok=True)
    hidden, inter = 64, 128
    clean_sd, noisy_sd = collections.OrderedDict(), collections.OrderedDict()
    expected = {"planted_rank": PLANTED_RANK, "noise": NOISE, "tensors": {}}
    for layer in range(2):
        for name, shape in (("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)), ("mlp.down_proj", (hidden, inter))):
            key = f"layers.{layer}.{name}.weight"
            clean, noisy = planted(*shape)
            clean_sd[key], noisy_sd[key] = clean, noisy
            w = noisy.double()
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            truncated = (u[:, :PLANTED_RANK] * s[:PLANTED_RANK]) @ vh[:PLANTED_RANK]
            c = clean.double()
            gd_rank, gd_tau = gavish_donoho_rank(s, *shape)
            expected["tensors"][key] = {
                "shape": list(shape),
                "noisy_rel_error": (torch.linalg.norm(w - c) / torch.linalg.norm(c)).item(),
                "truncated_rel_error": (torch.linalg.norm(truncated - c) / torch.linalg.norm(c)).item(),
                "top_singular_values": s[:10].tolist(),
                "gavish_donoho_rank": gd_rank,
                "gavish_donoho_threshold": gd_tau,
            }
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            key = f"layers.{layer}.self_attn.{name}.weight"
            t = torch.randn(hidden, hidden, generator=gen) * 0.02
            clean_sd[key] = noisy_sd[key] = t
        key = f"layers.{layer}.input_layernorm.weight"
        clean_sd[key] = noisy_sd[key] = 1 + 0.1 * torch.randn(hidden, generator=gen)
    optimizer = {
        "state": {i: {"step": torch.tensor(float(100)), "exp_avg": torch.randn(t.shape, generator=gen) * 1e-4,
                      "exp_avg_sq": torch.rand(t.shape, generator=gen) * 1e-8}
                  for i, t in enumerate(noisy_sd.values())},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1,
                          "params": list(range(len(noisy_sd)))}],
    }
    torch.save({"model_state_dict": noisy_sd, "optimizer_state_dict": optimizer, "step": 1000,
                "config": {"hidden": hidden, "intermediate": inter, "layers": 2}},
               os.path.join(OUT, "lowrank.pt"))
    torch.save(clean_sd, os.path.join(OUT, "lowrank_clean.pt"))
    with open(os.path.join(OUT, "lowrank.expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
