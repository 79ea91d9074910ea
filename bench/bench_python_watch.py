#!/usr/bin/env python3
"""Cost of bitfsck.watch.CollapseWatch in a training loop, as ratios from one run side by side.

  1. the sample run's student (sample_ckpts/make_run.py recipe), 300 steps, with and without a
     watch at every=100 and every=50: watch seconds / training seconds;
  2. scan_state_dict on a 100M-parameter state dict of the Distillix 125M shapes (in memory): the
     step time above which every=100 costs < 2% (scan seconds / (100 x 2%));
  3. `import bitfsck` time.
Usage: .venv/bin/python3 bench/bench_python_watch.py   (after scripts/python-package build)
"""
import collections
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample_ckpts"))
import make_run  # noqa: E402
import bitfsck  # noqa: E402
import bitfsck.watch  # noqa: E402

ref = make_run.ref


def train(steps, watch):
    T = make_run.TRAIN
    torch.set_num_threads(1)
    torch.manual_seed(T["seed"])
    tokens = ref.read_tokens(str(ROOT / "sample_ckpts" / "run" / "train.bin"))
    cfg = ref.ModelConfig()
    model = ref.StudentLLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=T["lr"])
    gen = torch.Generator().manual_seed(T["seed"])
    seq, bs = T["seq_len"], T["batch_size"]
    t0 = time.perf_counter()
    for step in range(steps):
        offs = torch.randint(0, len(tokens) - seq - 1, (bs,), generator=gen)
        x = torch.stack([tokens[o:o + seq] for o in offs])
        y = torch.stack([tokens[o + 1:o + seq + 1] for o in offs])
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if watch:
            watch.step(model, step + 1)
    return time.perf_counter() - t0


def main():
    steps = 300
    base = train(steps, None)
    print(f"student, {steps} steps: {base:.2f} s without a watch ({1000 * base / steps:.1f} ms/step)")
    for every in (100, 50):
        w = bitfsck.watch.CollapseWatch(every=every, on_collapse=lambda e: None, threads=1)
        total = train(steps, w)
        print(f"  every={every}: {w.checks} checks, {w.seconds:.3f} s in the watch = {100 * w.seconds / total:.2f}% of the loop "
              f"({1000 * w.seconds / max(w.checks, 1):.1f} ms per check); loop {total:.2f} s ({100 * (total / base - 1):+.1f}% vs none)")

    torch.manual_seed(0)
    V, H, L, F, KV, HD = 32000, 768, 12, 2048, 4, 64
    sd = collections.OrderedDict(embed_tokens=torch.randn(V, H) * 0.02)
    for i in range(L):
        p = f"layers.{i}."
        for n, shape in (("self_attn.q_proj", (H, H)), ("self_attn.k_proj", (KV * HD, H)), ("self_attn.v_proj", (KV * HD, H)),
                         ("self_attn.o_proj", (H, H)), ("mlp.gate_proj", (F, H)), ("mlp.up_proj", (F, H)), ("mlp.down_proj", (H, F))):
            sd[p + n + ".weight"] = torch.randn(*shape) * 0.02
    n = sum(t.numel() for t in sd.values())
    for threads in (1, 0):
        t0 = time.perf_counter()
        r = bitfsck.scan_state_dict(sd, threads=threads)
        s = time.perf_counter() - t0
        print(f"100M shapes ({n / 1e6:.0f}M params, float32), threads={threads or 'all'}: scan_state_dict {s:.2f} s ({r.verdict}); "
              f"every=100 stays under 2% when a step takes more than {s / 2:.2f} s")

    t = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); import bitfsck; print(time.perf_counter()-t)"],
                             capture_output=True, text=True, cwd="/")
        t.append(float(out.stdout))
    print(f"import bitfsck: {1000 * min(t):.0f} ms (best of 5, fresh interpreters)")


if __name__ == "__main__":
    main()
