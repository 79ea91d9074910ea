"""Writes fresh checkpoints with real PyTorch into a folder, with what torch computed about them.

Usage: /usr/bin/python3 torch_fresh_checkpoints.py OUT_DIR SEED COUNT
For each i < COUNT writes OUT_DIR/ckpt_<i>.pt and OUT_DIR/ckpt_<i>.json. The checkpoints vary
at random (seeded): zip or legacy serialization, pickle protocol 2..5, dtypes, shapes (0-d,
empty, up to 3-D), views with offsets and strides, tied tensors, and wrappers around the state
dict. The JSON lists, per state-dict key in order: dtype, shape, stride, storage_offset, and
every value as float64 (for exact comparison), plus the state dict's location and the step.
"""
import collections
import json
import math
import random
import sys

import torch

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool]


def random_tensor(rng, gen):
    dtype = rng.choice(DTYPES)
    ndim = rng.choice([0, 1, 1, 2, 2, 3])
    shape = [rng.choice([0, 1, 2, 3, 5, 8]) if rng.random() < 0.1 else rng.randint(1, 9) for _ in range(ndim)]
    base = torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * rng.choice([1e-6, 0.02, 1.0, 100.0])
    if dtype == torch.bool:
        t = base > 0
    elif dtype.is_floating_point:
        t = base.to(dtype)
    else:
        info = torch.iinfo(dtype)
        t = (base * 50).clamp(info.min, info.max).round().to(dtype)
    # Views: a transposed matrix, a slice with an offset, a column slice.
    kind = rng.random()
    if ndim == 2 and min(shape) > 1 and kind < 0.2:
        t = t.t()
    elif ndim >= 1 and shape[0] > 2 and kind < 0.4:
        t = t[1:]
    elif ndim == 2 and shape[1] > 2 and kind < 0.55:
        t = t[:, 1:]
    return t


def as_floats(t):
    out = []
    for v in t.reshape(-1).tolist():
        v = float(v)
        out.append("nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else v)))
    return out


def main():
    out_dir, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    for i in range(count):
        sd = collections.OrderedDict()
        for j in range(rng.randint(1, 12)):
            sd[f"layers.{j}.mlp.up_proj.weight"] = random_tensor(rng, gen)
        if rng.random() < 0.3:
            sd["lm_head.weight"] = sd["layers.0.mlp.up_proj.weight"]  # tied
        wrap = rng.choice(["", "model_state_dict", "state_dict", "model"])
        step = rng.randint(0, 100000)
        obj = sd if wrap == "" else {wrap: sd, "step": step}
        legacy = rng.random() < 0.3
        protocol = rng.choice([2, 2, 3, 4, 5]) if not legacy else 2
        path = f"{out_dir}/ckpt_{i}.pt"
        torch.save(obj, path, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
        expected = {
            "legacy": legacy, "protocol": protocol, "state_dict_path": wrap, "step": None if wrap == "" else step,
            "tensors": [{"name": k, "dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                         "stride": list(v.stride()), "storage_offset": v.storage_offset(), "values": as_floats(v)}
                        for k, v in sd.items()],
        }
        with open(f"{out_dir}/ckpt_{i}.json", "w") as f:
            json.dump(expected, f)


if __name__ == "__main__":
    main()
