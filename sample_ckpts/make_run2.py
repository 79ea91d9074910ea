#!/usr/bin/python3
"""A second real, small, collapsing ternary training run: sample_ckpts/run2/, and its control.

Same model as run/ (bitnet_reference.StudentLLM, byte-level, vocabulary 256, 2 layers, hidden 64),
other Python standard-library sources from /usr/lib/python3.11/, AdamW with two parameter groups,
but a different fault, in a different place:
  - MLP, norms and embedding: a healthy setup (small decoupled weight decay) all along;
  - attention projections (q, k, v, o): healthy (decoupled decay 1e-3) until step FAULT_STEP,
    then the run is "resumed" with a wrong config, attn_weight_decay 1e3 for 1e-3 (a lost minus
    sign). AdamW multiplies those weights by (1 - lr * wd) every step, 0.92 down to 0.12 here,
    while Adam's normalised gradient step (u * lr, |u| <= ~1) pushes back: they settle near
    |w| ~ u / wd <= ~1e-3, and below it, since u is small for noisy gradients. The attention std
    goes from ~0.025 to ~5e-6 within one checkpoint interval and stays below 1e-3 (q and k fall
    to ~1e-12, every ternary code 0; v and o settle near 5e-4), while the MLPs keep learning (and
    move ~30% more, making up for the dead attention). The peak lr is lower than run/'s so that
    lr * wd stays below 1 (above it, AdamW flips the weights' sign every step).
    Each checkpoint's config['train'] is the config of the launch that wrote it: attn_weight_decay
    1e-3 and resumed_from_step None up to step FAULT_STEP, then 1e3 and FAULT_STEP.
The control (run2/control/) is the same model, seed and data trained without the fault: the run
is deterministic, so it shares the faulty run's first FAULT_STEP steps bit for bit; the script
trains those once, then continues from a copy of the model, optimizer and batch-sampler state
(`--control-from-scratch` trains it from step 0 instead, to check that both give the same file).
It saves only its final checkpoint.

Run from anywhere:  /usr/bin/python3 sample_ckpts/make_run2.py
Writes run2/train.bin, run2/val.bin (uint16 little-endian byte ids, nanoGPT layout), run2/step_*.pt
and run2/control/step_*.pt ({'model_state_dict', 'optimizer_state_dict' (last checkpoint only),
'step', 'config', 'train_loss', 'val_loss'}) and run2/run.expected.json (what torch computes from
each checkpoint). Deterministic: fixed seeds, fixed file lists, 1 thread.
"""
import collections
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bitnet_reference as ref  # noqa: E402
import make_run as run1  # noqa: E402  (weight_stats, sha256, ROLES, the collapse thresholds)

RUN = os.path.join(HERE, "run2")
CONTROL = os.path.join(RUN, "control")
STDLIB = run1.STDLIB

# Split by file, none of them used by run/. Fixed, sorted lists.
TRAIN_FILES = sorted(["inspect.py", "pathlib.py", "shutil.py"])
VAL_FILES = sorted(["pprint.py", "tokenize.py"])
TRAIN_TOKENS = 150_000  # x 2 bytes = ~300 KB
VAL_TOKENS = 30_000     # ~60 KB

TRAIN = dict(
    seed=4242,
    seq_len=96,
    batch_size=24,
    steps=400,
    save_every=50,        # 8 checkpoints + the control's one: the folder stays near 6 MB
    warmup_steps=20,
    lr=1.2e-3,            # every group: warmup, then cosine to min_lr_frac
    weight_decay=0.01,    # decoupled (AdamW): MLP / norms / embedding
    attn_weight_decay=1e-3,  # decoupled (AdamW): attention projections, as meant (the control keeps it)
    min_lr_frac=0.1,
    betas=(0.9, 0.95),
    grad_clip=1.0,
)
FAULT_STEP = 150          # steps 151.. (0-based index >= 150) run with the wrong attention decay
FAULT_ATTN_WEIGHT_DECAY = 1e3  # what the resumed launch read instead of 1e-3

ROLES = run1.ROLES
ATTN_ROLES = [r for r in ROLES if r.startswith("attn")]
MLP_ROLES = [r for r in ROLES if r.startswith("mlp")]
COLLAPSE_STD = run1.COLLAPSE_STD
COLLAPSE_ZERO_FRAC = run1.COLLAPSE_ZERO_FRAC


def build_data():
    """As run/: the files' bytes joined by newlines, cut to a fixed token count."""
    return run1.build_data(RUN, TRAIN_FILES, VAL_FILES, TRAIN_TOKENS, VAL_TOKENS)


def lr_factor(step):
    """Linear warmup, then cosine from 1 to min_lr_frac over the rest of the run (step is 0-based)."""
    if step < TRAIN["warmup_steps"]:
        return (step + 1) / TRAIN["warmup_steps"]
    p = (step - TRAIN["warmup_steps"]) / max(1, TRAIN["steps"] - TRAIN["warmup_steps"])
    return TRAIN["min_lr_frac"] + (1 - TRAIN["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * p))


def is_attn_proj(name):
    return ".self_attn." in name and name.endswith("_proj.weight")


def train_config(cfg, faulty):
    """config['train'] as the launch that wrote the checkpoint had it (the resumed one had the wrong decay)."""
    t = dict(TRAIN, betas=list(TRAIN["betas"]))
    t["attn_weight_decay"] = FAULT_ATTN_WEIGHT_DECAY if faulty else TRAIN["attn_weight_decay"]
    t["resumed_from_step"] = FAULT_STEP if faulty else None
    return {"model": cfg.to_dict(), "train": t,
            "data": {"train_files": TRAIN_FILES, "val_files": VAL_FILES, "stdlib": STDLIB}}


class Trainer:
    """Model, AdamW (two groups) and the batch sampler; state can be copied to fork the control."""

    def __init__(self, cfg):
        torch.manual_seed(TRAIN["seed"])
        self.cfg = cfg
        self.model = ref.StudentLLM(cfg)
        attn = [p for n, p in self.model.named_parameters() if is_attn_proj(n)]
        other = [p for n, p in self.model.named_parameters() if not is_attn_proj(n)]
        self.opt = torch.optim.AdamW([
            {"params": other, "lr": TRAIN["lr"], "weight_decay": TRAIN["weight_decay"], "name": "mlp_norm_embed"},
            {"params": attn, "lr": TRAIN["lr"], "weight_decay": TRAIN["attn_weight_decay"], "name": "attn"},
        ], betas=TRAIN["betas"])
        self.gen = torch.Generator().manual_seed(TRAIN["seed"])
        self.losses = []
        self.step = 0

    def snapshot(self):
        return (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.opt.state_dict()),
                self.gen.get_state(), list(self.losses), self.step)

    def restore(self, snap):
        sd, osd, gen_state, losses, step = snap
        self.model.load_state_dict(sd)
        self.opt.load_state_dict(copy.deepcopy(osd))
        self.gen.set_state(gen_state)
        self.losses, self.step = list(losses), step

    def train_until(self, stop, train, faulty, on_save):
        seq, bs, V = TRAIN["seq_len"], TRAIN["batch_size"], self.cfg.vocab_size
        while self.step < stop:
            step = self.step
            for g in self.opt.param_groups:
                g["lr"] = TRAIN["lr"] * lr_factor(step)
                if g["name"] == "attn":  # the wrong config of the resumed launch
                    g["weight_decay"] = FAULT_ATTN_WEIGHT_DECAY if faulty and step >= FAULT_STEP else TRAIN["attn_weight_decay"]
            offs = torch.randint(0, len(train) - seq - 1, (bs,), generator=self.gen)
            x = torch.stack([train[o:o + seq] for o in offs])
            y = torch.stack([train[o + 1:o + seq + 1] for o in offs])
            loss = F.cross_entropy(self.model(x).reshape(-1, V), y.reshape(-1))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), TRAIN["grad_clip"])
            self.opt.step()
            self.losses.append(loss.item())
            self.step += 1
            if self.step % TRAIN["save_every"] == 0:
                on_save(self)

    def save(self, folder, val, faulty):
        done, n = self.step, TRAIN["save_every"]
        train_loss = sum(self.losses[-n:]) / n
        val_loss = ref.window_loss(self.model, val, TRAIN["seq_len"])
        ckpt = {"model_state_dict": self.model.state_dict(), "step": done,
                "config": train_config(self.cfg, faulty and done > FAULT_STEP),
                "train_loss": train_loss, "val_loss": val_loss}
        if done == TRAIN["steps"]:
            ckpt["optimizer_state_dict"] = self.opt.state_dict()
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"step_{done:06d}.pt")
        torch.save(ckpt, path)
        return path


def describe_checkpoint(path, val):
    """What torch computes from the saved file itself (loaded back, and re-evaluated)."""
    model, ckpt = ref.load_checkpoint(path)
    sd = ckpt["model_state_dict"]
    layers = []
    for i in range(model.cfg.num_layers):
        layers.append(collections.OrderedDict(
            (role, run1.weight_stats(sd[f"layers.{i}.{suffix}"])) for role, suffix in ROLES.items()))
    val_loss = ref.window_loss(model, val, ckpt["config"]["train"]["seq_len"])
    assert val_loss == ckpt["val_loss"], (val_loss, ckpt["val_loss"])  # the saved model is the one evaluated
    collapsed = any(v["std"] < COLLAPSE_STD or v["ternary_zero_frac"] > COLLAPSE_ZERO_FRAC
                    for L in layers for role, v in L.items() if role in ATTN_ROLES)
    return collections.OrderedDict([
        ("file", os.path.basename(path)), ("step", ckpt["step"]), ("train_loss", ckpt["train_loss"]),
        ("val_loss", val_loss), ("has_optimizer_state", "optimizer_state_dict" in ckpt),
        ("attn_weight_decay", ckpt["config"]["train"]["attn_weight_decay"]),
        ("collapsed", collapsed), ("layers", layers)])


def relative_change(path_a, path_b, roles):
    """||b - a|| / ||a|| (Frobenius, float64) over the given roles' matrices of every layer: a the last
    healthy checkpoint, b the latest (what `bitfsck plan` measures before it proposes a graft)."""
    a, b = torch.load(path_a)["model_state_dict"], torch.load(path_b)["model_state_dict"]
    names = [n for n in b if any(n.endswith("." + ROLES[r]) for r in roles)]
    diff = sum(((b[n].double() - a[n].double()) ** 2).sum().item() for n in names)
    norm = sum((a[n].double() ** 2).sum().item() for n in names)
    return math.sqrt(diff / norm)


def print_record(r, t_start):
    def worst(roles, key, f):
        return f(v[key] for L in r["layers"] for k, v in L.items() if k in roles)
    print(f"step {r['step']:4d}  train {r['train_loss']:.3f}  val {r['val_loss']:.3f}  "
          f"attn std min {worst(ATTN_ROLES, 'std', min):.2e} zeros max {worst(ATTN_ROLES, 'ternary_zero_frac', max):.3f}  "
          f"mlp std min {worst(MLP_ROLES, 'std', min):.2e} zeros max {worst(MLP_ROLES, 'ternary_zero_frac', max):.3f}  "
          f"({time.time() - t_start:.1f} s)", flush=True)


def main():
    t_start = time.time()
    control_from_scratch = "--control-from-scratch" in sys.argv[1:]
    # One thread: bit-identical results whatever the core count (and far faster on a busy 2-core machine).
    torch.set_num_threads(1)
    sources = build_data()
    train = ref.read_tokens(os.path.join(RUN, "train.bin"))
    val = ref.read_tokens(os.path.join(RUN, "val.bin"))
    cfg = ref.ModelConfig()

    records = []

    def save_faulty(t):
        records.append(describe_checkpoint(t.save(RUN, val, faulty=True), val))
        print_record(records[-1], t_start)

    def save_control(t):
        if t.step == TRAIN["steps"]:
            control.append(describe_checkpoint(t.save(CONTROL, val, faulty=False), val))
            print("control:", end=" ")
            print_record(control[-1], t_start)

    trainer = Trainer(cfg)
    trainer.train_until(FAULT_STEP, train, True, save_faulty)
    fork = trainer.snapshot()  # the control shares these steps: no fault before FAULT_STEP
    trainer.train_until(TRAIN["steps"], train, True, save_faulty)

    control = []
    trainer = Trainer(cfg)
    if not control_from_scratch:
        trainer.restore(fork)
    trainer.train_until(TRAIN["steps"], train, False, save_control)

    onset = next((r["step"] for r in records if r["collapsed"]), None)
    healthy = [r["step"] for r in records if onset is None or r["step"] < onset]
    last_healthy = healthy[-1] if healthy else None
    final = records[-1]
    mlp_change = attn_change = None
    if last_healthy is not None:
        lh = os.path.join(RUN, f"step_{last_healthy:06d}.pt")
        mlp_change = relative_change(lh, os.path.join(RUN, final["file"]), MLP_ROLES)
        attn_change = relative_change(lh, os.path.join(RUN, final["file"]), ATTN_ROLES)

    exp = collections.OrderedDict()
    exp["description"] = ("A real ternary training run whose attention projections collapse under a wrongly large "
                          "decoupled weight decay from a resumed launch, while the MLPs keep learning")
    exp["collapse_criterion"] = {
        "roles": ATTN_ROLES,
        "std_below": COLLAPSE_STD,
        "bitnet_ternary_zero_frac_above": COLLAPSE_ZERO_FRAC,
        "rule": "a checkpoint is collapsed when any attention tensor has std < std_below or zeros > zero_frac_above",
    }
    exp["fault"] = {
        "kind": "decoupled (AdamW) weight decay on the attention projections q, k, v, o",
        "from_step": FAULT_STEP,
        "steps_affected": f"{FAULT_STEP + 1}..{TRAIN['steps']} (1-based; optimizer steps with 0-based index >= {FAULT_STEP})",
        "attn_weight_decay_before": TRAIN["attn_weight_decay"],
        "attn_weight_decay": FAULT_ATTN_WEIGHT_DECAY,
        "per_step_factor": "w *= 1 - lr * attn_weight_decay (torch.optim.AdamW), lr on the same cosine schedule",
    }
    exp["collapse_onset_step"] = onset
    exp["last_healthy_step"] = last_healthy
    exp["mlp_relative_change_last_healthy_to_final"] = mlp_change
    exp["attn_relative_change_last_healthy_to_final"] = attn_change
    exp["relative_change_definition"] = ("sqrt(sum ||W_final - W_last_healthy||^2 / sum ||W_last_healthy||^2) over the roles' "
                                         "matrices of every layer, float64")
    exp["val_windows"] = {"seq_len": TRAIN["seq_len"],
                          "offsets": "0, seq_len, 2*seq_len, ... while offset + seq_len + 1 <= len(val)",
                          "count": len(ref.val_offsets(len(val), TRAIN["seq_len"])),
                          "loss": "mean cross entropy in nats, fp32 model"}
    exp["train_loss_definition"] = f"mean training-batch loss over the {TRAIN['save_every']} steps up to the checkpoint"
    exp["config"] = train_config(cfg, True)
    exp["config_before_fault"] = train_config(cfg, False)
    exp["data"] = {"train_tokens": len(train), "val_tokens": len(val),
                   "train_bin_sha256": run1.sha256(os.path.join(RUN, "train.bin")),
                   "val_bin_sha256": run1.sha256(os.path.join(RUN, "val.bin")),
                   "source_sha256": sources}
    exp["checkpoints"] = records
    exp["control"] = collections.OrderedDict([
        ("description", "the same model, seed and data without the fault (attention weight decay stays "
                        f"{TRAIN['attn_weight_decay']}); only the final checkpoint is saved"),
        ("path", "control/" + control[0]["file"]),
        ("val_loss", control[0]["val_loss"]),
        ("checkpoint", control[0]),
    ])
    with open(os.path.join(RUN, "run.expected.json"), "w") as f:
        json.dump(exp, f, indent=1, allow_nan=False)
        f.write("\n")
    elapsed = time.time() - t_start
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(RUN) for n in names)
    print(f"collapse onset step {onset}, last healthy step {last_healthy}; MLP moved {mlp_change:.1%} "
          f"after it (attention {attn_change:.1%})")
    print(f"val loss: last healthy {next(r['val_loss'] for r in records if r['step'] == last_healthy):.4f}, "
          f"final {final['val_loss']:.4f}, control {control[0]['val_loss']:.4f}")
    print(f"run2 folder {size / 1e6:.2f} MB; make_run2.py took {elapsed:.1f} s")


if __name__ == "__main__":
    main()
