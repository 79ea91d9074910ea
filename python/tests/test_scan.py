"""scan / timeline / diff from Python are the CLI's documents; scan_state_dict judges a live
state dict as the file is judged."""
import threading

import numpy as np
import pytest

import bitfsck
from conftest import SAMPLES, run_cli_json

# Single-checkpoint fixtures the CLI scans (every format the readers take).
SCANNED = sorted([p for p in SAMPLES.glob("*") if p.suffix in (".pt", ".safetensors")]
                 + [p for p in (SAMPLES / "packed").glob("*") if p.suffix in (".pt", ".safetensors", ".gguf", ".bit2")]
                 + [SAMPLES / "run" / "step_000200.pt", SAMPLES / "run" / "step_000350.pt"])


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_scan_to_dict_is_the_cli_json(cli, path):
    (expected,) = run_cli_json(cli, "scan", str(path))
    got = bitfsck.scan(path).to_dict()
    assert got == expected  # no timing-only fields in the document
    r = bitfsck.scan(bitfsck.open(path))  # from an opened checkpoint: the same report
    assert r.to_dict() == expected


def test_scan_records_for_pandas():
    r = bitfsck.scan(SAMPLES / "run" / "step_000350.pt")
    assert r.verdict == "collapsed"
    assert r.layers and all(not isinstance(v, (dict, list)) or k == "tensors" for l in r.layers for k, v in l.items())
    assert {"name", "std", "ternary_zero"} <= set(r.tensors[0])
    assert "values" not in r.tensors[0] and "values_counts" not in r.tensors[0]
    pd = pytest.importorskip("pandas")
    assert len(pd.DataFrame(r.tensors)) == len(r.tensors)


def test_thresholds_and_selection_reach_the_library(cli):
    path = SAMPLES / "run" / "step_000200.pt"
    (expected,) = run_cli_json(cli, "scan", str(path), "--threshold", "collapsed_zero_frac=0.95", "--roles", "mlp")
    assert bitfsck.scan(path, collapsed_zero_frac=0.95, roles=["mlp"]).to_dict() == expected
    with pytest.raises(bitfsck.UsageError) as e:
        bitfsck.scan(path, no_such_threshold=1)
    assert "no_such_threshold" in str(e.value)


def test_timeline_and_diff_are_the_cli_json(cli):
    run = SAMPLES / "run"
    assert bitfsck.timeline(run) == run_cli_json(cli, "timeline", str(run))
    a, b = run / "step_000150.pt", run / "step_000250.pt"
    assert bitfsck.diff(a, b) == run_cli_json(cli, "diff", str(a), str(b))


def test_progress_and_cancel():
    seen = []
    bitfsck.scan(SAMPLES / "run" / "step_000350.pt", progress=lambda d, t, u, l: seen.append((d, t, u)))
    assert seen and seen[-1][2] == "bytes" and seen[-1][0] == seen[-1][1] > 0
    with pytest.raises(bitfsck.Cancelled):
        bitfsck.scan(SAMPLES / "run" / "step_000350.pt", threads=1, progress=lambda *a: False)

    class Boom(Exception):
        pass

    def boom(*a):
        raise Boom()

    with pytest.raises(Boom):  # the callback's own exception, not a Cancelled
        bitfsck.timeline(SAMPLES / "run", progress=boom)


def test_long_calls_release_the_gil():
    # While a scan runs on another thread, this thread keeps running Python.
    ticks = []
    done = threading.Event()

    def work():
        for _ in range(5):
            bitfsck.timeline(SAMPLES / "run", threads=1)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks.append(1)
        done.wait(0.001)
    t.join()
    assert len(ticks) > 5


torch = None


def _state_dict(path):
    global torch
    torch = pytest.importorskip("torch")
    obj = torch.load(str(path), map_location="cpu")
    ckpt = bitfsck.open(path)
    for part in (ckpt.state_dict_path or "").split("/"):
        if part:
            obj = obj[part]
    return obj


COMPARED = ("tensors", "layers", "findings", "verdict", "name_layout", "unassigned")
# Fixtures whose state dict torch gives as plain tensors (packed files hold uint8 codes that only
# bitfsck's readers fold into weights).
LIVE = [SAMPLES / n for n in ("plain_state_dict.pt", "wrapped_model.pt", "wrapped_state_dict.pt", "module_prefix.pt",
                              "ternary_export.pt", "dtypes.pt", "protocol4.pt")] + sorted((SAMPLES / "run").glob("step_*.pt"))


@pytest.mark.parametrize("path", LIVE, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_scan_state_dict_equals_scan_of_the_file(path):
    sd = _state_dict(path)
    live = bitfsck.scan_state_dict(sd).to_dict()
    from_file = bitfsck.scan(path).to_dict()
    for key in COMPARED:
        assert live[key] == from_file[key], key
    assert live["format"] == "memory"
    # NumPy arrays are judged the same as the torch tensors (bfloat16 has no NumPy type)
    as_numpy = {k: v.numpy() for k, v in sd.items() if v.dtype != torch.bfloat16}
    if len(as_numpy) == len(sd):
        assert bitfsck.scan_state_dict(as_numpy).to_dict()["layers"] == from_file["layers"]


def test_scan_state_dict_of_a_live_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"layers": torch.nn.ModuleList([torch.nn.ModuleDict({
        "mlp": torch.nn.ModuleDict({"up_proj": torch.nn.Linear(64, 128, bias=False)})})])})
    r = bitfsck.scan_state_dict(model.state_dict(), step=7)  # requires_grad parameters included
    assert r.step == 7 and r.verdict == "healthy"
    with torch.no_grad():
        model.layers[0].mlp.up_proj.weight.mul_(1e-5)
    assert bitfsck.scan_state_dict(model.state_dict()).verdict == "collapsed"
    assert bitfsck.scan_state_dict({"w": np.zeros((4, 4), np.float32), "note": "text"}).to_dict()["tensors"][0]["name"] == "w"


def test_ctrl_c_stops_a_long_call():
    # interrupt_main is what Ctrl-C does: a SIGINT for the main thread, while the work runs on others.
    import _thread
    import time as _time

    def slow(*a):
        _time.sleep(0.02)

    threading.Timer(0.2, _thread.interrupt_main).start()
    t0 = _time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        for _ in range(100):
            bitfsck.timeline(SAMPLES / "run", threads=1, progress=slow)
    assert _time.perf_counter() - t0 < 5
