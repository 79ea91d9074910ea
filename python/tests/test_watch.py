"""CollapseWatch inside a real training loop: the sample run's recipe (sample_ckpts/make_run.py,
a coupled L2 on the MLP weights) trained here, checkpoints saved as it goes; the watch must raise
at the step `bitfsck timeline` finds on those checkpoints."""
import json
import sys
import time
import warnings

import pytest

import bitfsck
import bitfsck.watch
from conftest import SAMPLES, run_cli_json

torch = pytest.importorskip("torch")
sys.path.insert(0, str(SAMPLES))
make_run = pytest.importorskip("make_run")
ref = make_run.ref
EVERY = 50


def train(run_dir, watch, steps):
    """make_run.main's loop, saving {'model_state_dict', 'step'} every EVERY steps, then checking."""
    T = make_run.TRAIN
    torch.set_num_threads(1)
    torch.manual_seed(T["seed"])
    train_tokens = ref.read_tokens(str(SAMPLES / "run" / "train.bin"))
    cfg = ref.ModelConfig()
    model = ref.StudentLLM(cfg)
    mlp = [p for n, p in model.named_parameters() if make_run.is_mlp(n)]
    other = [p for n, p in model.named_parameters() if not make_run.is_mlp(n)]
    opt = torch.optim.AdamW([
        {"params": other, "lr": T["lr"], "weight_decay": T["weight_decay"], "name": "attn_norm_embed"},
        {"params": mlp, "lr": T["mlp_lr"], "weight_decay": 0.0, "name": "mlp"}], betas=T["betas"])
    for g in opt.param_groups:
        g["peak_lr"] = g["lr"]
    gen = torch.Generator().manual_seed(T["seed"])
    seq, bs = T["seq_len"], T["batch_size"]
    step_seconds = 0.0
    for step in range(steps):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = g["peak_lr"] * make_run.lr_factor(step, cosine=g["name"] != "mlp")
        offs = torch.randint(0, len(train_tokens) - seq - 1, (bs,), generator=gen)
        x = torch.stack([train_tokens[o:o + seq] for o in offs])
        y = torch.stack([train_tokens[o + 1:o + seq + 1] for o in offs])
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), T["grad_clip"])
        with torch.no_grad():
            for p in mlp:
                p.grad.add_(p, alpha=T["mlp_l2"])
        opt.step()
        step_seconds += time.perf_counter() - t0
        done = step + 1
        if done % EVERY == 0:
            torch.save({"model_state_dict": model.state_dict(), "step": done}, run_dir / f"step_{done:06d}.pt")
        watch.step(model, done)
    return step_seconds


@pytest.mark.slow
def test_watch_raises_at_the_timeline_onset(cli, tmp_path):
    log = tmp_path / "watch.jsonl"
    watch = bitfsck.watch.CollapseWatch(every=EVERY, on_collapse="raise", log=log, run_dir=tmp_path)
    with pytest.raises(bitfsck.CollapseError) as e:
        train(tmp_path, watch, make_run.TRAIN["steps"])
    event = e.value.event
    timeline = run_cli_json(cli, "timeline", str(tmp_path))
    assert timeline["onset_step"] is not None
    assert event.step == timeline["onset_step"]
    assert event.last_healthy_step == timeline["last_healthy_step"]
    assert event.last_healthy_checkpoint == timeline["last_healthy_file"]
    assert {o["label"] for o in timeline["role_onsets"] if o["step"] == event.step} == set(event.layer_roles)
    assert event.rules and all("mlp" in l for l in event.layer_roles)
    # The log: one line per check, read by `bitfsck timeline LOG.jsonl` with the same onset.
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(EVERY, event.step + 1, EVERY))
    metrics = run_cli_json(cli, "timeline", str(log))
    assert metrics["onset_step"] is not None and metrics["onset_step"] >= event.step


def test_watch_warns_once_and_calls_back():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"layers": torch.nn.ModuleList([torch.nn.ModuleDict({
        "mlp": torch.nn.ModuleDict({"up_proj": torch.nn.Linear(64, 128, bias=False)})})])})
    watch = bitfsck.watch.CollapseWatch(every=10)
    assert watch.step(model, 5) is None and watch.checks == 0   # not a multiple of every
    assert watch.step(model, 10) is None and watch.checks == 1
    with torch.no_grad():
        model.layers[0].mlp.up_proj.weight.mul_(1e-5)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        event = watch.step(model, 20)
        assert watch.step(model, 30) is None  # reported once
    assert event is not None and event.step == 20 and event.last_healthy_step == 10
    assert [x.category for x in w] == [bitfsck.watch.CollapseWarning]
    got = []
    cb = bitfsck.watch.CollapseWatch(every=1, on_collapse=got.append)
    cb.step(model, 1)
    assert got and got[0].verdict == "collapsed"
    with pytest.raises(bitfsck.UsageError):
        bitfsck.watch.CollapseWatch(on_collapse="explode")
