#!/usr/bin/python3
"""Cross-checks a bitfsck repair with real PyTorch.

usage: check_repair_output.py INPUT OUTPUT LOG.json [--require-weights-only]

Loads both checkpoints with torch.load (the output with weights_only=True wherever the input loads that way), then
checks that every tensor the log does not name is bit-identical (same dtype, shape, values; also
inside the optimizer state and any other entry), that every tensor it names changed, and, for an
SVD step, that the output equals torch.linalg.svd's rank-k truncation of the input (float64)
within float32 rounding. Prints one line of counts; exits 1 with the reason on the first mismatch.
"""
import json
import sys

import torch


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def raw(t):
    """The bytes of a tensor, so that -0.0 vs 0.0 and NaN payloads count as changes."""
    return t.reshape(-1).contiguous().view(torch.uint8) if t.numel() else t


def state_dict_of(obj):
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
    return obj


def walk(a, b, path, changed, counts):
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor):
            fail(f"{path}: not a tensor in the output")
        if a.dtype != b.dtype or a.shape != b.shape:
            fail(f"{path}: dtype/shape {a.dtype}{tuple(a.shape)} -> {b.dtype}{tuple(b.shape)}")
        name = path.split("/")[-1]
        if name in changed and path.count("/") <= 1:
            if torch.equal(a, b):
                fail(f"{path}: the log says it was repaired but it is unchanged")
            counts["changed"] += 1
        else:
            if not torch.equal(raw(a), raw(b)):
                fail(f"{path}: changed although the log does not name it")
            counts["same"] += 1
        return
    if isinstance(a, dict):
        if set(a.keys()) != set(b.keys()):
            fail(f"{path}: keys differ: {sorted(map(str, set(a.keys()) ^ set(b.keys())))}")
        for k in a:
            walk(a[k], b[k], f"{path}/{k}" if path else str(k), changed, counts)
        return
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            fail(f"{path}: length differs")
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}/{i}", changed, counts)
        return
    if a != b:
        fail(f"{path}: {a!r} -> {b!r}")
    counts["other"] += 1


def main():
    inp, out, log_path = sys.argv[1:4]
    require_weights_only = "--require-weights-only" in sys.argv[4:]
    log = json.load(open(log_path))
    changed = {t["name"] for t in log["tensors"]}
    # The output must load with weights_only=True wherever the input does (torch 1.13's restricted
    # unpickler knows no BINFLOAT, so a checkpoint with float hyper-parameters needs the full one).
    try:
        a = torch.load(inp, weights_only=True)
        weights_only = True
    except Exception:
        a = torch.load(inp, weights_only=False)
        weights_only = False
    if require_weights_only and not weights_only:
        fail(f"{inp} does not load with weights_only=True")
    b = torch.load(out, weights_only=weights_only)
    counts = {"same": 0, "changed": 0, "other": 0}
    if not log.get("drop_optimizer_state"):
        walk(a, b, "", changed, counts)
    else:
        walk(state_dict_of(a), state_dict_of(b), "", changed, counts)
    if counts["changed"] != len(changed):
        fail(f"{len(changed)} tensors in the log, {counts['changed']} changed in the file")
    max_diff = 0.0
    if log["step"]["kind"] == "svd":
        sa, sb = state_dict_of(a), state_dict_of(b)
        for t in log["tensors"]:
            w = sa[t["name"]].double().reshape(sa[t["name"]].shape[0], -1)
            k = t["svd"]["rank"]
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            ref = ((u[:, :k] * s[:k]) @ vh[:k]).float().reshape(sa[t["name"]].shape)
            diff = (ref - sb[t["name"]].float()).abs().max().item()
            scale = ref.abs().max().item()
            if diff > 1e-5 * max(scale, 1e-30) + 1e-7 * scale:
                fail(f"{t['name']}: differs from torch's rank-{k} truncation by {diff:.3g} (max |w| {scale:.3g})")
            max_diff = max(max_diff, diff / max(scale, 1e-30))
    print(f"OK weights_only={weights_only} same={counts['same']} changed={counts['changed']} other={counts['other']} svd_rel_max_diff={max_diff:.3g}")


if __name__ == "__main__":
    main()
