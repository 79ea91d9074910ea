#!/usr/bin/python3
"""Reference values for bitfsck's C++ fine-tuning engine, computed by real PyTorch (sample_ckpts/finetune/).

Everything starts from the real checkpoint run/step_000050.pt (bitnet_reference.StudentLLM, before
its MLP collapses) and one fixed batch of run/train.bin, so a C++ test can load the same inputs and
compare, tensor by tensor, what it computes with what torch computes:

  batch.json     the batch: seq_len 32 and 4 window offsets (seeded torch.Generator); window o is
                 tokens[o : o + 33], inputs its first 32 tokens, targets its last 32.
  ce_grads.pt    {state-dict name: fp32 gradient} for every parameter, of the mean cross entropy
                 over the 4 x 32 targets, through the model's own forward (train mode; absmean
                 ternary weights and per-token int8 activations with straight-through estimators,
                 exactly as bitnet_reference's modules do; the tied lm_head is not quantized).
  reg_grads.pt   {"<regularizer>.<name>": fp32 gradient} of three weight regularizers, each ALONE
                 (no cross entropy), on layers.0.mlp.up_proj.weight and layers.1.self_attn.q_proj.weight,
                 with a fixed lattice scale S = 0.01, lambda = 1, summed over elements:
                   double_well  lambda * sum (|w| - S)^2            (d|w|/dw = sign(w), 0 at 0)
                   three_peaks  lambda * sum (w - c(w))^2,  c(w) = S * clamp(round(w / S), -1, 1), detached
                   wasserstein  lambda * sum_i (sort(w)_i - q_i)^2, q_i = S * Q((i + 1/2) / n), Q the
                                quantile function of the unit three-peak target of repair/src/align.cpp
                                (Gaussians of width 0.1 at -1, 0, +1 with healthy_gaussian_masses()),
                                gradient through torch.sort (stable: ties keep their order, as C++'s
                                std::stable_sort; the two tensors have no ties anyway).
  after_adamw.pt, after_sgd.pt, after_muon.pt
                 parameters after THREE optimizer steps from step 50's weights, using the CE gradient
                 of ce_grads.pt at every step (the same fixed gradient: the test needs no forward pass
                 to reproduce them), no clipping, no schedule. Only layer 0's seven ternary matrices,
                 embed_tokens.weight and norm.weight are stored (the files stay small; all other
                 parameters follow the same rules).
  step_000050_bf16.pt
                 the start checkpoint cast to bfloat16 (a bf16 run's checkpoint), for the fp32 master
                 weights that fine-tuning keeps beside a bf16 output.
  expected.json  the losses, hyper-parameters, formulas, per-tensor summaries, the torch version and
                 the sha256 of the inputs and of every output file.

Gradients and optimizer steps are float32 (as the model); the regularizers are evaluated in float64
from the float32 weights (their gradients are closed-form, so float64 gives the C++ side the exact
value to aim at) and stored as float32.

Run from anywhere:  /usr/bin/python3 sample_ckpts/make_finetune.py
Deterministic: fixed seed, 1 thread; re-running gives byte-identical files.
"""
import collections
import hashlib
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bitnet_reference as ref  # noqa: E402

OUT = os.path.join(HERE, "finetune")
START = os.path.join(HERE, "run", "step_000050.pt")
TOKENS = os.path.join(HERE, "run", "train.bin")

SEED = 4242
SEQ_LEN = 32
BATCH = 4

REG_TENSORS = ["layers.0.mlp.up_proj.weight", "layers.1.self_attn.q_proj.weight"]
REG_SCALE = 0.01     # S, fixed (no solving): the C++ test passes it explicitly
REG_LAMBDA = 1.0
TARGET_WIDTH = 0.1   # sigma / S, align.hpp's AlignParams default

STEPS = 3
ADAMW = dict(matrix_lr=1e-3, matrix_weight_decay=0.0, other_lr=5e-4, other_weight_decay=0.1,
             betas=(0.9, 0.95), eps=1e-8)
SGD = dict(matrix_lr=0.05, other_lr=0.01, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0)
MUON = dict(lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, ns_coefficients=(3.4445, -4.7750, 2.0315),
            norm_eps=1e-7, weight_decay=0.0)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def is_matrix(name):
    """The ternary matrices: every BitLinear weight (layers.{i}.*_proj.weight)."""
    return name.startswith("layers.") and name.endswith("_proj.weight")


def stored_names(names):
    """What the after_*.pt files keep: layer 0's ternary matrices, the embedding and the final norm."""
    return [n for n in names if (n.startswith("layers.0.") and is_matrix(n)) or n in ("embed_tokens.weight", "norm.weight")]


def summary(t):
    """float64 summary of a tensor, for a quick look and a coarse check without loading the .pt."""
    d = t.detach().double().flatten()
    return {"shape": list(t.shape), "sum": d.sum().item(), "norm": d.norm().item(), "absmax": d.abs().max().item(),
            "first": d[:4].tolist()}


def save_tensors(d, name):
    # clone(): each tensor gets its own storage, so torch.save writes only its own elements.
    path = os.path.join(OUT, name)
    torch.save(collections.OrderedDict((k, v.detach().clone().contiguous()) for k, v in d.items()), path)
    return path


# --- the batch and the cross-entropy gradient ------------------------------------------------------

def make_batch(n_tokens):
    gen = torch.Generator().manual_seed(SEED)
    # o + seq_len + 1 <= n_tokens: randint's high is exclusive.
    return [int(o) for o in torch.randint(0, n_tokens - SEQ_LEN, (BATCH,), generator=gen)]


def ce_gradients(model, tokens, offsets):
    x = torch.stack([tokens[o:o + SEQ_LEN] for o in offsets])
    y = torch.stack([tokens[o + 1:o + SEQ_LEN + 1] for o in offsets])
    model.train()  # no dropout exists; train mode only to say the forward is the training one
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # mean over 4 x 32
    loss.backward()
    grads = collections.OrderedDict((n, p.grad.detach().clone()) for n, p in model.named_parameters())
    return loss.item(), grads


# --- regularizers ---------------------------------------------------------------------------------

def normal_cdf(z):
    return 0.5 * torch.special.erfc(-z / math.sqrt(2.0))  # as align.cpp: 0.5 * erfc(-z / sqrt 2)


def healthy_gaussian_masses():
    """align.cpp's healthy_gaussian_masses(): zeros = P(|x| < E|x| / 2) for x ~ N(0, 1) = erf(sqrt(2/pi) / 2 / sqrt 2)."""
    zero = math.erf(math.sqrt(2.0 / math.pi) / 2 / math.sqrt(2.0))
    return (1 - zero) / 2, zero, (1 - zero) / 2


def unit_three_peak_quantiles(n, masses, width):
    """Q((i + 1/2) / n), i = 0..n-1, by bisection on the mixture CDF in float64, as align.cpp's
    UnitTarget::quantile_bisect: bracket [-1 - 40 w, 1 + 40 w], at most 200 halvings, stop when
    hi - lo <= 1e-15 (1 + |lo|), answer the midpoint. Vectorised; each element stops on its own."""
    neg, zero, pos = masses
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n

    def cdf(x):
        return neg * normal_cdf((x + 1) / width) + zero * normal_cdf(x / width) + pos * normal_cdf((x - 1) / width)

    lo = torch.full((n,), -1 - 40 * width, dtype=torch.float64)
    hi = torch.full((n,), 1 + 40 * width, dtype=torch.float64)
    for _ in range(200):
        active = hi - lo > 1e-15 * (1 + lo.abs())
        if not active.any():
            break
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < u
        lo = torch.where(active & below, mid, lo)
        hi = torch.where(active & ~below, mid, hi)
    return 0.5 * (lo + hi)


def regularizers(w32, quantiles):
    """{regularizer: (loss, fp32 gradient)} for one float32 tensor; each evaluated alone, in float64."""
    S, lam = REG_SCALE, REG_LAMBDA
    out = collections.OrderedDict()

    w = w32.detach().double().requires_grad_(True)
    loss = lam * ((w.abs() - S) ** 2).sum()  # torch's abs backward is sign(w): 0 at w = 0
    loss.backward()
    out["double_well"] = (loss.item(), w.grad.float())

    w = w32.detach().double().requires_grad_(True)
    c = (S * torch.clamp(torch.round(w / S), -1, 1)).detach()  # nearest lattice point, half to even
    loss = lam * ((w - c) ** 2).sum()
    loss.backward()
    out["three_peaks"] = (loss.item(), w.grad.float())

    w = w32.detach().double().requires_grad_(True)
    sorted_w = torch.sort(w.flatten(), stable=True).values
    loss = lam * ((sorted_w - S * quantiles) ** 2).sum()
    loss.backward()
    out["wasserstein"] = (loss.item(), w.grad.float())
    return out


# --- optimizers -----------------------------------------------------------------------------------

def fresh_model(ckpt):
    model = ref.StudentLLM(ref.ModelConfig(**ckpt["config"]["model"]))
    model.load_state_dict(ckpt["model_state_dict"])
    return model


def split(model):
    mats = [(n, p) for n, p in model.named_parameters() if is_matrix(n)]
    rest = [(n, p) for n, p in model.named_parameters() if not is_matrix(n)]
    return mats, rest


def set_grads(model, grads):
    for n, p in model.named_parameters():
        p.grad = grads[n].clone()  # the same fixed gradient at every step


def run_adamw(ckpt, grads):
    model = fresh_model(ckpt)
    mats, rest = split(model)
    opt = torch.optim.AdamW([
        {"params": [p for _, p in mats], "lr": ADAMW["matrix_lr"], "weight_decay": ADAMW["matrix_weight_decay"]},
        {"params": [p for _, p in rest], "lr": ADAMW["other_lr"], "weight_decay": ADAMW["other_weight_decay"]},
    ], betas=ADAMW["betas"], eps=ADAMW["eps"])
    for _ in range(STEPS):
        set_grads(model, grads)
        opt.step()
    return model.state_dict()


def run_sgd(ckpt, grads):
    model = fresh_model(ckpt)
    mats, rest = split(model)
    opt = torch.optim.SGD([
        {"params": [p for _, p in mats], "lr": SGD["matrix_lr"]},
        {"params": [p for _, p in rest], "lr": SGD["other_lr"]},
    ], lr=SGD["matrix_lr"], momentum=SGD["momentum"], dampening=SGD["dampening"], nesterov=SGD["nesterov"],
        weight_decay=SGD["weight_decay"])
    for _ in range(STEPS):
        set_grads(model, grads)
        opt.step()
    return model.state_dict()


def newton_schulz(g):
    """Approximate orthogonalisation of g (float32): the quintic iteration of Muon (Keller Jordan)."""
    a, b, c = MUON["ns_coefficients"]
    x = g / (g.norm() + MUON["norm_eps"])
    transposed = x.shape[0] > x.shape[1]
    if transposed:  # iterate on the wide orientation: X X^T is the small Gram matrix
        x = x.T
    for _ in range(MUON["ns_steps"]):
        A = x @ x.T
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    return x.T if transposed else x


@torch.no_grad()
def muon_step(params, bufs):
    """One Muon step on 2-D float32 matrices: buf = m buf + g; Nesterov update = g + m buf;
    p -= lr * sqrt(max(1, rows / cols)) * NS5(update). No weight decay."""
    m, lr = MUON["momentum"], MUON["lr"]
    for p in params:
        g = p.grad
        buf = bufs.setdefault(p, torch.zeros_like(p))
        buf.mul_(m).add_(g)
        update = g + m * buf
        rows, cols = p.shape
        p.add_(newton_schulz(update), alpha=-lr * math.sqrt(max(1.0, rows / cols)))


def run_muon(ckpt, grads):
    model = fresh_model(ckpt)
    mats, rest = split(model)
    # Everything that is not a ternary matrix: AdamW, as the adamw case's second group.
    opt = torch.optim.AdamW([{"params": [p for _, p in rest], "lr": ADAMW["other_lr"],
                              "weight_decay": ADAMW["other_weight_decay"]}], betas=ADAMW["betas"], eps=ADAMW["eps"])
    bufs = {}
    for _ in range(STEPS):
        set_grads(model, grads)
        muon_step([p for _, p in mats], bufs)
        opt.step()
    return model.state_dict()


# --- main -----------------------------------------------------------------------------------------

def main():
    # One thread: bit-identical results whatever the core count (matmul reductions split by thread).
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    files = collections.OrderedDict()

    ckpt = torch.load(START)
    start_sd = ckpt["model_state_dict"]
    tokens = ref.read_tokens(TOKENS)
    offsets = make_batch(len(tokens))
    batch = collections.OrderedDict([("seq_len", SEQ_LEN), ("offsets", offsets), ("source", "run/train.bin")])
    with open(os.path.join(OUT, "batch.json"), "w") as f:
        json.dump(batch, f, indent=1)
        f.write("\n")
    files["batch.json"] = os.path.join(OUT, "batch.json")

    # 1. Cross-entropy gradients.
    loss, grads = ce_gradients(fresh_model(ckpt), tokens, offsets)
    files["ce_grads.pt"] = save_tensors(grads, "ce_grads.pt")
    print(f"ce loss {loss:.6f}", flush=True)

    # 2. Regularizers, each alone.
    masses = healthy_gaussian_masses()
    reg_grads, reg_losses = collections.OrderedDict(), collections.OrderedDict()
    results = {name: regularizers(start_sd[name], unit_three_peak_quantiles(start_sd[name].numel(), masses, TARGET_WIDTH))
               for name in REG_TENSORS}
    for reg in ("double_well", "three_peaks", "wasserstein"):
        reg_losses[reg] = collections.OrderedDict()
        for name in REG_TENSORS:
            value, grad = results[name][reg]
            reg_losses[reg][name] = value
            reg_grads[f"{reg}.{name}"] = grad
    files["reg_grads.pt"] = save_tensors(reg_grads, "reg_grads.pt")
    print("regularizers", json.dumps(reg_losses), flush=True)

    # 3. Three optimizer steps with the fixed CE gradient.
    keep = stored_names(list(start_sd.keys()))
    after = collections.OrderedDict()
    for opt_name, fn in (("adamw", run_adamw), ("sgd", run_sgd), ("muon", run_muon)):
        sd = fn(ckpt, grads)
        after[opt_name] = collections.OrderedDict((n, sd[n]) for n in keep)
        files[f"after_{opt_name}.pt"] = save_tensors(after[opt_name], f"after_{opt_name}.pt")

    # 4. expected.json.
    exp = collections.OrderedDict()
    exp["description"] = ("Reference values for the C++ fine-tuning engine, from real PyTorch: CE gradients of "
                          "bitnet_reference.StudentLLM at run/step_000050.pt on one fixed batch, three weight "
                          "regularizers' gradients, and three steps of AdamW, SGD and Muon with that fixed gradient")
    exp["torch_version"] = torch.__version__
    exp["inputs"] = {"checkpoint": "run/step_000050.pt", "checkpoint_sha256": sha256(START),
                     "state_dict_path": "model_state_dict", "model_config": ckpt["config"]["model"],
                     "tokens": "run/train.bin", "tokens_sha256": sha256(TOKENS), "tokens_dtype": "uint16 little-endian",
                     "n_tokens": len(tokens)}
    exp["batch"] = {"seq_len": SEQ_LEN, "batch_size": BATCH, "offsets": offsets, "seed": SEED,
                    "rule": "offsets = torch.randint(0, n_tokens - seq_len, (4,), generator=Generator().manual_seed(seed)); "
                            "window o = tokens[o : o + seq_len + 1]; inputs its first seq_len, targets its last seq_len"}
    exp["ce"] = {"loss": loss,
                 "definition": "mean cross entropy (nats) over the 4 x 32 targets of the model's softcapped logits; "
                               "train mode; BitLinear forward = F.linear(activation_quant(x), weight_quant(W)), both with "
                               "a straight-through estimator (backward treats the rounding as identity); tied lm_head "
                               "not quantized; float32",
                 "file": "ce_grads.pt", "keys": list(grads.keys()),
                 "grads": collections.OrderedDict((n, summary(g)) for n, g in grads.items())}
    exp["regularizers"] = collections.OrderedDict([
        ("S", REG_SCALE), ("lambda", REG_LAMBDA), ("tensors", REG_TENSORS),
        ("reduction", "sum over elements; each regularizer alone, no cross entropy"),
        ("precision", "loss and gradient in float64 from the float32 weights; gradients stored as float32"),
        ("formulas", {
            "double_well": "lambda * sum (|w| - S)^2; grad = 2 lambda (|w| - S) sign(w), sign(0) = 0",
            "three_peaks": "lambda * sum (w - c)^2, c = S * clamp(round(w / S), -1, 1) detached (round half to even); "
                           "grad = 2 lambda (w - c)",
            "wasserstein": "lambda * sum_i (sort(w.flatten())_i - S * Q((i + 0.5) / n))^2, Q the unit three-peak "
                           "quantile; grad at the element of rank i = 2 lambda (sorted_i - S Q_i) (stable sort)",
        }),
        ("three_peak_target", {
            "masses": {"neg": masses[0], "zero": masses[1], "pos": masses[2]},
            "masses_rule": "align.cpp healthy_gaussian_masses(): zero = erf(sqrt(2/pi) / 2 / sqrt(2)) = "
                           "P(|x| < E|x|/2), x ~ N(0,1); neg = pos = (1 - zero) / 2",
            "width": TARGET_WIDTH,
            "cdf": "neg Phi((x + 1) / width) + zero Phi(x / width) + pos Phi((x - 1) / width), Phi(z) = erfc(-z / sqrt 2) / 2",
            "quantile": "bisection in float64 on [-1 - 40 width, 1 + 40 width], at most 200 halvings, until "
                        "hi - lo <= 1e-15 (1 + |lo|); the midpoint (align.cpp UnitTarget::quantile_bisect)",
        }),
        ("losses", reg_losses),
        ("file", "reg_grads.pt"), ("keys", list(reg_grads.keys())),
        ("grads", collections.OrderedDict((k, summary(g)) for k, g in reg_grads.items())),
    ])
    exp["optimizers"] = collections.OrderedDict([
        ("steps", STEPS),
        ("gradient", "the CE gradient of ce_grads.pt at every step (fixed, the same each step); no clipping, no schedule"),
        ("matrix_rule", "ternary matrices = every layers.{i}.*_proj.weight; everything else (embedding, norms) is 'other'"),
        ("stored_keys", keep),
        ("stored_rule", "only layer 0's ternary matrices, embed_tokens.weight and norm.weight are stored"),
        ("adamw", {"file": "after_adamw.pt", "optimizer": "torch.optim.AdamW (decoupled weight decay), two groups",
                   "matrix": {"lr": ADAMW["matrix_lr"], "weight_decay": ADAMW["matrix_weight_decay"]},
                   "other": {"lr": ADAMW["other_lr"], "weight_decay": ADAMW["other_weight_decay"]},
                   "betas": list(ADAMW["betas"]), "eps": ADAMW["eps"], "amsgrad": False}),
        ("sgd", {"file": "after_sgd.pt", "optimizer": "torch.optim.SGD, two groups",
                 "matrix": {"lr": SGD["matrix_lr"]}, "other": {"lr": SGD["other_lr"]},
                 "momentum": SGD["momentum"], "dampening": SGD["dampening"], "nesterov": SGD["nesterov"],
                 "weight_decay": SGD["weight_decay"],
                 "rule": "buf = g at the first step, then buf = momentum buf + g; p -= lr buf"}),
        ("muon", {"file": "after_muon.pt",
                  "matrix": {"lr": MUON["lr"], "momentum": MUON["momentum"], "nesterov": MUON["nesterov"],
                             "ns_steps": MUON["ns_steps"], "ns_coefficients": list(MUON["ns_coefficients"]),
                             "norm_eps": MUON["norm_eps"], "weight_decay": MUON["weight_decay"]},
                  "matrix_rule": "buf = momentum buf + g (buf starts at 0); update = g + momentum buf; "
                                 "X = update / (||update||_F + 1e-7); X = X^T if rows > cols; 5 times: A = X X^T, "
                                 "B = b A + c A A, X = a X + B X; transpose back; p -= lr sqrt(max(1, rows/cols)) X; float32",
                  "other": {"optimizer": "torch.optim.AdamW", "lr": ADAMW["other_lr"],
                            "weight_decay": ADAMW["other_weight_decay"], "betas": list(ADAMW["betas"]), "eps": ADAMW["eps"]},
                  "order": "each step: Muon on the matrices, then AdamW on the rest (independent)"}),
        ("after", collections.OrderedDict(
            (o, collections.OrderedDict((n, dict(summary(t), max_abs_change=(t.double() - start_sd[n].double()).abs().max().item()))
                                        for n, t in sd.items()))
            for o, sd in after.items())),
    ])
    # The same start in bfloat16, as a bf16 training run would save it: fine-tuning must keep fp32
    # master weights beside it (OUT in bf16 would round every update away) and resume from them.
    bf16 = collections.OrderedDict((k, v.detach().to(torch.bfloat16).clone()) for k, v in start_sd.items())
    path = os.path.join(OUT, "step_000050_bf16.pt")
    torch.save({"model_state_dict": bf16, "step": ckpt["step"], "config": ckpt["config"]}, path)
    files["step_000050_bf16.pt"] = path
    exp["bf16_start"] = {"file": "step_000050_bf16.pt", "from": "run/step_000050.pt",
                         "rule": "every tensor of model_state_dict cast with torch.Tensor.to(torch.bfloat16)"}
    exp["files_sha256"] = collections.OrderedDict((k, sha256(p)) for k, p in files.items())
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
