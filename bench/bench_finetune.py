#!/usr/bin/python3
"""Training throughput: `bitfsck finetune` (LibTorch, C++) vs the same STE training step in PyTorch eager.

Both train the 100M-parameter Llama-style ternary student (bench/peers/make_100m_checkpoint.py, written
to bench/out/ckpt_100m.pt when missing) on windows of 4 × 256 random token ids (uint16 < 32000, seeded,
~50k tokens in bench/out/tokens_100m.bin), on the CPU, with the same thread count and number of steps.
A step is: forward on [4, 256] ids, cross-entropy, backward (straight-through estimators for the ternary
weights and int8 activations), global gradient-norm clipping to 1.0, an AdamW update (lr 1e-4, betas
(0.9, 0.95)), zeroing the gradients.

  bitfsck      `bitfsck finetune CKPT -o bench/out/ft_100m.pt --optimizer adamw --lr 1e-4 ... --json`;
               tokens/s = the median of the per-step "tokens_per_s" of OUT.metrics.jsonl (tokens of the
               step / seconds of its forward+backward+update, evaluation excluded), the first step
               (warm-up) left out. Also reported: the process's wall time (model load, one validation
               window before and after, writing OUT and OUT.state.pt included), the summary's own
               tokens_per_second (mean over all steps, warm-up included) and its peak RSS.
  torch        sample_ckpts/bitnet_reference.py's StudentLLM with the checkpoint's state dict,
               torch.optim.AdamW; the per-step time of the step above, median excluding the first.
               The reference's activation quantizer uses the clamp epsilon (max(max|x|, 1e-5)) where
               bitfsck's default adds 1e-8: a different rounding of a few values, not a different cost.

On Debian, Python's torch and bitfsck-model share one LibTorch (libtorch_cpu.so.1.13) and one BLAS, so
the ratio bitfsck/torch measures the overheads around the kernels (Python dispatch and autograd tape
vs. the C++ trainer's own graph, optimizer and bookkeeping), not the kernels themselves.

Usage: /usr/bin/python3 bench/bench_finetune.py [--bitfsck PATH] [--threads N] [--steps S]
                                               [--checkpoint CKPT] [--small] [--blas-dir DIR]
  --small      validate the script on the tiny model of sample_ckpts/run/ (step_000050.pt, vocab 256,
               hidden 64, 2 layers), batch 16 × seq 64, tokens from sample_ckpts/run/train.bin; the summary
               goes to bench/out/bench_finetune_small.json instead.
  --blas-dir   a folder holding another libblas.so.3 (e.g. OpenBLAS's openblas-pthread/); the script
               re-executes itself with it first on LD_LIBRARY_PATH (and OPENBLAS_NUM_THREADS=--threads
               unless set), so both Python's torch and bitfsck-model load it.
With Debian's reference BLAS (~0.6 GFLOP/s) one training step of the 100M model takes minutes: keep
--steps small (default 3; the median is then over 2 steps) or use OpenBLAS via --blas-dir: with
OpenBLAS on 2 cores a step takes ~10 s on either side and `--steps 5` runs in about 3 minutes, peak RSS
~5.5 GB per side. Other work on the machine (a build, ctest) easily halves one side's numbers: run it
on an idle machine and look at per_step_tokens_per_s.
Prints a JSON summary and writes it to bench/out/bench_finetune.json.
"""
import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
sys.path.insert(0, os.path.join(ROOT, "sample_ckpts"))
import bitnet_reference as ref  # noqa: E402

REEXEC_MARK = "BENCH_FINETUNE_REEXEC"


def find_bitfsck():
    """build/cli/bitfsck first, then the other build*/ folders; the first whose `finetune --help` works
    (an older build, e.g. build-gui/, may predate the subcommand)."""
    paths = sorted(glob.glob(os.path.join(ROOT, "build*", "cli", "bitfsck")), key=lambda p: (not p.startswith(os.path.join(ROOT, "build", "")), p))
    for p in paths:
        if os.access(p, os.X_OK) and subprocess.run([p, "finetune", "--help"], capture_output=True).returncode == 0:
            return p
    sys.exit("bench_finetune: no build*/cli/bitfsck with a finetune subcommand; build it or pass --bitfsck")


def blas_library():
    """The BLAS this process (and so LibTorch in bitfsck-model, started with the same environment)
    loaded: Debian's default is the reference BLAS, ~30x slower on these matrices than OpenBLAS."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1]}
    return sorted(libs)


def reexec_with_blas(blas_dir, threads):
    """Re-run this script with blas_dir first on LD_LIBRARY_PATH (the dynamic loader reads it only at start)."""
    if os.environ.get(REEXEC_MARK) == "1":
        return
    if not os.path.exists(os.path.join(blas_dir, "libblas.so.3")):
        sys.exit(f"bench_finetune: no libblas.so.3 in {blas_dir}")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [os.path.abspath(blas_dir), env.get("LD_LIBRARY_PATH", "")] if p)
    env.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    env[REEXEC_MARK] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def write_random_tokens(path, vocab, n, seed=0):
    ids = np.random.default_rng(seed).integers(0, vocab, size=n, dtype=np.uint16)
    ids.astype("<u2").tofile(path)


def model_config(ckpt):
    """The ModelConfig of a checkpoint: its stored config.model when there is one, else inferred from shapes."""
    stored = ckpt.get("config", {}).get("model") if isinstance(ckpt.get("config"), dict) else None
    if isinstance(stored, dict):
        return ref.ModelConfig(**stored)
    sd = ckpt["model_state_dict"]
    V, H = sd["embed_tokens.weight"].shape
    hd = sd["layers.0.self_attn.q_norm.weight"].shape[0]
    return ref.ModelConfig(vocab_size=V, hidden_size=H, num_layers=sum(1 for k in sd if k.endswith("q_proj.weight")),
                           num_heads=sd["layers.0.self_attn.q_proj.weight"].shape[0] // hd,
                           num_kv_heads=sd["layers.0.self_attn.k_proj.weight"].shape[0] // hd, head_dim=hd,
                           intermediate_size=sd["layers.0.mlp.gate_proj.weight"].shape[0])


def run_bitfsck(exe, args, tokens_path, output):
    cmd = [exe, "finetune", args.checkpoint, "-o", output, "--tokens", tokens_path, "--val-tokens", tokens_path,
           "--val-windows", "1", "--seq-len", str(args.seq_len), "--batch", str(args.batch), "--steps", str(args.steps),
           "--optimizer", "adamw", "--lr", "1e-4", "--threads", str(args.threads), "--json"]
    print("bench_finetune: " + " ".join(cmd), file=sys.stderr, flush=True)
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        stdout = p.stdout.read()
        p.stdout.close()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            sys.exit(f"bitfsck failed ({p.returncode}): {err.read().decode(errors='replace')}")
    summary = json.loads(stdout)
    with open(summary["metrics"]) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    steps = [line for line in lines if "tokens_per_s" in line]
    tps = [line["tokens_per_s"] for line in steps]
    timed = tps[1:] if len(tps) > 1 else tps
    return {"command": cmd, "tokens_per_second": statistics.median(timed), "per_step_tokens_per_s": tps,
            "summary_tokens_per_second": summary["tokens_per_second"], "wall_seconds": wall,
            "loss_first": steps[0]["loss"] if steps else None, "loss_last": steps[-1]["loss"] if steps else None,
            "val_loss_before": summary.get("val_loss_before"), "val_loss_after": summary.get("val_loss_after"),
            "peak_rss_mib": usage.ru_maxrss / 1024, "notes": summary.get("notes", [])}


def run_torch(args, tokens_path, cfg, sd):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ref.StudentLLM(cfg).train()
    model.load_state_dict(sd)
    del sd
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    data = ref.read_tokens(tokens_path)
    gen = torch.Generator().manual_seed(1337)
    B, T = args.batch, args.seq_len
    times, losses = [], []
    for _ in range(args.steps):
        offs = torch.randint(0, len(data) - T - 1, (B,), generator=gen).tolist()
        win = torch.stack([data[o:o + T + 1] for o in offs])
        x, y = win[:, :-1], win[:, 1:]
        t0 = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        print(f"bench_finetune: torch step {len(times)}/{args.steps}: {times[-1]:.2f} s, loss {losses[-1]:.4f}",
              file=sys.stderr, flush=True)
    tps = [B * T / t for t in times]
    timed = tps[1:] if len(tps) > 1 else tps
    return {"tokens_per_second": statistics.median(timed), "per_step_tokens_per_s": tps,
            "loss_first": losses[0], "loss_last": losses[-1],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": sum(p.numel() for p in model.parameters())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bitfsck", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per side (the first is left out of the median)")
    ap.add_argument("--checkpoint", default=None, help="default: bench/out/ckpt_100m.pt (created when missing), or with "
                    "--small sample_ckpts/run/step_000050.pt")
    ap.add_argument("--tokens", default=None, help="token file (uint16); default: random ids in bench/out/tokens_100m.bin, "
                    "or with --small sample_ckpts/run/train.bin")
    ap.add_argument("--small", action="store_true", help="the tiny model of sample_ckpts/run, batch 16 x seq 64")
    ap.add_argument("--batch", type=int, default=None, help="default 4 (16 with --small)")
    ap.add_argument("--seq-len", type=int, default=None, help="default 256 (64 with --small)")
    ap.add_argument("--blas-dir", default=None, help="folder with another libblas.so.3 (e.g. OpenBLAS), put first on LD_LIBRARY_PATH")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-bitfsck", action="store_true")
    args = ap.parse_args()
    if args.blas_dir:
        reexec_with_blas(args.blas_dir, args.threads)
    if args.steps < 1:
        sys.exit("bench_finetune: --steps must be at least 1")
    os.makedirs(OUT, exist_ok=True)
    if args.small:
        args.checkpoint = args.checkpoint or os.path.join(ROOT, "sample_ckpts", "run", "step_000050.pt")
        args.tokens = args.tokens or os.path.join(ROOT, "sample_ckpts", "run", "train.bin")
        args.batch = args.batch or 16
        args.seq_len = args.seq_len or 64
        tag = "small"
    else:
        args.checkpoint = args.checkpoint or os.path.join(OUT, "ckpt_100m.pt")
        args.batch = args.batch or 4
        args.seq_len = args.seq_len or 256
        tag = "100m"
        if not os.path.exists(args.checkpoint):
            subprocess.run([sys.executable, os.path.join(HERE, "peers", "make_100m_checkpoint.py"), args.checkpoint], check=True)

    ckpt = torch.load(args.checkpoint)
    cfg = model_config(ckpt)
    sd = ckpt["model_state_dict"]
    del ckpt
    if args.tokens is None:
        args.tokens = os.path.join(OUT, "tokens_100m.bin")
        write_random_tokens(args.tokens, cfg.vocab_size, 50_000)

    # bitfsck first, while this process holds only the state dict (the model and optimizer come after).
    cpp = None
    if not args.skip_bitfsck:
        cpp = run_bitfsck(args.bitfsck or find_bitfsck(), args, args.tokens, os.path.join(OUT, f"ft_{tag}.pt"))
    py = None
    if not args.skip_torch:
        py = run_torch(args, args.tokens, cfg, sd)
    del sd

    summary = {"model": {"checkpoint": os.path.relpath(args.checkpoint, ROOT), "layers": cfg.num_layers,
                         "hidden": cfg.hidden_size, "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads,
                         "head_dim": cfg.head_dim, "intermediate": cfg.intermediate_size, "vocab": cfg.vocab_size},
               "batch": [args.batch, args.seq_len], "steps": args.steps, "threads": args.threads,
               "optimizer": "adamw lr 1e-4 betas (0.9, 0.95), clip 1.0",
               "torch": torch.__version__, "blas": blas_library(),
               "tokens": os.path.relpath(args.tokens, ROOT),
               "tokens_per_second": {"bitfsck": cpp and cpp["tokens_per_second"], "torch": py and py["tokens_per_second"]},
               "ratio_bitfsck_over_torch": (cpp["tokens_per_second"] / py["tokens_per_second"]) if cpp and py else None,
               "note": "median per-step tokens/s, first step excluded; Python's torch and bitfsck-model share one "
                       "LibTorch and one BLAS on Debian, so the ratio measures overheads, not kernels",
               "bitfsck": cpp, "torch_eager": py}
    if py:
        summary["model"]["parameters"] = py["parameters"]
    print(json.dumps(summary, indent=1))
    with open(os.path.join(OUT, "bench_finetune.json" if tag == "100m" else f"bench_finetune_{tag}.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
