#!/usr/bin/env python3
"""Benchmarks `bitfsck resurrect` on a fixture run (default sample_ckpts/run/: the README's
walk-through; --run run2 for the second one, with its control), back to back in rounds:

- the default plan (a search over 10 candidates by successive halving, then the baselines), with
  independent children side by side (the default --jobs) and one at a time (--jobs 1), which must
  give the same resurrection.json figure for figure;
- the rule-based recipe (plan --no-search: graft + one double-well fine-tune of the same budget),
  what resurrect ran before the search, measured on the same claims' windows as the search (its
  recipe's eval_windows), for the time and the held-out loss the search buys.

Wall time is the median of --repeat rounds; the variants alternate within a round, so a busy
machine slows them alike. Each row also gives the result's validation loss (the claims' windows)
and the best baseline's, from the log.

Usage: bench/bench_resurrect.py [--bitfsck build/cli/bitfsck] [--repeat 1] [--jobs 0] [--run run|run2]
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
SAMPLES = HERE.parent / "sample_ckpts"


def resurrect(exe, run, out_dir, extra):
    cmd = [exe, "resurrect", str(run), "--tokens", str(run / "train.bin"), "--val-tokens", str(run / "val.bin"),
           "-o", str(out_dir), "--quiet"] + extra
    if (run / "control").is_dir():
        cmd += ["--control", str(run / "control")]
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


def final_loss(log):
    loss = log["start"]["val_loss"]
    for s in log["stages"]:
        if s["accepted"]:
            loss = s["after"]["val_loss"]
    return loss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bitfsck", default=str(HERE.parent / "build" / "cli" / "bitfsck"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=0, help="the side-by-side variant's --jobs (0: resurrect's default)")
    ap.add_argument("--run", default="run", help="the fixture run under sample_ckpts/ (run, run2)")
    args = ap.parse_args()
    run = SAMPLES / args.run

    side = [] if args.jobs == 0 else ["--jobs", str(args.jobs)]
    # (name, flags, whether its log must equal the first search variant's)
    variants = [("search, " + ("default jobs" if args.jobs == 0 else f"--jobs {args.jobs}"), side, True),
                ("search, --jobs 1", ["--jobs", "1"], True),
                ("rule-based (plan --no-search)", None, False)]
    walls = {name: [] for name, _, _ in variants}
    losses = {}
    reference = None
    same = True
    with tempfile.TemporaryDirectory(prefix="bench-resurrect-") as tmp:
        for r in range(args.repeat):
            for k, (name, flags, compared) in enumerate(variants):
                out_dir = Path(tmp) / f"{r}-{k}"
                if flags is None:  # the rule-based recipe, on the windows the search's claims used
                    recipe = Path(tmp) / "rule_based.json"
                    subprocess.run([args.bitfsck, "plan", str(run), "--no-search", "-o", str(recipe), "--quiet"], check=True,
                                   capture_output=True)
                    j = json.loads(recipe.read_text())
                    j["eval_windows"] = reference["windows"]["claims"]
                    recipe.write_text(json.dumps(j))
                    flags = ["--recipe", str(recipe)] + side
                wall, log = resurrect(args.bitfsck, run, out_dir, flags)
                walls[name].append(wall)
                best = log["best_baseline"]
                losses[name] = {"result": final_loss(log), "best_baseline": best["baseline"] if best else None,
                                "best_baseline_loss": best["baseline_loss"] if best else None,
                                "beats_best_baseline": log["beats_best_baseline"], "claim_windows": log["windows"]["claims"]}
                if compared:
                    f = figures(log, out_dir)
                    if reference is None:
                        reference = f
                    elif f != reference:
                        same = False
                print(f"round {r + 1}: {name:26s} {wall:7.1f} s  result {losses[name]['result']:.4f}", flush=True)
                shutil.rmtree(out_dir)

    result = {
        "run": str(run), "cores": os.cpu_count(), "rounds": args.repeat,
        "load_average": os.getloadavg()[0],
        "wall_s": {name: statistics.median(w) for name, w in walls.items()},
        "losses": losses,
        "identical_logs_across_jobs": same,
    }
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / f"resurrect_results_{args.run}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresurrect on {run.name}, {os.cpu_count()} cores, load average {result['load_average']:.1f}")
    print("| variant | wall s | result val loss | best baseline | its loss |")
    print("|---|---:|---:|---|---:|")
    for name, _, _ in variants:
        l = losses[name]
        print(f"| {name} | {result['wall_s'][name]:.1f} | {l['result']:.4f} | {l['best_baseline']} | {l['best_baseline_loss']:.4f} |")
    print(f"search logs with and without --jobs 1: {'identical' if same else 'DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
