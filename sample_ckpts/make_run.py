#!/usr/bin/python3
"""A real, small, collapsing ternary training run: sample_ckpts/run/.

Trains bitnet_reference.StudentLLM (byte-level, vocabulary 256) on Python standard-library sources
from /usr/lib/python3.11/, with AdamW and two parameter groups:
  - attention, norms and embedding: a healthy setup (small decoupled weight decay);
  - MLP weights: a large *coupled* L2 penalty (lambda * W added to the gradient before AdamW),
    the mistake that kills them: Adam normalises the penalty's gradient, so the weights are
    pulled to zero at a rate set by the learning rate, not by their size, and once an MLP is
    small its SwiGLU gradients (products of the other two tiny matrices) cannot pull it back.
MLP weight std goes from 0.02 to far below 1e-3 while attention keeps learning; bitfsck must say when.

Run from anywhere:  /usr/bin/python3 sample_ckpts/make_run.py
Writes run/train.bin, run/val.bin (uint16 little-endian byte ids, nanoGPT layout), run/step_*.pt
({'model_state_dict', 'optimizer_state_dict' (last checkpoint only), 'step', 'config',
'train_loss', 'val_loss'}) and run/run.expected.json (what torch computes from each checkpoint).
Deterministic: fixed seeds, fixed file list, 1 thread.
"""
import collections
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bitnet_reference as ref  # noqa: E402

RUN = os.path.join(HERE, "run")
STDLIB = "/usr/lib/python3.11"

# Split by file: no validation file is ever seen in training. Fixed, sorted lists.
TRAIN_FILES = sorted(["argparse.py", "contextlib.py", "functools.py", "heapq.py"])
VAL_FILES = sorted(["random.py", "textwrap.py"])
TRAIN_TOKENS = 150_000  # x 2 bytes = ~300 KB
VAL_TOKENS = 30_000     # ~60 KB

TRAIN = dict(
    seed=1337,
    seq_len=64,
    batch_size=16,
    steps=350,
    save_every=50,        # 7 checkpoints: the run folder stays near 4 MB
    warmup_steps=20,
    lr=3e-3,              # attention / norms / embedding: warmup, then cosine to min_lr_frac
    weight_decay=0.01,    # decoupled (AdamW), attention / norms / embedding
    min_lr_frac=0.1,
    # MLP weights: warmup, then a constant lr, and a coupled L2 (grad += mlp_l2 * W). Since Adam
    # normalises the gradient, lambda * W dominating it means every weight moves towards zero by
    # about mlp_lr per step: a soft threshold that grows with the summed lr. mlp_lr sets when the
    # ternary zeros pass 80% (about step 200); the constant lr takes the std below 1e-3 by the end.
    mlp_lr=1.7e-4,
    mlp_l2=30.0,
    betas=(0.9, 0.95),
    grad_clip=1.0,
)

ROLES = collections.OrderedDict([
    ("attn_q", "self_attn.q_proj.weight"), ("attn_k", "self_attn.k_proj.weight"),
    ("attn_v", "self_attn.v_proj.weight"), ("attn_o", "self_attn.o_proj.weight"),
    ("mlp_gate", "mlp.gate_proj.weight"), ("mlp_up", "mlp.up_proj.weight"), ("mlp_down", "mlp.down_proj.weight"),
])

# Collapse criteria (run.expected.json states them too).
COLLAPSE_STD = 1e-3
COLLAPSE_ZERO_FRAC = 0.8


def build_data(run=RUN, train_files=TRAIN_FILES, val_files=VAL_FILES, train_tokens=TRAIN_TOKENS, val_tokens=VAL_TOKENS):
    """Concatenated file bytes (files joined by a newline), cut to a fixed token count (make_run2.py
    calls it with its own folder and files)."""
    os.makedirs(run, exist_ok=True)
    sources = {}
    for split, files, n in (("train", train_files, train_tokens), ("val", val_files, val_tokens)):
        blob = b""
        for name in files:
            with open(os.path.join(STDLIB, name), "rb") as f:
                data = f.read()
            sources[name] = hashlib.sha256(data).hexdigest()
            blob += data + b"\n"
        assert len(blob) >= n, (split, len(blob))
        np.frombuffer(blob[:n], dtype=np.uint8).astype("<u2").tofile(os.path.join(run, f"{split}.bin"))
    return sources


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def lr_factor(step, cosine=True):
    """Linear warmup, then (cosine) from 1 to min_lr_frac over the rest of the run (step is 0-based)."""
    if step < TRAIN["warmup_steps"]:
        return (step + 1) / TRAIN["warmup_steps"]
    if not cosine:
        return 1.0
    p = (step - TRAIN["warmup_steps"]) / max(1, TRAIN["steps"] - TRAIN["warmup_steps"])
    return TRAIN["min_lr_frac"] + (1 - TRAIN["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * p))


def is_mlp(name):
    return ".mlp." in name


def weight_stats(w):
    """std (unbiased), absmean and the bitnet-convention ternary zero fraction, in float64."""
    d = w.detach().double()
    absmean = d.abs().mean().item()
    scale = max(absmean, 1e-5)  # bitnet: 1 / clamp(mean|W|, 1e-5)
    codes = torch.clamp(torch.round(d / scale), -1, 1)
    return {"std": d.std().item(), "absmean": absmean, "ternary_zero_frac": (codes == 0).double().mean().item()}


def main():
    t_start = time.time()
    # One thread: bit-identical results whatever the core count, and on a busy 2-core machine two
    # OpenMP threads spin against each other (measured here: ~8x slower per step than one).
    torch.set_num_threads(1)
    torch.manual_seed(TRAIN["seed"])
    sources = build_data()
    train = ref.read_tokens(os.path.join(RUN, "train.bin"))
    val = ref.read_tokens(os.path.join(RUN, "val.bin"))

    cfg = ref.ModelConfig()
    model = ref.StudentLLM(cfg)
    mlp_params = [p for n, p in model.named_parameters() if is_mlp(n)]
    other_params = [p for n, p in model.named_parameters() if not is_mlp(n)]
    opt = torch.optim.AdamW([
        {"params": other_params, "lr": TRAIN["lr"], "weight_decay": TRAIN["weight_decay"], "name": "attn_norm_embed"},
        {"params": mlp_params, "lr": TRAIN["mlp_lr"], "weight_decay": 0.0, "name": "mlp"},
    ], betas=TRAIN["betas"])
    for g in opt.param_groups:
        g["peak_lr"] = g["lr"]
    config = {"model": cfg.to_dict(), "train": dict(TRAIN, betas=list(TRAIN["betas"])),
              "data": {"train_files": TRAIN_FILES, "val_files": VAL_FILES, "stdlib": STDLIB}}

    gen = torch.Generator().manual_seed(TRAIN["seed"])
    seq, bs = TRAIN["seq_len"], TRAIN["batch_size"]
    losses, records = [], []
    for step in range(TRAIN["steps"]):
        for g in opt.param_groups:
            g["lr"] = g["peak_lr"] * lr_factor(step, cosine=g["name"] != "mlp")
        offs = torch.randint(0, len(train) - seq - 1, (bs,), generator=gen)
        x = torch.stack([train[o:o + seq] for o in offs])
        y = torch.stack([train[o + 1:o + seq + 1] for o in offs])
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        # The coupled L2 on MLP weights: added after clipping, so the clip cannot hide it.
        with torch.no_grad():
            for p in mlp_params:
                p.grad.add_(p, alpha=TRAIN["mlp_l2"])
        opt.step()
        losses.append(loss.item())

        done = step + 1
        if done % TRAIN["save_every"] == 0:
            train_loss = sum(losses[-TRAIN["save_every"]:]) / TRAIN["save_every"]
            val_loss = ref.window_loss(model, val, seq)
            ckpt = {"model_state_dict": model.state_dict(), "step": done, "config": config,
                    "train_loss": train_loss, "val_loss": val_loss}
            if done == TRAIN["steps"]:
                ckpt["optimizer_state_dict"] = opt.state_dict()
            path = os.path.join(RUN, f"step_{done:06d}.pt")
            torch.save(ckpt, path)
            records.append(describe_checkpoint(path, val))
            r = records[-1]
            mlp_std = min(v["std"] for L in r["layers"] for k, v in L.items() if k.startswith("mlp"))
            mlp_zero = max(v["ternary_zero_frac"] for L in r["layers"] for k, v in L.items() if k.startswith("mlp"))
            print(f"step {done:4d}  train {train_loss:.3f}  val {val_loss:.3f}  "
                  f"min mlp std {mlp_std:.2e}  max mlp zeros {mlp_zero:.3f}  ({time.time() - t_start:.1f} s)",
                  flush=True)

    onset = next((r["step"] for r in records if r["collapsed"]), None)
    healthy = [r["step"] for r in records if onset is None or r["step"] < onset]
    exp = collections.OrderedDict()
    exp["description"] = "A real ternary training run whose MLP weights collapse under a coupled L2 penalty"
    exp["collapse_criterion"] = {
        "roles": ["mlp_gate", "mlp_up", "mlp_down"],
        "std_below": COLLAPSE_STD,
        "bitnet_ternary_zero_frac_above": COLLAPSE_ZERO_FRAC,
        "rule": "a checkpoint is collapsed when any MLP tensor has std < std_below or zeros > zero_frac_above",
    }
    exp["collapse_onset_step"] = onset
    exp["last_healthy_step"] = healthy[-1] if healthy else None
    exp["val_windows"] = {"seq_len": seq, "offsets": "0, seq_len, 2*seq_len, ... while offset + seq_len + 1 <= len(val)",
                          "count": len(ref.val_offsets(len(val), seq)), "loss": "mean cross entropy in nats, fp32 model"}
    exp["train_loss_definition"] = f"mean training-batch loss over the {TRAIN['save_every']} steps up to the checkpoint"
    exp["config"] = config
    exp["data"] = {"train_tokens": len(train), "val_tokens": len(val),
                   "train_bin_sha256": sha256(os.path.join(RUN, "train.bin")),
                   "val_bin_sha256": sha256(os.path.join(RUN, "val.bin")),
                   "source_sha256": sources}
    exp["checkpoints"] = records
    with open(os.path.join(RUN, "run.expected.json"), "w") as f:
        json.dump(exp, f, indent=1, allow_nan=False)
        f.write("\n")
    elapsed = time.time() - t_start
    size = sum(os.path.getsize(os.path.join(RUN, n)) for n in os.listdir(RUN))
    print(f"collapse onset step {onset}, last healthy step {exp['last_healthy_step']}")
    print(f"run folder {size / 1e6:.2f} MB; make_run.py took {elapsed:.1f} s")


def describe_checkpoint(path, val):
    """What torch computes from the saved file itself (loaded back, and re-evaluated)."""
    model, ckpt = ref.load_checkpoint(path)
    sd = ckpt["model_state_dict"]
    layers = []
    for i in range(model.cfg.num_layers):
        layers.append(collections.OrderedDict(
            (role, weight_stats(sd[f"layers.{i}.{suffix}"])) for role, suffix in ROLES.items()))
    val_loss = ref.window_loss(model, val, ckpt["config"]["train"]["seq_len"])
    assert val_loss == ckpt["val_loss"], (val_loss, ckpt["val_loss"])  # the saved model is the one evaluated
    collapsed = any(v["std"] < COLLAPSE_STD or v["ternary_zero_frac"] > COLLAPSE_ZERO_FRAC
                    for L in layers for role, v in L.items() if role.startswith("mlp"))
    return collections.OrderedDict([
        ("file", os.path.basename(path)), ("step", ckpt["step"]), ("train_loss", ckpt["train_loss"]),
        ("val_loss", val_loss), ("has_optimizer_state", "optimizer_state_dict" in ckpt),
        ("collapsed", collapsed), ("layers", layers)])


if __name__ == "__main__":
    main()
