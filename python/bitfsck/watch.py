"""Catch a collapse while the run is still going: judge the live weights every N steps.

    watch = bitfsck.watch.CollapseWatch(every=100, on_collapse="raise", log="run/watch.jsonl",
                                        run_dir="run/")
    for step in range(steps):
        ...train...
        watch.step(model, step + 1)              # scans model.state_dict() when step % every == 0

Every check scans the live tensors with the scan's rules (bitfsck.scan_state_dict, no file) and
adds the report to an in-memory timeline built by the library's own timeline rules (the same
``build_timeline`` as ``bitfsck timeline``, cross-checkpoint rule included). At the first point
that is not healthy the watch reports which layer-roles, by which rule, and the last healthy saved
checkpoint to go back to; ``on_collapse`` decides what then happens: "warn" (a warning, once),
"raise" (CollapseError) or a callable given the CollapseEvent.

Trainer adapters, imported only when used: ``hf_callback(watch)`` (transformers.TrainerCallback)
and ``lightning_callback(watch)`` (lightning / pytorch_lightning Callback).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from typing import Any, Callable, Mapping, Optional, Union

from . import _bitfsck, scan_state_dict, step_from_file_name
from ._errors import CollapseError, UsageError

__all__ = ["CollapseWatch", "CollapseEvent", "CollapseWarning", "hf_callback", "lightning_callback"]


class CollapseWarning(UserWarning):
    """Issued by CollapseWatch(on_collapse="warn")."""


@dataclasses.dataclass
class CollapseEvent:
    """What the watch found at the onset."""
    step: int                                # the first checked step that is not healthy
    verdict: str                             # "degraded" or "collapsed"
    layer_roles: list                        # labels such as "layers.1.mlp_up", first failures at this step
    rules: list                              # rule ids that fired ("zeros_above", "std_below", ...)
    reasons: list                            # the findings (severity, rule, subject, message) at the onset
    last_healthy_step: Optional[int]         # last checked step before the onset that was healthy
    last_healthy_checkpoint: Optional[str]   # newest saved checkpoint at or before that step, if known
    timeline: dict                           # the whole in-memory timeline (docs/timeline.schema.json)

    def message(self) -> str:
        where = ", ".join(self.layer_roles[:6]) + (", ..." if len(self.layer_roles) > 6 else "")
        back = (f"; last healthy checkpoint: {self.last_healthy_checkpoint} (step {self.last_healthy_step})"
                if self.last_healthy_checkpoint else
                f"; last healthy step: {self.last_healthy_step}" if self.last_healthy_step is not None else
                "; no healthy step before it")
        first = self.reasons[0]["message"] if self.reasons else ""
        return (f"bitfsck: collapse onset at step {self.step} ({self.verdict}): {where} by {', '.join(self.rules)}"
                f"{back}. {first}")


def _roles_line(point: Mapping[str, Any]) -> dict:
    """A timeline point's role summaries under the names `bitfsck timeline FILE.jsonl` reads
    (analysis/training_metrics: std, gamma, zero per role)."""
    roles = {}
    for r in point.get("roles", []):
        roles[r["role"]] = {"std": r["mean_std"], "gamma": r["mean_absmean"], "zero": r["mean_zero"],
                            "verdict": r["verdict"], "layers": r["layers"]}
    return roles


class CollapseWatch:
    """Judges a model every ``every`` steps and keeps the run's timeline in memory.

    every: check when ``step % every == 0``. on_collapse: "warn", "raise" or a callable taking a
    CollapseEvent (called once, at the onset). log: a JSON-lines file, one line per check (the
    step, per-role std / gamma / zeros, the verdict, the findings), appended and flushed as it goes;
    ``bitfsck timeline LOG.jsonl`` reads it. run_dir: where the run saves checkpoints; the last
    healthy one is looked up there by step (file names as timelines read them), or registered
    with ``saved(path, step)``. Scan options (quantizer, thresholds, layers, roles, match,
    threads) are those of bitfsck.scan.
    """

    def __init__(self, every: int = 100, on_collapse: Union[str, Callable[[CollapseEvent], Any]] = "warn", *,
                 log: Optional[Union[str, os.PathLike]] = None, run_dir: Optional[Union[str, os.PathLike]] = None,
                 quantizer: str = "bitnet", thresholds: Optional[Mapping[str, float]] = None, threads: int = 0,
                 layers: Optional[str] = None, roles=None, match=None):
        if int(every) < 1:
            raise UsageError(f"every must be at least 1, not {every}")
        if not callable(on_collapse) and on_collapse not in ("warn", "raise"):
            raise UsageError(f"on_collapse must be 'warn', 'raise' or a callable, not {on_collapse!r}")
        self.every = int(every)
        self.on_collapse = on_collapse
        self.log = os.fspath(log) if log is not None else None
        self.run_dir = os.fspath(run_dir) if run_dir is not None else None
        self._scan_args = dict(quantizer=quantizer, thresholds=thresholds, threads=threads, layers=layers, roles=roles,
                               match=match)
        self._series = _bitfsck.ReportSeries()
        self._saved: dict[int, str] = {}
        self.timeline: Optional[dict] = None   # the last timeline built (docs/timeline.schema.json)
        self.event: Optional[CollapseEvent] = None  # the onset, once found
        self.seconds = 0.0                     # time spent in checks, for the overhead figure
        self.checks = 0

    # -- saved checkpoints -------------------------------------------------------------------
    def saved(self, path: Union[str, os.PathLike], step: Optional[int] = None) -> None:
        """Tells the watch a checkpoint of ``step`` was written to ``path`` (a candidate to go back to)."""
        path = os.fspath(path)
        s = step if step is not None else step_from_file_name(path)
        if s is None:
            raise UsageError(f"{path}: no step given and none in the file name", path)
        self._saved[int(s)] = path

    def _checkpoints(self) -> dict:
        found = dict(self._saved)
        if self.run_dir and os.path.isdir(self.run_dir):
            for name in os.listdir(self.run_dir):
                if name.endswith((".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".gguf", ".bit2")):
                    s = step_from_file_name(name)
                    if s is not None:
                        found.setdefault(s, os.path.join(self.run_dir, name))
        return found

    def last_healthy_checkpoint(self) -> Optional[str]:
        """The newest saved checkpoint at or before the last healthy checked step (None if unknown)."""
        if not self.timeline:
            return None
        healthy = self.timeline.get("last_healthy_step")
        if self.timeline.get("onset_step") is None and self.timeline["points"]:
            healthy = self.timeline["points"][-1]["step"]
        if healthy is None:
            return None
        candidates = [s for s in self._checkpoints() if s <= healthy]
        return self._checkpoints()[max(candidates)] if candidates else None

    # -- checks ------------------------------------------------------------------------------
    def step(self, model: Any, step: int) -> Optional[CollapseEvent]:
        """Checks the model (an nn.Module, or any mapping of names to tensors) when ``step`` is a
        multiple of ``every``; returns the CollapseEvent at the onset (after acting on it), else None."""
        if int(step) % self.every != 0:
            return None
        return self.check(model, step)

    def check(self, model: Any, step: int) -> Optional[CollapseEvent]:
        """Checks now, whatever the step."""
        t0 = time.perf_counter()
        state = model.state_dict() if hasattr(model, "state_dict") and callable(model.state_dict) else model
        report = scan_state_dict(state, step=int(step), label=f"step {int(step)}", **self._scan_args)
        self._series.add(report._r)
        self.timeline = json.loads(self._series.timeline_json())
        point = next(p for p in self.timeline["points"] if p["step"] == int(step))
        if self.log:
            line = {"step": int(step), "source": "bitfsck.watch", "verdict": point["verdict"],
                    "roles": _roles_line(point), "findings": point["findings"],
                    "onset_step": self.timeline["onset_step"]}
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, allow_nan=False) + "\n")
        self.checks += 1
        event = None
        if self.event is None and self.timeline["onset_step"] is not None:
            event = self.event = self._event()
        self.seconds += time.perf_counter() - t0
        if event is not None:
            self._act(event)
        return event

    def _event(self) -> CollapseEvent:
        tl = self.timeline
        onset = tl["onset_step"]
        at_onset = [o for o in tl["role_onsets"] if o["step"] == onset]
        rules = []
        for f in tl["reasons"]:
            if f["rule"] not in rules:
                rules.append(f["rule"])
        point = next(p for p in tl["points"] if p["step"] == onset)
        return CollapseEvent(step=onset, verdict=point["verdict"], layer_roles=[o["label"] for o in at_onset], rules=rules,
                             reasons=tl["reasons"], last_healthy_step=tl["last_healthy_step"],
                             last_healthy_checkpoint=self.last_healthy_checkpoint(), timeline=tl)

    def _act(self, event: CollapseEvent) -> None:
        if callable(self.on_collapse):
            self.on_collapse(event)
        elif self.on_collapse == "raise":
            raise CollapseError(event.message(), event)
        else:
            warnings.warn(event.message(), CollapseWarning, stacklevel=3)

    def write_timeline(self, path: Union[str, os.PathLike]) -> None:
        """The in-memory timeline as one JSON document (as `bitfsck timeline --json` prints)."""
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.timeline, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)


# -- trainer adapters (imported lazily: the module works without transformers or lightning) ----
def hf_callback(watch: CollapseWatch):
    """A transformers.TrainerCallback that checks the model on every step the watch's ``every``
    selects, and stops training (control.should_training_stop) at the onset unless the watch
    raises."""
    from transformers import TrainerCallback  # noqa: PLC0415

    class BitfsckCallback(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is not None and watch.step(model, state.global_step) is not None:
                control.should_training_stop = True
            return control

    return BitfsckCallback()


def lightning_callback(watch: CollapseWatch):
    """A Lightning Callback (lightning or pytorch_lightning) checking after each training batch;
    at the onset it asks the trainer to stop (trainer.should_stop) unless the watch raises."""
    try:
        from lightning.pytorch import Callback  # noqa: PLC0415
    except ImportError:
        from pytorch_lightning import Callback  # noqa: PLC0415

    class BitfsckCallback(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if watch.step(pl_module, trainer.global_step) is not None:
                trainer.should_stop = True

    return BitfsckCallback()
