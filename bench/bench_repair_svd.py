#!/usr/bin/env python3
"""Benchmarks `bitfsck repair svd` on every ternary matrix of a 100M-parameter model: the partial
(Lanczos, Spectra) solver against a full SVD (Eigen's divide-and-conquer) of the same matrices,
and, for reference, what a user would run in Python: torch.linalg.svd of each matrix, truncated.

The checkpoint is bench/peers/make_100m_checkpoint.py's (hidden 768, 12 layers, MLP 2048; 84
matrices). Rank 16 is kept everywhere (--rank 16), so all three do the same work; wall time is
the median of --repeat runs with the file in page cache.

Usage: bench/bench_repair_svd.py [--bitfsck build/cli/bitfsck] [--checkpoint bench/out/ckpt_100m.pt]
       [--rank 16] [--repeat 1] [--threads 0]
Writes bench/out/repair_svd_results.json and prints a table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"

TORCH_SVD = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[3]) or torch.get_num_threads())
obj = torch.load(sys.argv[1], map_location="cpu")
sd = obj
for key in ("model_state_dict", "state_dict", "model"):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        sd = obj[key]
        break
k = int(sys.argv[2])
names = [n for n, t in sd.items() if isinstance(t, torch.Tensor) and t.dim() == 2 and "_proj" in n]
for n in names:
    w = sd[n].double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    sd[n] = ((u[:, :k] * s[:k]) @ vh[:k]).float()
torch.save(obj, sys.argv[4])
print(len(names))
"""


def run(cmd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed with {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return wall, proc.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bitfsck", default=str(HERE.parent / "build" / "cli" / "bitfsck"))
    ap.add_argument("--checkpoint", default=str(HERE / "out" / "ckpt_100m.pt"))
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {ckpt} ...", flush=True)
        subprocess.run([PYTHON, str(HERE / "peers" / "make_100m_checkpoint.py"), str(ckpt)], check=True)
    with open(ckpt, "rb") as f:
        while f.read(1 << 24):
            pass

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for solver in ("partial", "full"):
            walls, log = [], None
            for i in range(args.repeat):
                out = Path(tmp) / f"{solver}{i}.pt"
                wall, stdout = run([args.bitfsck, "repair", "svd", str(ckpt), "-o", str(out), "--json", "--rank", str(args.rank),
                                    "--roles", "mlp,attn", "--solver", solver, "-j", str(args.threads)])
                walls.append(wall)
                log = json.loads(stdout)
                out.unlink()
            solvers = sorted({t["svd"]["solver"] for t in log["tensors"]})
            results.append({"name": f"bitfsck repair svd --solver {solver}", "wall_s": statistics.median(walls),
                            "tensors": len(log["tensors"]), "solvers": solvers})
            print(f"{results[-1]['name']}: {results[-1]['wall_s']:.2f} s", flush=True)
        walls = []
        for i in range(args.repeat):
            wall, stdout = run([PYTHON, "-c", TORCH_SVD, str(ckpt), str(args.rank), str(args.threads), str(Path(tmp) / "torch.pt")])
            walls.append(wall)
            count = int(stdout.decode().strip())
        results.append({"name": "python torch.linalg.svd", "wall_s": statistics.median(walls), "tensors": count})

    by = {r["name"]: r for r in results}
    partial = by["bitfsck repair svd --solver partial"]["wall_s"]
    ratios = {"full_over_partial": by["bitfsck repair svd --solver full"]["wall_s"] / partial,
              "torch_over_partial": by["python torch.linalg.svd"]["wall_s"] / partial}
    report = {"checkpoint": str(ckpt), "rank": args.rank, "cores": os.cpu_count(), "results": results, "ratios": ratios}
    out = HERE / "out" / "repair_svd_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"rank {args.rank} on {ckpt} ({os.cpu_count()} cores), median of {args.repeat}")
    for r in results:
        print(f"{r['name']:40s} {r['wall_s']:8.2f} s  {r['tensors']} matrices  {' '.join(r.get('solvers', []))}")
    print(f"partial solver: {ratios['full_over_partial']:.1f}x faster than the full SVD, "
          f"{ratios['torch_over_partial']:.1f}x faster than torch.linalg.svd (float64, whole run incl. load/save)")


if __name__ == "__main__":
    main()
