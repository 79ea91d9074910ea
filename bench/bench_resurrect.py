#!/usr/bin/env python3
"""Benchmarks `bitfsck resurrect` on the sample run (sample_ckpts/run/: the README's walk-through),
one child process at a time (--jobs 1) against the default (independent children side by side),
back to back in rounds, and checks that both give the same resurrection.json figure for figure.

The walk-through plans the recipe (graft + 150 fine-tuning steps), measures every stage, runs
the three baseline fine-tunes and measures the run's own checkpoints: about 30 child processes.
Wall time is the median of --repeat rounds; the two variants alternate within a round, so a busy
machine slows both alike.

Usage: bench/bench_resurrect.py [--bitfsck build/cli/bitfsck] [--repeat 1] [--jobs 0]
Writes bench/out/resurrect_results.json and prints a table. Exit 1 when the logs differ.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = HERE.parent / "sample_ckpts" / "run"


def resurrect(exe, out_dir, jobs):
    cmd = [exe, "resurrect", str(RUN), "--tokens", str(RUN / "train.bin"), "--val-tokens", str(RUN / "val.bin"),
           "-o", str(out_dir), "--quiet"]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 7):  # 7: healthy but not better than the best baseline (still a result)
        sys.exit(f"{' '.join(cmd)} failed with {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    return wall, json.loads((out_dir / "resurrection.json").read_text())


def figures(log, out_dir):
    """The log without what must differ between two runs: its own time and its folder's name."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "seconds"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        if isinstance(x, str):
            return x.replace(str(out_dir), "OUT")
        return x
    return strip(log)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bitfsck", default=str(HERE.parent / "build" / "cli" / "bitfsck"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=0, help="the side-by-side variant's --jobs (0: resurrect's default)")
    args = ap.parse_args()

    variants = [("--jobs 1", 1), ("default" if args.jobs == 0 else f"--jobs {args.jobs}", None if args.jobs == 0 else args.jobs)]
    walls = {name: [] for name, _ in variants}
    reference = None
    same = True
    with tempfile.TemporaryDirectory(prefix="bench-resurrect-") as tmp:
        for r in range(args.repeat):
            for name, jobs in variants:
                out_dir = Path(tmp) / f"{r}-{name.replace(' ', '').replace('-', '')}"
                wall, log = resurrect(args.bitfsck, out_dir, jobs)
                walls[name].append(wall)
                f = figures(log, out_dir)
                if reference is None:
                    reference = f
                elif f != reference:
                    same = False
                print(f"round {r + 1}: {name:10s} {wall:7.1f} s", flush=True)
                shutil.rmtree(out_dir)

    serial = statistics.median(walls[variants[0][0]])
    side = statistics.median(walls[variants[1][0]])
    result = {
        "run": str(RUN), "cores": os.cpu_count(), "rounds": args.repeat,
        "load_average": os.getloadavg()[0],
        "wall_s": {name: statistics.median(w) for name, w in walls.items()},
        "speedup_side_by_side": serial / side,
        "identical_logs": same,
    }
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "resurrect_results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"resurrect on {RUN.name}: {variants[0][0]} {serial:.1f} s, {variants[1][0]} {side:.1f} s "
          f"({serial / side:.2f}x), {os.cpu_count()} cores, load average {result['load_average']:.1f}; "
          f"resurrection.json {'identical' if same else 'DIFFERS'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
