#!/usr/bin/python3
"""Writes the sample checkpoints bitfsck's tests read, with real PyTorch, and the values torch
itself computes from them (<name>.expected.json next to each file).

Run from anywhere:  /usr/bin/python3 sample_ckpts/make_samples.py
Needs Debian's python3-torch (1.13) and python3-numpy. Deterministic: fixed seeds; re-running
gives identical expected JSON. The .pt files written in the zip format are byte-identical between
runs too; the legacy-format files are not, because torch's legacy writer names every storage by its
memory address (str(storage._cdata)). Nothing in the expected JSON depends on those names.

Every expected JSON is computed from torch.load() of the file just written (never of the hostile
files that carry code), so it describes what PyTorch reads back, not what we meant to write.
"""
import argparse
import collections
import dataclasses
import io
import json
import math
import os
import pickletools
import struct
import sys
import zipfile

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
HOSTILE = os.path.join(HERE, "hostile")

# The command the hostile pickles would run if someone torch.load()ed them. Harmless on purpose.
PWN_CMD = "echo pwned > /tmp/bitfsck_pwned"


# ----------------------------------------------------------------------------------------------
# Small real modules whose state_dict() the fixtures are made of.

class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, hidden, n_heads, n_kv_heads):
        super().__init__()
        head_dim = hidden // n_heads
        self.q_proj = nn.Linear(hidden, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, hidden, bias=False)


class MLP(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)


class DecoderLayer(nn.Module):
    def __init__(self, hidden, inter, n_heads, n_kv_heads):
        super().__init__()
        self.self_attn = Attention(hidden, n_heads, n_kv_heads)
        self.mlp = MLP(hidden, inter)
        self.input_layernorm = RMSNorm(hidden)
        self.post_attention_layernorm = RMSNorm(hidden)


class TinyLlama(nn.Module):
    """Llama layout (no forward needed here): vocab 64, hidden 32, 2 layers, 4 heads / 2 kv heads."""

    def __init__(self, vocab=64, hidden=32, inter=64, n_layers=2, n_heads=4, n_kv_heads=2):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(DecoderLayer(hidden, inter, n_heads, n_kv_heads) for _ in range(n_layers))
        self.norm = RMSNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, ids):  # only used to get real gradients for the optimizer steps
        h = self.embed_tokens(ids)
        for layer in self.layers:
            a = layer.self_attn
            x = layer.input_layernorm(h)
            v = a.v_proj(x).repeat(1, 1, 2)  # kv heads repeated to q width (no attention mixing)
            h = h + a.o_proj(a.q_proj(x) * torch.sigmoid(a.k_proj(x).repeat(1, 1, 2)) + v)
            m = layer.mlp
            x = layer.post_attention_layernorm(h)
            h = h + m.down_proj(torch.nn.functional.silu(m.gate_proj(x)) * m.up_proj(x))
        return self.lm_head(self.norm(h))


@dataclasses.dataclass
class TrainConfig:
    """A user dataclass pickled inside training_checkpoint.pt (as __main__.TrainConfig)."""
    vocab_size: int = 64
    hidden_size: int = 32
    num_layers: int = 2
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    name: str = "tiny-llama"


class PwnSystem:
    """Unpickling this calls os.system (pickled as posix.system): what a malicious upload does."""

    def __reduce__(self):
        return (os.system, (PWN_CMD,))


class PwnEval:
    """Unpickling this calls eval (pickled as __builtin__.eval under protocol 2)."""

    def __reduce__(self):
        import builtins
        return (builtins.eval, ("__import__('os').system(%r)" % PWN_CMD,))


def make_model(seed=0):
    torch.manual_seed(seed)
    return TinyLlama()


def plain_sd(seed=0):
    return make_model(seed).state_dict()


# ----------------------------------------------------------------------------------------------
# Expected values, computed by torch.

def fnum(x):
    """A float64 for JSON: NaN and infinities as strings (JSON has no literal for them)."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def ternary_stats(f, scale):
    codes = torch.clamp(torch.round(f / scale), -1, 1)
    n = f.numel()
    return {
        "scale": scale,
        "neg": (codes == -1).sum().item() / n,
        "zero": (codes == 0).sum().item() / n,
        "pos": (codes == 1).sum().item() / n,
    }


def bitnet_scale(absmean):
    return max(absmean, 1e-5)  # microsoft/BitNet, HF, onebitllms: 1 / clamp(mean|W|, 1e-5)


def distillix_scale(absmean):
    return absmean + 1e-8  # Distillix: gamma = mean|W| + 1e-8


def tensor_record(t, shared_with):
    """Everything a test checks about one tensor. Row-major logical order, whatever the strides."""
    rec = collections.OrderedDict()
    rec["dtype"] = str(t.dtype).replace("torch.", "")
    rec["shape"] = list(t.shape)
    rec["stride"] = list(t.stride())
    rec["storage_offset"] = t.storage_offset()
    rec["numel"] = t.numel()
    rec["shared_with"] = shared_with
    flat = t.detach().reshape(-1)
    head, tail = flat[:8], flat[max(0, flat.numel() - 8):]
    if t.dtype == torch.bool:
        rec["sum"] = int(flat.sum().item())
        rec["first"] = [float(v) for v in head.double().tolist()]
        rec["last"] = [float(v) for v in tail.double().tolist()]
        return rec
    d = flat.double()
    if not t.is_floating_point():
        rec["sum"] = d.sum().item()
        rec["first"] = [fnum(v) for v in head.double().tolist()]
        rec["last"] = [fnum(v) for v in tail.double().tolist()]
        # float64 cannot hold every int64: the exact integers as well.
        rec["first_exact"] = [int(v) for v in head.tolist()]
        rec["last_exact"] = [int(v) for v in tail.tolist()]
        return rec
    finite = torch.isfinite(d)
    f = d[finite]
    rec["sum"] = f.sum().item()
    rec["nan_count"] = int(torch.isnan(d).sum().item())
    rec["inf_count"] = int(torch.isinf(d).sum().item())
    rec["first"] = [fnum(v) for v in head.double().tolist()]
    rec["last"] = [fnum(v) for v in tail.double().tolist()]
    # Statistics on the finite values only, in float64.
    n = f.numel()
    if n == 0:
        for k in ("mean", "std", "min", "max", "absmean", "zero_frac", "ternary"):
            rec[k] = None
        return rec
    absmean = f.abs().mean().item()
    rec["mean"] = f.mean().item()
    rec["std"] = f.std().item() if n >= 2 else None  # unbiased (torch default)
    rec["min"] = f.min().item()
    rec["max"] = f.max().item()
    rec["absmean"] = absmean
    rec["zero_frac"] = (f == 0).sum().item() / n
    rec["ternary"] = {
        "bitnet": ternary_stats(f, bitnet_scale(absmean)),
        "distillix": ternary_stats(f, distillix_scale(absmean)),
    }
    if t.dim() == 2:
        # Codes of the whole matrix under the bitnet scale; a NaN/Inf entry never counts as a zero code.
        codes = torch.clamp(torch.round(t.detach().double() / bitnet_scale(absmean)), -1, 1)
        zero = (codes == 0) & torch.isfinite(t.detach().double())
        rec["dead_rows"] = int(zero.all(dim=1).sum().item())
        rec["dead_cols"] = int(zero.all(dim=0).sum().item())
    return rec


def walk(obj, prefix=""):
    """(dotted path, tensor) for every tensor in dicts, lists and tuples, depth-first in order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from walk(v, f"{prefix}.{i}" if prefix else str(i))


def scalars(obj, prefix="", out=None):
    """(dotted path -> value) for the non-tensor leaves; objects of other classes by their fields."""
    if out is None:
        out = collections.OrderedDict()
    if isinstance(obj, torch.Tensor):
        return out
    if isinstance(obj, np.generic):
        out[prefix] = {"class": f"numpy.{type(obj).__name__}", "value": obj.item()}
    elif isinstance(obj, (bool, int, float, str)) or obj is None:
        out[prefix] = fnum(obj) if isinstance(obj, float) else obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            scalars(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            scalars(v, f"{prefix}.{i}" if prefix else str(i), out)
    elif isinstance(obj, argparse.Namespace) or dataclasses.is_dataclass(obj):
        cls = type(obj)
        out[prefix] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
        scalars(dict(vars(obj)), prefix, out)
    else:
        out[prefix] = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    return out


def pickle_globals(data):
    """Every global a pickle imports, as "module.name", in first-seen order (no unpickling done).

    GLOBAL carries "module name" directly; STACK_GLOBAL (protocol 4) takes the two strings last
    pushed, which the pickler may have memoized, so string pushes and memo gets are tracked.
    """
    found, pushed, memo = [], [], {}
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name == "GLOBAL":
            found.append(arg.replace(" ", "."))
        elif name == "STACK_GLOBAL":
            found.append(f"{pushed[-2]}.{pushed[-1]}")
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            pushed.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        else:
            pushed.append(None)
    return list(dict.fromkeys(found))


def legacy_pickles(path):
    """The pickles at the start of a legacy file: magic, protocol, sys_info, the object, keys."""
    with open(path, "rb") as f:
        raw = f.read()
    out, pos = [], 0
    for _ in range(5):
        end = pos
        for op, _arg, p in pickletools.genops(raw[pos:]):
            if op.name == "STOP":
                end = pos + p + 1
        out.append(raw[pos:end])
        pos = end
    return out


def zip_pickle(path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        return z.read(name), name.split("/")[0]


def describe(path, fmt, state_dict_path="", protocol=2, extra=None):
    """Loads `path` back with torch and writes <path>.expected.json."""
    obj = torch.load(path)
    sd = obj[state_dict_path] if state_dict_path else obj
    exp = collections.OrderedDict()
    exp["file"] = os.path.basename(path)
    exp["format"] = fmt
    exp["pickle_protocol"] = protocol
    if fmt == "torch_zip":
        data, archive = zip_pickle(path)
        exp["archive_name"] = archive
    else:
        data = legacy_pickles(path)[3]
    exp["pickle_globals"] = pickle_globals(data)
    exp["state_dict_path"] = state_dict_path
    exp["top_level_keys"] = [str(k) for k in obj.keys()] if isinstance(obj, dict) else []
    step = None
    if isinstance(obj, dict):
        for k in ("step", "global_step"):
            if k in obj and not isinstance(obj[k], torch.Tensor):
                step = int(obj[k])
                break
    exp["step"] = step
    # Sharing is judged over the whole file in traversal order: state dict first when it is
    # the first entry (it is, in every fixture here).
    seen = {}  # storage data_ptr -> first tensor name
    tensors, others = collections.OrderedDict(), collections.OrderedDict()
    sd_ids = {id(v) for _, v in walk(sd)} if state_dict_path else None
    for path_name, t in walk(obj):
        in_sd = True
        name = path_name
        if state_dict_path:
            if path_name.startswith(state_dict_path + "."):
                name = path_name[len(state_dict_path) + 1:]
            else:
                in_sd = False
        ptr = t.storage().data_ptr()
        shared = seen.get(ptr) if ptr != 0 else None
        if ptr != 0 and ptr not in seen:
            seen[ptr] = name if in_sd else path_name
        (tensors if in_sd else others)[name] = tensor_record(t, shared)
    del sd_ids
    exp["tensors"] = tensors
    exp["other_tensors"] = others
    exp["scalars"] = scalars({k: v for k, v in obj.items() if k != state_dict_path}) if isinstance(obj, dict) else {}
    if extra:
        exp.update(extra)
    write_json(path + ".expected.json", exp)
    return exp


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")


def out(name):
    return os.path.join(HERE, name)


# ----------------------------------------------------------------------------------------------
# The fixtures.

def make_plain():
    torch.save(plain_sd(), out("plain_state_dict.pt"))
    describe(out("plain_state_dict.pt"), "torch_zip")


def make_training_checkpoint():
    model = make_model(1)
    cfg = TrainConfig()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(11)
    for _ in range(2):  # two real steps so exp_avg / exp_avg_sq / step exist
        ids = torch.randint(0, 64, (4, 9), generator=g)
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(1234)
    ckpt = {
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "step": 1234,
        "epoch": 3,
        "loss": 2.5,
        "lr": 3e-4,
        "args": argparse.Namespace(lr=3e-4, wd=0.1, name="run"),
        "config": cfg,
        "np_step": np.int64(7),
        "np_loss": np.float32(0.25),
        "np_f64": np.float64(1.5),
        "rng": torch.get_rng_state(),
    }
    torch.save(ckpt, out("training_checkpoint.pt"))
    describe(out("training_checkpoint.pt"), "torch_zip", "model_state_dict")


def make_dtypes():
    f32max = float(np.finfo(np.float32).max)
    inf, nan = float("inf"), float("nan")
    d = collections.OrderedDict()
    d["float64"] = torch.tensor([0.0, -1.5, 1e150, -1e-300, 5e-324, nan, inf, -inf, math.pi, 2.0 ** 53 + 2],
                                dtype=torch.float64)
    d["float32"] = torch.tensor([[0.0, -0.0, 1.5, -2.25, f32max], [1e-45, nan, inf, -inf, 1.0 / 3.0]],
                                dtype=torch.float32)
    # (1e150, not 1e300, so that the float64 variance stays finite.)
    # 6e-8 and 1e-5 are subnormal in half precision (smallest normal 6.1e-5).
    d["float16"] = torch.tensor([0.0, -1.0, 65504.0, 6e-8, 1e-5, nan, inf, -inf, 0.1], dtype=torch.float16)
    d["bfloat16"] = torch.tensor([0.0, -1.0, 3.3895e38, 1e-40, nan, inf, -inf, 0.1, -3.0], dtype=torch.bfloat16)
    d["int64"] = torch.tensor([0, -1, 2 ** 63 - 1, -(2 ** 63), 123456789012345, -42], dtype=torch.int64)
    d["int32"] = torch.tensor([[0, -1, 2 ** 31 - 1], [-(2 ** 31), 7, -7]], dtype=torch.int32)
    d["int16"] = torch.tensor([32767, -32768, 0, -1, 1000], dtype=torch.int16)
    d["int8"] = torch.tensor([-128, 127, -1, 0, 1], dtype=torch.int8)
    d["uint8"] = torch.tensor([0, 255, 128, 1, 254], dtype=torch.uint8)
    d["bool"] = torch.tensor([True, False, True, True, False, False, True], dtype=torch.bool)
    torch.save(d, out("dtypes.pt"))
    describe(out("dtypes.pt"), "torch_zip")


def make_views():
    torch.manual_seed(3)
    base = torch.arange(10, dtype=torch.float32) * 0.5 - 1.0
    matrix = torch.randn(4, 5)
    emb = nn.Parameter(torch.randn(6, 4))
    d = collections.OrderedDict()
    d["base"] = base
    d["slice"] = base[3:7]             # storage_offset 3, shares base's storage
    d["scalar"] = base[9]              # 0-dim view, offset 9
    d["matrix"] = matrix
    d["transposed"] = matrix.t()       # strides (1, 5)
    d["col_slice"] = matrix[:, 1:3]    # strides (5, 1), offset 1
    d["row"] = matrix[2]               # offset 10
    d["expanded"] = torch.randn(1, 4).expand(3, 4)  # stride (0, 1): 4 stored values, 12 logical
    d["embed.weight"] = emb            # the same Parameter twice: tied weights
    d["lm_head.weight"] = emb
    torch.save(d, out("views.pt"))
    describe(out("views.pt"), "torch_zip")


def make_legacy():
    sd = plain_sd(2)
    sd["lm_head.weight"] = sd["embed_tokens.weight"]  # tied pair
    inv = 1.0 / (10000 ** (torch.arange(0, 16, dtype=torch.float32) / 16))
    sd["rotary.inv_freq_full"] = inv
    sd["rotary.inv_freq"] = inv[4:12]  # view with storage offset 4
    torch.save(sd, out("legacy.pt"), _use_new_zipfile_serialization=False)
    describe(out("legacy.pt"), "torch_legacy")


def make_protocol4():
    torch.save(plain_sd(3), out("protocol4.pt"), pickle_protocol=4)
    describe(out("protocol4.pt"), "torch_zip", protocol=4)


def make_wrapped():
    torch.save({"model": plain_sd(4), "step": 10}, out("wrapped_model.pt"))
    describe(out("wrapped_model.pt"), "torch_zip", "model")
    torch.save({"state_dict": plain_sd(5), "global_step": 20}, out("wrapped_state_dict.pt"))
    describe(out("wrapped_state_dict.pt"), "torch_zip", "state_dict")
    # What a model wrapped in DataParallel really saves: every key prefixed with "module.".
    sd = nn.DataParallel(make_model(6)).state_dict()
    assert all(k.startswith("module.") for k in sd)
    torch.save(sd, out("module_prefix.pt"))
    describe(out("module_prefix.pt"), "torch_zip", extra={"key_prefix": "module."})


def make_ternary_export():
    """Weights already quantized to {-s, 0, +s}: what an offline BitNet export looks like."""
    torch.manual_seed(7)
    sd = make_model(7).state_dict()
    truth = collections.OrderedDict()
    for name in list(sd):
        if not name.endswith("_proj.weight"):
            continue
        latent = torch.randn_like(sd[name]) * 0.02
        if name == "layers.1.mlp.up_proj.weight":
            s = latent.abs().mean(dim=1, keepdim=True)  # one scale per output channel (row)
            sd[name] = torch.clamp(torch.round(latent / s), -1, 1) * s
            truth[name] = {"kind": "ternary_per_channel", "scales": [float(v) for v in s.reshape(-1)]}
        elif name == "layers.1.self_attn.o_proj.weight":
            sd[name] = latent  # left as float latent weights
            truth[name] = {"kind": "latent"}
        elif name == "layers.0.mlp.down_proj.weight":
            sd[name] = torch.zeros_like(latent)  # the all-zero MLP tensor of a broken re-upload
            truth[name] = {"kind": "all_zero"}
        else:
            s = latent.abs().mean()
            w = torch.clamp(torch.round(latent / s), -1, 1) * s
            if name == "layers.1.self_attn.v_proj.weight":
                w[0, 3] = float("nan")
                w[5, 7] = float("nan")
                truth[name] = {"kind": "ternary_per_tensor_with_nan", "scale": s.item(), "nan_count": 2}
            else:
                truth[name] = {"kind": "ternary_per_tensor", "scale": s.item()}
            sd[name] = w
    torch.save(sd, out("ternary_export.pt"))
    describe(out("ternary_export.pt"), "torch_zip", extra={"ternary_truth": truth})


# safetensors is not PyTorch's format and Debian has no python3-safetensors, so this file is
# written by hand following the published spec (https://github.com/huggingface/safetensors):
# 8-byte little-endian u64 header size N, N bytes of UTF-8 JSON {name: {dtype, shape,
# data_offsets: [begin, end)} relative to the byte buffer after the header, "__metadata__":
# {str: str}}, header padded with spaces to a multiple of 8 (as the reference writer does),
# then the tensors' bytes row-major, little-endian, with no gaps.
ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def tensor_bytes(t):
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: same bits through an int16 view
        return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
    return t.contiguous().numpy().tobytes()  # little-endian host (asserted in main)


def make_safetensors():
    torch.manual_seed(8)
    tensors = collections.OrderedDict()
    tensors["model.embed_tokens.weight"] = torch.randn(16, 8)
    tensors["model.layers.0.mlp.up_proj.weight"] = (torch.randn(8, 8) * 0.02).half()
    tensors["model.layers.0.self_attn.q_proj.weight"] = (torch.randn(8, 8) * 0.02).bfloat16()
    tensors["model.position_ids"] = torch.arange(16, dtype=torch.int64).unsqueeze(0)
    header = collections.OrderedDict()
    header["__metadata__"] = {"format": "pt"}
    blobs, pos = [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    path = out("plain.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        f.write(b"".join(blobs))
    # Read it back by the spec, to check the bytes say what the header says.
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    for name, t in tensors.items():
        b, e = h[name]["data_offsets"]
        assert raw[8 + n + b:8 + n + e] == tensor_bytes(t), name
    exp = collections.OrderedDict()
    exp["file"] = "plain.safetensors"
    exp["format"] = "safetensors"
    exp["pickle_protocol"] = None
    exp["header_size"] = n
    exp["metadata"] = {"format": "pt"}
    exp["state_dict_path"] = ""
    exp["top_level_keys"] = list(tensors)
    exp["step"] = None
    exp["tensors"] = collections.OrderedDict(
        (name, dict(tensor_record(t, None), safetensors_dtype=ST_DTYPE[t.dtype], data_offsets=h[name]["data_offsets"]))
        for name, t in tensors.items())
    exp["other_tensors"] = {}
    write_json(path + ".expected.json", exp)


# ----------------------------------------------------------------------------------------------
# hostile/: checkpoints that carry code, and damaged copies of a good one.

def try_torch_load(path, source):
    """What torch 1.13 itself makes of a damaged copy (weights_only: nothing in it can run).

    "ok_same_as_source" / "ok_but_values_differ" (torch does not check a record's size against
    its storage, so a short record loads silently with wrong values) / "error: ...".
    """
    try:
        got = torch.load(path, weights_only=True)
        want = torch.load(source)
        same = list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
        return "ok_same_as_source" if same else "ok_but_values_differ"
    except Exception as e:  # noqa: BLE001 - the message is the point
        return f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def rewrite_zip(src, dst, change):
    """Re-creates a torch zip with Python's zipfile; change(name, data) -> (data, compress_type)."""
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in zip_entries(src):
            data, ctype = change(name, data)
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: deterministic bytes
            info.compress_type = ctype
            info.external_attr = 0o644 << 16
            z.writestr(info, data)


def record_data_offset(path, name):
    """File offset of a stored record's bytes (after its local header)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        lh = f.read(30)
    assert lh[:4] == b"PK\x03\x04"
    fn_len, extra_len = struct.unpack("<HH", lh[26:30])
    return info.header_offset + 30 + fn_len + extra_len, info.file_size


def make_hostile():
    os.makedirs(HOSTILE, exist_ok=True)
    files = collections.OrderedDict()
    torch.manual_seed(9)
    small = collections.OrderedDict(weight=torch.randn(4, 4), bias=torch.zeros(4))

    def h(name):
        return os.path.join(HOSTILE, name)

    # Code-carrying files. Never torch.load()ed here: their globals are read with pickletools.
    torch.save({"model_state_dict": small, "extra": PwnSystem()}, h("pickle_os_system.pt"))
    torch.save({"model_state_dict": small, "extra": PwnEval()}, h("pickle_builtins_eval.pt"))
    torch.save({"model_state_dict": small, "extra": PwnSystem()}, h("legacy_os_system.pt"),
               _use_new_zipfile_serialization=False)
    for name, fmt, dangerous in (("pickle_os_system.pt", "torch_zip", ["posix.system"]),
                                 # protocol 2 writes Python 3's builtins as __builtin__
                                 ("pickle_builtins_eval.pt", "torch_zip", ["__builtin__.eval"]),
                                 ("legacy_os_system.pt", "torch_legacy", ["posix.system"])):
        data = zip_pickle(h(name))[0] if fmt == "torch_zip" else legacy_pickles(h(name))[3]
        globs = pickle_globals(data)
        assert all(g in globs for g in dangerous), (name, globs)
        files[name] = {"kind": "security", "format": fmt, "globals": globs, "dangerous_globals": dangerous,
                       "payload": PWN_CMD, "must_not_create": "/tmp/bitfsck_pwned"}

    # Damaged copies of a good checkpoint.
    good = out("plain_state_dict.pt")
    with open(good, "rb") as f:
        raw = f.read()
    _, archive = zip_pickle(good)
    source = {"source": "../plain_state_dict.pt"}

    def corrupt(name, data, what, **more):
        with open(h(name), "wb") as f:
            f.write(data)
        files[name] = dict({"kind": "corrupt", "corruption": what}, **source, size=len(data), **more)

    corrupt("truncated_half.pt", raw[:len(raw) // 2], "truncated", truncated_at=len(raw) // 2)
    corrupt("truncated_10_bytes.pt", raw[:10], "truncated", truncated_at=10)
    corrupt("empty.pt", b"", "empty")
    corrupt("random_4k.pt", np.random.RandomState(1234).bytes(4096), "random_bytes")

    off, size = record_data_offset(good, f"{archive}/data.pkl")
    flip_at = off + size // 2
    flipped = bytearray(raw)
    for i in range(flip_at, flip_at + 8):
        flipped[i] ^= 0xFF
    corrupt("flipped_pickle.pt", bytes(flipped), "bytes_flipped_in_data_pkl",
            flipped_range=[flip_at, flip_at + 8], record=f"{archive}/data.pkl", crc_mismatch=True)

    short_name = f"{archive}/data/0"

    def shorten(name, data):
        return (data[:len(data) // 2] if name == short_name else data), zipfile.ZIP_STORED

    rewrite_zip(good, h("short_tensor_record.pt"), shorten)
    with zipfile.ZipFile(good) as z:
        full = z.getinfo(short_name).file_size
    files["short_tensor_record.pt"] = dict({"kind": "corrupt", "corruption": "short_tensor_record"}, **source,
                                           record=short_name, record_size=full // 2, expected_size=full)

    def deflate_pickle(name, data):
        return data, (zipfile.ZIP_DEFLATED if name.endswith("/data.pkl") else zipfile.ZIP_STORED)

    rewrite_zip(good, h("deflated_pickle.pt"), deflate_pickle)
    files["deflated_pickle.pt"] = dict({"kind": "corrupt", "corruption": "deflated_data_pkl"}, **source,
                                       record=f"{archive}/data.pkl",
                                       acceptable=["inflate_and_read_like_source", "refuse_clearly"])

    for name, rec in files.items():
        if rec["kind"] == "corrupt":
            rec["torch_load"] = try_torch_load(h(name), good)
    write_json(os.path.join(HOSTILE, "expected.json"), {"files": files})


def main():
    assert sys.byteorder == "little", "the fixtures are little-endian, as torch and safetensors write them"
    torch.set_num_threads(1)
    make_plain()
    make_training_checkpoint()
    make_dtypes()
    make_views()
    make_legacy()
    make_protocol4()
    make_wrapped()
    make_ternary_export()
    make_safetensors()
    make_hostile()
    total = 0
    for root, _dirs, names in os.walk(HERE):
        if "run" in os.path.relpath(root, HERE).split(os.sep):
            continue
        for n in names:
            if n.endswith((".pt", ".json", ".safetensors")):
                total += os.path.getsize(os.path.join(root, n))
    print(f"sample checkpoints written to {HERE}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
