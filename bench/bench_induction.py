#!/usr/bin/python3
"""Probe throughput: `bitfsck induction` (LibTorch, C++) vs a PyTorch eager forward in Python.

Both run the same 100M-parameter Llama-style ternary student (bench/peers/make_100m_checkpoint.py,
written to bench/out/ckpt_100m.pt when missing) on the same batch shape as the default probe
(8 rows of 64 random tokens repeated twice = 1024 tokens), on the CPU, with the same thread count.

  bitfsck      tokens/s reported by `bitfsck induction --json` (timing.tokens_per_second): forward
               passes with the attention probabilities copied out, and the metric reduction; no lm_head.
  torch_module bitnet_reference.StudentLLM as written (re-quantizes every weight on every forward,
               computes the tied lm_head logits).
  torch_prequantized
               the same module with weights quantized once beforehand (weight_quant made the identity),
               logits included: the fairest plain-eager comparison.

Usage: /usr/bin/python3 bench/bench_induction.py [--bitfsck PATH] [--threads N] [--repeats R]
With Debian's reference BLAS a forward of this model takes minutes (~0.6 GFLOP/s); with OpenBLAS
(libopenblas0-pthread, or its libblas.so.3 on LD_LIBRARY_PATH) the whole run takes ~3 minutes.
Prints a JSON summary and writes it to bench/out/bench_induction.json.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
sys.path.insert(0, os.path.join(ROOT, "sample_ckpts"))
import bitnet_reference as ref  # noqa: E402


def find_bitfsck():
    for p in sorted(glob.glob(os.path.join(ROOT, "build*", "cli", "bitfsck"))):
        if os.access(p, os.X_OK):
            return p
    sys.exit("bench_induction: no build*/cli/bitfsck; build it or pass --bitfsck")


def blas_library():
    """The BLAS this process (and so LibTorch in bitfsck-model, started with the same environment)
    loaded: Debian's default is the reference BLAS, ~30x slower on these matrices than OpenBLAS."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1]}
    return sorted(libs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bitfsck", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoint", default=os.path.join(OUT, "ckpt_100m.pt"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(args.checkpoint):
        subprocess.run([sys.executable, os.path.join(HERE, "peers", "make_100m_checkpoint.py"), args.checkpoint], check=True)
    exe = args.bitfsck or find_bitfsck()
    batch, n = 8, 64
    tokens = batch * 2 * n

    # bitfsck: the best of `repeats` runs (each loads the model, then times its probe).
    cpp = []
    for _ in range(args.repeats):
        r = subprocess.run([exe, "induction", "--json", "--threads", str(args.threads), "--batch", str(batch), "--seq-len", str(n),
                            args.checkpoint], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bitfsck failed ({r.returncode}): {r.stderr}")
        cpp.append(json.loads(r.stdout)[0]["timing"]["tokens_per_second"])

    torch.set_num_threads(args.threads)
    sd = torch.load(args.checkpoint)["model_state_dict"]
    V, H = sd["embed_tokens.weight"].shape
    hd = sd["layers.0.self_attn.q_norm.weight"].shape[0]
    cfg = ref.ModelConfig(vocab_size=V, hidden_size=H, num_layers=sum(1 for k in sd if k.endswith("q_proj.weight")),
                          num_heads=sd["layers.0.self_attn.q_proj.weight"].shape[0] // hd,
                          num_kv_heads=sd["layers.0.self_attn.k_proj.weight"].shape[0] // hd, head_dim=hd,
                          intermediate_size=sd["layers.0.mlp.gate_proj.weight"].shape[0])
    model = ref.StudentLLM(cfg).eval()
    model.load_state_dict(sd)
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, V, (batch, n), generator=gen)
    ids = torch.cat([seq, seq], 1)

    def best_tps():
        times = []
        with torch.no_grad():
            model(ids)  # warm-up
            for _ in range(args.repeats):
                t = time.perf_counter()
                model(ids)
                times.append(time.perf_counter() - t)
        return tokens / min(times)

    module_tps = best_tps()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ref.BitLinear):
                m.weight.copy_(ref.weight_quant(m.weight))
    saved = ref.weight_quant
    ref.weight_quant = lambda w: w
    pre_tps = best_tps()
    ref.weight_quant = saved

    summary = {"model": {"parameters": sum(p.numel() for p in model.parameters()), "layers": cfg.num_layers,
                         "hidden": cfg.hidden_size, "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads, "vocab": V},
               "batch": [batch, 2 * n], "threads": args.threads, "torch": torch.__version__, "blas": blas_library(),
               "tokens_per_second": {"bitfsck": max(cpp), "torch_module": module_tps, "torch_prequantized": pre_tps},
               "bitfsck_runs": cpp}
    print(json.dumps(summary, indent=1))
    with open(os.path.join(OUT, "bench_induction.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
