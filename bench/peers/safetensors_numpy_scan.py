# The fastest scan a user writes without torch: safetensors' memory map and numpy, one tensor
# at a time; per tensor the same figures as torch_scan.py (std, exact zeros, absmean-ternary
# fractions), in float32 like torch_scan.py's w.float().
# Usage: python3 safetensors_numpy_scan.py CHECKPOINT.safetensors [OUT.json]
# Exits 77 (skipped) where safetensors or numpy is not installed.
import json
import sys
import time

try:
    import numpy as np
    from safetensors import safe_open
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)


def bf16_tensors(path, names):
    """numpy has no bfloat16: the same memory map read as uint16 and widened (what users do)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    for k in names:
        info = header[k]
        b, e = info["data_offsets"]
        u = raw[8 + n + b:8 + n + e].view(np.uint16).reshape(info["shape"])
        yield k, (u.astype(np.uint32) << 16).view(np.float32)


def main():
    t0 = time.time()
    path = sys.argv[1]
    out = {}
    bf16 = []
    with safe_open(path, framework="numpy") as f:
        for k in f.keys():
            try:
                w = f.get_tensor(k)
            except (TypeError, ValueError):  # bfloat16
                bf16.append(k)
                continue
            out[k] = stats(w)
    for k, w in bf16_tensors(path, bf16):
        out[k] = stats(w)
    out = {k: v for k, v in out.items() if v is not None}
    json.dump(out, open(sys.argv[2] if len(sys.argv) > 2 else "/dev/null", "w"))
    print("tensors", len(out), "secs", round(time.time() - t0, 3))


def stats(w):
    if not np.issubdtype(w.dtype, np.floating):
        return None
    w = w.astype(np.float32, copy=False)
    n = w.size
    g = np.abs(w).mean()
    q = np.clip(np.rint(w / (g + 1e-8)), -1, 1)
    return dict(std=float(w.std(ddof=1)) if n > 1 else 0.0, zero_frac=float(np.count_nonzero(w == 0) / n),
                neg=float(np.count_nonzero(q == -1) / n), zero=float(np.count_nonzero(q == 0) / n),
                pos=float(np.count_nonzero(q == 1) / n))


if __name__ == "__main__":
    main()
