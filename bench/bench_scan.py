#!/usr/bin/env python3
"""Benchmarks `bitfsck scan` against what a user runs today, side by side in one run, as ratios.

On a generated 100M-parameter Llama-style checkpoint (~400 MB float32, MLPs of layers 6-11
collapsed; bench/peers/make_100m_checkpoint.py), saved as .pt and, with safetensors' own
writer, as .safetensors, it times:
  * `bitfsck scan --json` with 1 and with 2 threads (-j)
  * bench/peers/torch_scan.py         torch.load, then per-tensor std, zeros, absmean-ternary fractions (.pt)
  * bench/peers/safetensors_numpy_scan.py  safetensors' memory map + numpy, the same figures (.safetensors;
                                      skipped where safetensors is not installed)
  * `cat FILE > /dev/null`            one sequential read of the file: the floor
  * `bitfsck inspect` and `torch.load` alone; `bitfsck timeline` and `bitfsck diff` for their memory
Every contender runs once per round, the rounds back to back (--repeat), with the file in page
cache (read once first), so a busy machine slows them alike. Wall time and CPU time (user + sys)
are medians over the rounds; peak resident memory is /usr/bin/time's %M (the command's own).

Usage: bench/bench_scan.py [--bitfsck build/cli/bitfsck] [--out-dir bench/out] [--python PY] [--repeat 5]
Writes OUT_DIR/scan_results.json and prints a table (--markdown: the README's table).
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
ROOT = HERE.parent
TORCH_PYTHON = "/usr/bin/python3"  # Debian's python3-torch lives here
SKIPPED = 77


def default_python():
    venv = ROOT / ".venv" / "bin" / "python3"
    return str(venv) if venv.exists() else sys.executable


GNU_TIME = "/usr/bin/time"  # Debian package `time`


def run(cmd, stdout=subprocess.DEVNULL):
    """Runs cmd; returns (wall s, cpu s, peak RSS bytes, exit code).

    Linux carries a process's peak RSS across exec, so wait4's ru_maxrss of a child forked from
    this (30 MB) Python never reads lower than Python's own; /usr/bin/time -f %M, forked from a
    small C program, reports the command's own peak. Without it, ru_maxrss is a floor.
    """
    rss_file = None
    if os.access(GNU_TIME, os.X_OK):
        rss_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_scan_rss.{os.getpid()}"
        cmd = [GNU_TIME, "-q", "-f", "%M", "-o", str(rss_file)] + list(cmd)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 4, 5, SKIPPED):  # scan exits 4/5 for degraded/collapsed checkpoints
        sys.exit(f"{' '.join(map(str, cmd))} failed with {code}:\n{err.decode(errors='replace')}")
    rss = usage.ru_maxrss * 1024
    if rss_file is not None:
        try:
            rss = int(rss_file.read_text().split()[-1]) * 1024
        finally:
            rss_file.unlink(missing_ok=True)
    return wall, usage.ru_utime + usage.ru_stime, rss, code


def warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def make_checkpoints(out_dir, python):
    pt = out_dir / "ckpt_100m.pt"
    st = out_dir / "ckpt_100m.safetensors"
    out_dir.mkdir(parents=True, exist_ok=True)
    if not pt.exists():
        print(f"generating {pt} ...", flush=True)
        subprocess.run([TORCH_PYTHON, str(HERE / "peers" / "make_100m_checkpoint.py"), str(pt)], check=True)
    if not st.exists():
        print(f"saving {st} with safetensors ...", flush=True)
        code = subprocess.run([python, "-c", (
            "import sys, torch\n"
            "try:\n    from safetensors.torch import save_file\n"
            "except ImportError:\n    sys.exit(77)\n"
            "sd = torch.load(sys.argv[1], map_location='cpu')['model_state_dict']\n"
            "save_file({k: v.contiguous() for k, v in sd.items()}, sys.argv[2])\n"), str(pt), str(st)]).returncode
        if code == SKIPPED:
            print("safetensors is not installed: the .safetensors rows are skipped")
            return pt, None
        if code != 0:
            sys.exit("could not write the .safetensors checkpoint")
    return pt, st


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bitfsck", default=str(ROOT / "build" / "cli" / "bitfsck"))
    ap.add_argument("--out-dir", default=str(HERE / "out"), help="where the checkpoints and results go")
    ap.add_argument("--python", default=default_python(), help="a python with safetensors and numpy (the peer)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", default="1,2", help="thread counts for bitfsck scan")
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    args = ap.parse_args()

    out_dir = Path(args.out_dir)
    pt, st = make_checkpoints(out_dir, args.python)
    threads = [int(t) for t in args.threads.split(",")]
    bitfsck = args.bitfsck

    # (file kind, contender, command)
    contenders = []
    for kind, path in (("pt", pt), ("safetensors", st)):
        if path is None:
            continue
        for j in threads:
            contenders.append((kind, f"bitfsck scan -j{j}", [bitfsck, "scan", "--json", "-j", str(j), str(path)]))
        if kind == "pt":
            contenders.append((kind, "torch_scan.py", [TORCH_PYTHON, str(HERE / "peers" / "torch_scan.py"), str(path)]))
        else:
            contenders.append((kind, "safetensors + numpy", [args.python, str(HERE / "peers" / "safetensors_numpy_scan.py"), str(path)]))
        contenders.append((kind, "cat > /dev/null", ["cat", str(path)]))
        contenders.append((kind, "bitfsck inspect", [bitfsck, "inspect", str(path)]))
        if kind == "pt":
            # Resident memory of the other commands that read every tensor (their time is not the point).
            run_dir = out_dir / "run_100m"
            run_dir.mkdir(exist_ok=True)
            link = run_dir / "step_002000.pt"
            if not link.exists():
                link.symlink_to(path.resolve())
            contenders.append((kind, "bitfsck timeline", [bitfsck, "timeline", str(run_dir)]))
            if st is not None:
                contenders.append((kind, "bitfsck diff .pt .safetensors", [bitfsck, "diff", str(path), str(st)]))
            contenders.append((kind, "torch.load", [TORCH_PYTHON, "-c", "import sys, torch; torch.load(sys.argv[1], map_location='cpu')", str(path)]))

    samples = {(k, n): [] for k, n, _ in contenders}
    skipped = set()
    for path in (pt, st):
        if path is not None:
            warm(path)
    for _ in range(args.repeat):
        for kind, name, cmd in contenders:
            if (kind, name) in skipped:
                continue
            wall, cpu, rss, code = run(cmd)
            if code == SKIPPED:
                skipped.add((kind, name))
                continue
            samples[(kind, name)].append((wall, cpu, rss))

    results = []
    for kind, name, cmd in contenders:
        s = samples[(kind, name)]
        if not s:
            results.append({"file": kind, "name": name, "cmd": [str(c) for c in cmd], "skipped": True})
            continue
        results.append({"file": kind, "name": name, "cmd": [str(c) for c in cmd], "skipped": False,
                        "wall_s": statistics.median(x[0] for x in s), "cpu_s": statistics.median(x[1] for x in s),
                        "peak_rss_bytes": max(x[2] for x in s), "wall_all_s": [x[0] for x in s]})
    by = {(r["file"], r["name"]): r for r in results if not r["skipped"]}

    def ratio(kind, a, b, key="wall_s"):
        if (kind, a) in by and (kind, b) in by:
            return by[(kind, a)][key] / by[(kind, b)][key]
        return None

    best = f"bitfsck scan -j{max(threads)}"
    ratios = {}
    for kind, path in (("pt", pt), ("safetensors", st)):
        if path is None:
            continue
        peer = "torch_scan.py" if kind == "pt" else "safetensors + numpy"
        ratios[kind] = {
            "speedup_vs_" + ("torch_scan" if kind == "pt" else "safetensors_numpy"): ratio(kind, peer, best),
            "time_over_sequential_read": ratio(kind, best, "cat > /dev/null"),
            "threads_scaling": ratio(kind, f"bitfsck scan -j{min(threads)}", best),
            "scan_peak_rss_mb": by[(kind, best)]["peak_rss_bytes"] / 1e6 if (kind, best) in by else None,
            "file_gb_per_s": path.stat().st_size / 1e9 / by[(kind, best)]["wall_s"] if (kind, best) in by else None,
        }
    bitfsck_rss = [r["peak_rss_bytes"] for r in results if not r["skipped"] and r["name"].startswith("bitfsck")]
    ratios["bitfsck_peak_rss_mb_max"] = max(bitfsck_rss) / 1e6 if bitfsck_rss else None
    report = {"checkpoints": {"pt": str(pt), "safetensors": str(st) if st else None},
              "file_size_bytes": pt.stat().st_size, "cores": os.cpu_count(), "repeat": args.repeat,
              "load_average": os.getloadavg(), "results": results, "ratios": ratios}
    (out_dir / "scan_results.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"checkpoint {pt.stem} ({pt.stat().st_size / 1e6:.0f} MB float32), {os.cpu_count()} cores, "
          f"median of {args.repeat} back-to-back rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"{'file':12s} {'':22s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MB':>12s}")
    for r in results:
        if r["skipped"]:
            print(f"{r['file']:12s} {r['name']:22s} {'skipped':>8s}")
        else:
            print(f"{r['file']:12s} {r['name']:22s} {r['wall_s']:8.3f} {r['cpu_s']:8.3f} {r['peak_rss_bytes'] / 1e6:12.1f}")
    for kind, rr in ratios.items():
        if isinstance(rr, dict):
            print(f"{kind}: " + ", ".join(f"{k} {v:.2f}" for k, v in rr.items() if v is not None))
    if ratios["bitfsck_peak_rss_mb_max"] is not None:
        print(f"largest peak RSS of any bitfsck command: {ratios['bitfsck_peak_rss_mb_max']:.1f} MB")
    if args.markdown:
        print()
        print("| file | command | wall s | CPU s | peak RSS MB | vs `bitfsck scan -j%d` |" % max(threads))
        print("|---|---|---:|---:|---:|---:|")
        for r in results:
            if r["skipped"] or not (r["name"].startswith("bitfsck scan") or r["name"] in (
                    "torch_scan.py", "safetensors + numpy", "cat > /dev/null")):
                continue
            rel = r["wall_s"] / by[(r["file"], best)]["wall_s"]
            print(f"| .{r['file']} | {r['name']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {r['peak_rss_bytes'] / 1e6:.0f} | {rel:.2f}x |")


if __name__ == "__main__":
    main()
