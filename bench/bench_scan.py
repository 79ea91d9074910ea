#!/usr/bin/env python3
"""Benchmarks bitfsck against what a user runs today, side by side, reported as ratios.

Compares, on a generated 100M-parameter Llama-style checkpoint (~400 MB, MLPs of layers 6-11
collapsed; bench/peers/make_100m_checkpoint.py):
  * `bitfsck scan`    vs bench/peers/torch_scan.py (torch.load, then per-tensor std, zeros and
                        absmean-ternary fractions)
  * `bitfsck inspect` vs `python3 -c "import torch; torch.load(...)"`
Wall time is the median of --repeat runs with the file in page cache (one warm-up read first);
peak resident memory is the child's ru_maxrss from wait4.

Usage: bench/bench_scan.py [--bitfsck build/cli/bitfsck] [--checkpoint bench/out/ckpt_100m.pt]
Writes bench/out/scan_results.json and prints a table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"  # Debian's python3-torch lives here


def run(cmd):
    """Runs cmd, returns (wall seconds, peak RSS bytes, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 4, 5):  # scan exits 4/5 for degraded/collapsed checkpoints
        sys.exit(f"{' '.join(map(str, cmd))} failed with {code}:\n{err.decode(errors='replace')}")
    return wall, usage.ru_maxrss * 1024, out


def measure(name, cmd, repeat):
    walls, rss = [], []
    for _ in range(repeat):
        w, r, _ = run(cmd)
        walls.append(w)
        rss.append(r)
    return {"name": name, "cmd": [str(c) for c in cmd], "wall_s": statistics.median(walls),
            "wall_all_s": walls, "peak_rss_bytes": max(rss)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bitfsck", default=str(HERE.parent / "build" / "cli" / "bitfsck"))
    ap.add_argument("--checkpoint", default=str(HERE / "out" / "ckpt_100m.pt"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    ckpt = Path(args.checkpoint)
    if not ckpt.exists():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {ckpt} ...", flush=True)
        subprocess.run([PYTHON, str(HERE / "peers" / "make_100m_checkpoint.py"), str(ckpt)], check=True)
    size = ckpt.stat().st_size
    with open(ckpt, "rb") as f:  # warm the page cache: every contender reads from memory
        while f.read(1 << 24):
            pass

    results = [
        measure("bitfsck scan", [args.bitfsck, "scan", "--json", str(ckpt)], args.repeat),
        measure("python torch_scan.py", [PYTHON, str(HERE / "peers" / "torch_scan.py"), str(ckpt)], args.repeat),
        measure("bitfsck inspect", [args.bitfsck, "inspect", str(ckpt)], args.repeat),
        measure("python torch.load", [PYTHON, "-c", "import sys, torch; torch.load(sys.argv[1], map_location='cpu')", str(ckpt)],
                args.repeat),
    ]
    by = {r["name"]: r for r in results}
    ratios = {
        "scan_speedup": by["python torch_scan.py"]["wall_s"] / by["bitfsck scan"]["wall_s"],
        "scan_memory_ratio": by["python torch_scan.py"]["peak_rss_bytes"] / by["bitfsck scan"]["peak_rss_bytes"],
        "scan_peak_rss_over_file_size": by["bitfsck scan"]["peak_rss_bytes"] / size,
        "inspect_speedup": by["python torch.load"]["wall_s"] / by["bitfsck inspect"]["wall_s"],
        "inspect_peak_rss_over_file_size": by["bitfsck inspect"]["peak_rss_bytes"] / size,
    }
    report = {"checkpoint": str(ckpt), "file_size_bytes": size, "cores": os.cpu_count(), "results": results, "ratios": ratios}
    out = HERE / "out" / "scan_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"checkpoint {ckpt} ({size / 1e6:.0f} MB), {os.cpu_count()} cores, median of {args.repeat}")
    print(f"{'':24s} {'wall s':>8s} {'peak RSS MB':>12s}")
    for r in results:
        print(f"{r['name']:24s} {r['wall_s']:8.3f} {r['peak_rss_bytes'] / 1e6:12.1f}")
    print(f"scan:    {ratios['scan_speedup']:.1f}x faster than torch_scan.py, peak RSS {100 * ratios['scan_peak_rss_over_file_size']:.1f}% of the file")
    print(f"inspect: {ratios['inspect_speedup']:.1f}x faster than torch.load, peak RSS {100 * ratios['inspect_peak_rss_over_file_size']:.1f}% of the file")


if __name__ == "__main__":
    main()
