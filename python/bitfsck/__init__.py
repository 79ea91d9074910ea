"""bitfsck: fsck for ternary and 1-bit LLM checkpoints, from Python.

The same C++ libraries as the ``bitfsck`` command (io/ reads checkpoints, analysis/ judges them),
so a report from Python is the CLI's report::

    import bitfsck
    ckpt = bitfsck.open("run/step_000400.pt")          # torch zip/legacy, safetensors, GGUF, .bit2
    w = ckpt["layers.0.mlp.up_proj.weight"]            # read-only NumPy view of the memory map
    r = bitfsck.scan("run/step_000400.pt")             # == `bitfsck scan --json` (one document)
    r.verdict, r.findings, pandas.DataFrame(r.layers)
    bitfsck.timeline("run/")["onset_step"]             # == `bitfsck timeline --json run/`
    bitfsck.scan_state_dict(model.state_dict())        # live weights, no file written

and ``bitfsck.watch.CollapseWatch`` judges a model inside its training loop.

Errors are ``bitfsck.Error`` subclasses carrying the libraries' one-line message and their
``kind``, ``file`` and ``tensor``. Long calls release the GIL, take ``progress=callable(done,
total, unit, label)`` (return False to stop: ``bitfsck.Cancelled``) and stop on Ctrl-C.
"""
from __future__ import annotations

import json as _json
import os as _os
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from . import _bitfsck
from ._errors import (Cancelled, CollapseError, Error, FileError, ModelError, OutputError, UnreadableError,
                      UsageError)

__all__ = [
    "open", "scan", "scan_state_dict", "timeline", "diff", "Checkpoint", "ScanResult",
    "Error", "UsageError", "UnreadableError", "FileError", "OutputError", "Cancelled", "ModelError", "CollapseError",
    "__version__", "JSON_SCHEMA_VERSION",
]

__version__: str = _bitfsck.__version__
#: The ``schema_version`` every document carries (docs/json-output.md).
JSON_SCHEMA_VERSION: int = _bitfsck.JSON_SCHEMA_VERSION

PathLike = Union[str, "_os.PathLike[str]"]
#: ``progress(done, total, unit, label)``: unit is "bytes", "checkpoints", ...; total 0 when not
#: known yet. Return False to stop (the call raises bitfsck.Cancelled); None or True goes on.
ProgressCallback = Callable[[int, int, str, str], Optional[bool]]


def _options(quantizer: str = "bitnet", thresholds: Optional[Mapping[str, float]] = None, threads: int = 0,
             layers: Optional[str] = None, roles: Optional[Sequence[str]] = None, match: Optional[Sequence[str]] = None,
             content_hash: bool = True, i2s_layout: str = "act-parallel",
             trusted: Optional[Sequence[str]] = None) -> "_bitfsck.Options":
    o = _bitfsck.Options()
    o.quantizer = quantizer
    o.thresholds = _json.dumps(dict(thresholds)) if thresholds else ""
    o.threads = int(threads)
    o.layers = layers or ""
    o.roles = [roles] if isinstance(roles, str) else list(roles or [])
    o.match = [match] if isinstance(match, str) else list(match or [])
    o.content_hash = bool(content_hash)
    o.i2s_layout = i2s_layout
    o.trusted = list(trusted or [])
    return o


# ---------------------------------------------------------------------------------------------
class Checkpoint:
    """An opened checkpoint (``bitfsck.open``): format, security findings, the object tree and the
    tensors. Nothing is executed: the pickle is interpreted, never unpickled.

    ``ckpt[name]`` is a read-only NumPy array over the memory map, without a copy, for plain tensors
    of a dtype NumPy has; bfloat16 and float8 tensors come back decoded to float32 (a copy), and
    packed ternary tensors need ``decode(name)`` (float32 values) or ``codes(name)`` (int8 codes).
    Iterating gives the state dict's tensor names; ``len()`` their count.
    """

    def __init__(self, native: "_bitfsck.Checkpoint"):
        self._c = native

    @property
    def path(self) -> str:
        """What was opened: a file, a sharded index or a model folder."""
        return self._c.path

    @property
    def format(self) -> str:
        """"torch_zip", "torch_legacy", "safetensors", "gguf" or "bit2" (detected from the bytes)."""
        return self._c.format

    @property
    def findings(self) -> list[dict]:
        """Security findings: globals outside the allow-list that torch.load would import or call
        (dicts with global, severity "critical"|"warning", offset, called, reason)."""
        return self._c.findings

    @property
    def tree(self) -> Any:
        """The pickled object tree as plain Python values (None for safetensors and GGUF). Tensors
        appear as {"__tensor__": dtype, "shape": [...]}, classes bitfsck does not model as
        {"__object__": "module.Name"}: nothing is imported or called."""
        return self._c.tree

    @property
    def state_dict_path(self) -> Optional[str]:
        """Where the state dict sits in the tree ("" for the root, "model_state_dict", ...)."""
        return self._c.state_dict_path

    @property
    def step(self) -> Optional[int]:
        """The training step the checkpoint records, if any."""
        return self._c.step

    @property
    def size(self) -> int:
        """Bytes of every file of the checkpoint."""
        return self._c.size

    @property
    def shards(self) -> list[str]:
        return self._c.shards

    @property
    def notes(self) -> list[str]:
        return self._c.notes

    @property
    def warnings(self) -> list[str]:
        return self._c.warnings

    @property
    def metadata(self) -> dict[str, str]:
        """safetensors' __metadata__ or GGUF's key/values (as text)."""
        return dict(self._c.metadata)

    def names(self, state_dict_only: bool = True) -> list[str]:
        """Tensor names, in file order: the state dict's (default) or every tensor in the file
        (optimizer state included)."""
        return self._c.names(state_dict_only)

    @property
    def tensor_names(self) -> list[str]:
        return self._c.names(True)

    def info(self, name: str) -> dict:
        """dtype, shape, stride, encoding, nbytes, ... of one tensor, without reading it."""
        return self._c.info(name)

    def view(self, name: str):
        """A read-only NumPy array over the tensor's bytes in the memory map (no copy). Raises
        UsageError for packed tensors and for dtypes NumPy lacks (bfloat16, float8)."""
        return self._c.view(name)

    def decode(self, name: str):
        """The tensor's values as a new float32 array: packed ternary decoded to code x scale,
        bfloat16 and float8 widened."""
        return self._c.decode(name)

    def codes(self, name: str):
        """The ternary codes (-1, 0, +1) of a packed ternary tensor, as a new int8 array."""
        return self._c.codes(name)

    def __getitem__(self, name: str):
        info = self._c.info(name)
        if info["viewable"]:
            return self._c.view(name)
        if info["encoding"] == "plain":
            return self._c.decode(name)
        raise UsageError(f"{self.path}: tensor '{name}' is stored {info['encoding']}: use decode() or codes()",
                         self.path, name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in set(self._c.names(False))

    def __iter__(self) -> Iterator[str]:
        return iter(self._c.names(True))

    def __len__(self) -> int:
        return len(self._c.names(True))

    def items(self) -> Iterator[tuple[str, Any]]:
        """(name, array) for every state-dict tensor, as ``ckpt[name]`` gives them."""
        for n in self._c.names(True):
            yield n, self[n]

    def __repr__(self) -> str:
        return f"<bitfsck.Checkpoint {self.path!r} {self.format}, {len(self)} tensors, {len(self.findings)} security findings>"


def open(path: PathLike, *, i2s_layout: str = "act-parallel", trusted: Sequence[str] = ()) -> Checkpoint:
    """Opens a checkpoint: a file (torch.save zip or legacy, safetensors, GGUF, .bit2), a sharded
    index (``*.index.json``) or a model folder. The format comes from the bytes, never the name.

    ``i2s_layout``: the byte layout of bitnet.cpp I2_S tensors ("act-parallel", "interleaved",
    "arm"), which GGUF files do not record. ``trusted``: "module.Class" names not to report as
    security findings. Raises UnreadableError or FileError (message names the file).
    """
    return Checkpoint(_bitfsck.open(_os.fspath(path), i2s_layout, list(trusted)))


# ---------------------------------------------------------------------------------------------
def _flat(record: Mapping[str, Any], prefix: str = "") -> dict:
    """One level of nesting flattened ({"ternary": {"zero": z}} -> "ternary_zero"), histograms
    dropped: rows pandas.DataFrame takes as they are."""
    out: dict = {}
    for k, v in record.items():
        key = prefix + k
        if isinstance(v, Mapping):
            if "counts" in v:  # a histogram
                continue
            out.update(_flat(v, key + "_"))
        else:
            out[key] = v
    return out


class ScanResult:
    """A scan report. ``to_dict()`` is the CLI's ``bitfsck scan --json`` document for this input
    (docs/scan.schema.json); ``tensors`` and ``layers`` are flat records for pandas."""

    def __init__(self, native: "_bitfsck.ScanResult"):
        self._r = native
        self._doc: Optional[dict] = None

    def to_dict(self, histograms: bool = True) -> dict:
        """The report as the CLI's JSON (same library serialiser, analysis/report_json)."""
        if not histograms:
            return _json.loads(self._r.json(False))
        if self._doc is None:
            self._doc = _json.loads(self._r.json(True))
        return _json.loads(_json.dumps(self._doc))  # a copy the caller may change

    def to_json(self, histograms: bool = True) -> str:
        """The report as JSON text, exactly as the CLI writes one report."""
        return self._r.json(histograms)

    def _get(self, key: str) -> Any:
        if self._doc is None:
            self._doc = _json.loads(self._r.json(True))
        return self._doc[key]

    @property
    def verdict(self) -> str:
        """"healthy", "degraded", "collapsed" or "unknown"."""
        return self._r.verdict

    @property
    def file(self) -> str:
        return self._r.file

    @property
    def step(self) -> Optional[int]:
        return self._r.step

    @property
    def findings(self) -> list[dict]:
        """The rules that fired, most severe first (severity, rule, subject, message)."""
        return self._get("findings")

    @property
    def tensors(self) -> list[dict]:
        """One flat record per scanned tensor (histograms left out)."""
        return [_flat(t) for t in self._get("tensors")]

    @property
    def layers(self) -> list[dict]:
        """One flat record per (layer, role) group, with its verdict."""
        return [_flat(l) for l in self._get("layers")]

    def __repr__(self) -> str:
        return f"<bitfsck.ScanResult {self.file!r} {self.verdict}, {len(self._get('tensors'))} tensors>"


def scan(checkpoint: Union[PathLike, Checkpoint], *, quantizer: str = "bitnet", thresholds: Optional[Mapping[str, float]] = None,
         threads: int = 0, layers: Optional[str] = None, roles: Optional[Sequence[str]] = None,
         match: Optional[Sequence[str]] = None, content_hash: bool = True, i2s_layout: str = "act-parallel",
         trusted: Sequence[str] = (), progress: Optional[ProgressCallback] = None, **threshold_overrides: float) -> ScanResult:
    """Scans one checkpoint (a path or an opened Checkpoint) as ``bitfsck scan`` does.

    quantizer: "bitnet" or "distillix"; thresholds (or keyword overrides such as
    ``collapsed_std=5e-4``): docs' threshold names; layers ("0,2-5"), roles (["mlp"]) and match
    (globs) choose tensors as --layers/--roles/--match do; threads=0 uses every core.
    A folder of several checkpoints is refused (UsageError): use ``timeline`` or scan each.
    """
    t = dict(thresholds or {})
    t.update(threshold_overrides)
    o = _options(quantizer, t, threads, layers, roles, match, content_hash, i2s_layout, trusted)
    if isinstance(checkpoint, Checkpoint):
        return ScanResult(_bitfsck.scan_checkpoint(checkpoint._c, o, progress))
    path = _os.fspath(checkpoint)
    results = _bitfsck.scan_paths([path], o, progress)
    if len(results) != 1:
        raise UsageError(f"{path}: holds {len(results)} checkpoints; scan() takes one (bitfsck.timeline() takes a run)", path)
    return ScanResult(results[0])


def _host_array(name: str, value: Any):
    """A C-contiguous CPU array the extension can view: NumPy as is, torch tensors detached and,
    if on a GPU, copied to host (one tensor at a time)."""
    if hasattr(value, "detach") and hasattr(value, "device"):  # torch.Tensor, without importing torch
        t = value.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")
        t = t.contiguous()
        if str(t.dtype) == "torch.bool":  # DLPack in torch 1.13 has no bool: the same bytes as uint8
            t = t.view(__import__("torch").uint8)
        return t
    import numpy as np
    a = np.asarray(value)
    if a.dtype == object:
        raise UsageError(f"state dict entry '{name}' is not an array ({type(value).__name__})", "", name)
    return np.ascontiguousarray(a)


def scan_state_dict(state_dict: Mapping[str, Any], *, step: Optional[int] = None, label: str = "<memory>",
                    quantizer: str = "bitnet", thresholds: Optional[Mapping[str, float]] = None, threads: int = 0,
                    layers: Optional[str] = None, roles: Optional[Sequence[str]] = None,
                    match: Optional[Sequence[str]] = None, progress: Optional[ProgressCallback] = None,
                    **threshold_overrides: float) -> ScanResult:
    """Judges in-memory tensors (``model.state_dict()``, or any mapping of names to NumPy arrays
    or torch tensors) by the rules a file is judged by, without writing a file.

    Tensors are viewed without a copy (torch through DLPack, NumPy through the buffer protocol);
    CUDA tensors are copied to host one at a time. Non-floating and non-array entries are left
    out as the file scan leaves them out. ``step`` and ``label`` name the report (its "file").
    """
    t = dict(thresholds or {})
    t.update(threshold_overrides)
    o = _options(quantizer, t, threads, layers, roles, match, False)
    arrays = []
    for name, value in state_dict.items():
        if value is None or not (hasattr(value, "shape") or hasattr(value, "__array__")):
            continue
        arrays.append((str(name), _host_array(str(name), value)))
    return ScanResult(_bitfsck.scan_arrays(arrays, o, label, step, progress))


def timeline(run: Union[PathLike, Sequence[PathLike]], *, quantizer: str = "bitnet",
             thresholds: Optional[Mapping[str, float]] = None, threads: int = 0, layers: Optional[str] = None,
             roles: Optional[Sequence[str]] = None, match: Optional[Sequence[str]] = None,
             i2s_layout: str = "act-parallel", progress: Optional[ProgressCallback] = None,
             **threshold_overrides: float) -> dict:
    """The run's timeline as ``bitfsck timeline --json`` prints it (docs/timeline.schema.json):
    every checkpoint of a run folder (or the files given) in step order, the collapse onset and
    the last healthy checkpoint."""
    t = dict(thresholds or {})
    t.update(threshold_overrides)
    o = _options(quantizer, t, threads, layers, roles, match, True, i2s_layout)
    inputs = [_os.fspath(run)] if isinstance(run, (str, _os.PathLike)) else [_os.fspath(p) for p in run]
    return _json.loads(_bitfsck.timeline(inputs, o, progress))


def diff(a: PathLike, b: PathLike, *, quantizer: str = "bitnet", threads: int = 0, layers: Optional[str] = None,
         roles: Optional[Sequence[str]] = None, match: Optional[Sequence[str]] = None, i2s_layout: str = "act-parallel",
         progress: Optional[ProgressCallback] = None) -> dict:
    """Per-tensor change from checkpoint a to b as ``bitfsck diff --json`` prints it
    (docs/diff.schema.json): relative L2 distance and ternary code flips."""
    o = _options(quantizer, None, threads, layers, roles, match, True, i2s_layout)
    return _json.loads(_bitfsck.diff(_os.fspath(a), _os.fspath(b), o, progress))


def step_from_file_name(file: PathLike) -> Optional[int]:
    """The training step a checkpoint's name gives ("step_000400.pt" -> 400), as timelines read it."""
    return _bitfsck.step_from_file_name(_os.fspath(file))


def __getattr__(name: str):  # bitfsck.watch without importing it eagerly
    if name == "watch":
        import importlib
        return importlib.import_module(".watch", __name__)
    raise AttributeError(f"module 'bitfsck' has no attribute {name!r}")
