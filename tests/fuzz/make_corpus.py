#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/) into OUT/<target>/.

Seeds are small real files: the fixtures of sample_ckpts/ that fit a target's input size, the
data.pkl records of every .pt there, and files written here by the producers themselves (torch.save
in both formats and several protocols, Python's zipfile and pickle, numpy, and the PyPI
safetensors and gguf packages where the venv has them). Nothing is hand-written to look like
another tool's file. Generated at build time rather than committed: the corpus is a few hundred
kilobytes that the fixtures and producers already define.

Usage: tests/fuzz/make_corpus.py OUT [--max-size BYTES]
"""
import argparse
import collections
import datetime
import hashlib
import io
import os
import pathlib
import pickle
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_ckpts"


class Corpus:
    def __init__(self, out, max_size):
        self.out, self.max_size, self.counts = pathlib.Path(out), max_size, collections.Counter()

    def add(self, target, data, name=None):
        """One seed; named by its content hash so reruns are idempotent."""
        if not data or len(data) > self.max_size.get(target, 65536):
            return
        folder = self.out / target
        folder.mkdir(parents=True, exist_ok=True)
        stem = name or hashlib.sha1(data).hexdigest()[:16]
        (folder / stem).write_bytes(data)
        self.counts[target] += 1

    def add_file(self, target, path):
        self.add(target, pathlib.Path(path).read_bytes(), f"{pathlib.Path(path).parent.name}_{pathlib.Path(path).name}")


def fixture_files(pattern):
    return sorted(p for p in SAMPLES.glob(pattern) if p.is_file() and not p.name.endswith(".json"))


def data_pkl_records(path):
    try:
        with zipfile.ZipFile(path) as z:
            return [z.read(n) for n in z.namelist() if n.endswith("data.pkl")]
    except (zipfile.BadZipFile, OSError):
        return []


def stdlib_pickles():
    """The standard-library values checkpoints carry, in every protocol (pickle itself writes them)."""
    values = {
        "containers": {"list": [1, 2.5, "x"], "tuple": (1, None), "set": {1, 2}, "frozenset": frozenset({"a"}),
                       "bytes": b"\x00\xff", "nested": {"a": [{"b": (1,)}]}, "big": 2**70, "neg": -2**40},
        "ordered": collections.OrderedDict([("b", 2), ("a", 1)]),
        "defaultdict": collections.defaultdict(list, {"k": [1]}),
        "counter": collections.Counter("abracadabra"),
        "datetime": datetime.datetime(2024, 5, 1, 12, 30, 5, 7, tzinfo=datetime.timezone.utc),
        "date": datetime.date(2023, 1, 31), "time": datetime.time(23, 59), "delta": datetime.timedelta(days=2, seconds=5),
        "path": pathlib.PurePosixPath("runs/exp1/ckpt.pt"),
    }
    out = []
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        out.append(pickle.dumps(values, protocol=protocol))
        for v in values.values():
            out.append(pickle.dumps(v, protocol=protocol))
    return out


def small_zips():
    """Archives from Python's zipfile: stored, deflated, ZIP64 records, a comment, nested folders."""
    out = []
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        for force_zip64 in (False, True):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=compression) as z:
                with z.open("archive/data.pkl", "w", force_zip64=force_zip64) as f:
                    f.write(pickle.dumps({"w": 1}, protocol=2))
                with z.open("archive/data/0", "w", force_zip64=force_zip64) as f:
                    f.write(bytes(range(64)))
                z.writestr("archive/byteorder", "little")
                z.writestr("archive/version", "3\n")
                if force_zip64:
                    z.comment = b"written by zipfile"
            out.append(buf.getvalue())
    return out


def torch_files():
    """torch.save of small objects: zip and legacy formats, protocols 2 and 4, views and parameters."""
    try:
        import torch
    except ImportError:
        return []
    torch.manual_seed(0)
    base = torch.arange(12, dtype=torch.float32)
    objects = [
        {"w": base.reshape(3, 4), "b": torch.zeros(2, dtype=torch.bfloat16)},
        {"model_state_dict": {"layers.0.weight": base.reshape(4, 3).t(), "view": base[2:5]},
         "optimizer_state_dict": {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.ones(3)}},
                                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0]}]},
         "step": 7, "loss": 2.5},
        {"p": torch.nn.Parameter(torch.ones(2, 2)), "i8": torch.tensor([-1, 0, 1], dtype=torch.int8),
         "expand": torch.ones(1).expand(4), "half": torch.ones(3, dtype=torch.float16), "flag": torch.tensor([True])},
    ]
    out = []
    for obj in objects:
        for kwargs in ({}, {"pickle_protocol": 4}, {"_use_new_zipfile_serialization": False}):
            buf = io.BytesIO()
            torch.save(obj, buf, **kwargs)
            out.append(buf.getvalue())
    return out


def safetensors_files():
    try:
        import numpy as np
        from safetensors.numpy import save
    except ImportError:
        return []
    return [save({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(2, dtype=np.float16)},
                 metadata={"format": "pt"}),
            save({"x": np.array([1, -1, 0], dtype=np.int8), "e": np.zeros((0, 3), dtype=np.float64)})]


def gguf_files(tmp):
    try:
        import numpy as np
        import gguf
    except ImportError:
        return []
    out = []
    for i, arrays in enumerate(({"w": np.arange(32, dtype=np.float32).reshape(2, 16)},
                                {"h": np.ones(8, dtype=np.float16), "i": np.arange(4, dtype=np.int32)})):
        path = os.path.join(tmp, f"seed{i}.gguf")
        w = gguf.GGUFWriter(path, "bitnet")
        w.add_uint32("general.alignment", 32)
        w.add_array("tokenizer.ggml.tokens", ["a", "b"])
        w.add_float32("test.scale", 0.5)
        for name, a in arrays.items():
            w.add_tensor(name, a)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out.append(pathlib.Path(path).read_bytes())
    return out


def token_files():
    out = [(SAMPLES / "run" / "train.bin").read_bytes()[:2048]] if (SAMPLES / "run" / "train.bin").exists() else []
    try:
        import numpy as np
    except ImportError:
        return out
    arrays = [np.arange(10, dtype=np.uint16), np.arange(6, dtype=np.int32).reshape(2, 3), np.arange(5, dtype=np.uint8),
              np.arange(4, dtype=np.int64), np.asfortranarray(np.arange(6, dtype=np.uint16).reshape(2, 3))]
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, a)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(3, dtype=np.uint32), version=(2, 0))
    out.append(buf.getvalue())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    args = ap.parse_args()
    max_size = {"pickle": 16384, "tokens": 8192, "tokenizer": 1024}
    c = Corpus(args.out, max_size)

    pt_fixtures = fixture_files("*.pt") + fixture_files("hostile/*") + fixture_files("packed/corrupt/*.pt") + \
        fixture_files("packed/*.pt")
    for p in fixture_files("pickles/*.pkl"):
        c.add_file("pickle", p)
    for p in pt_fixtures + fixture_files("models/*.pt") + fixture_files("run/*.pt") + fixture_files("finetune/*.pt"):
        for record in data_pkl_records(p):
            c.add("pickle", record)
    for data in stdlib_pickles():
        c.add("pickle", data)

    for data in small_zips():
        c.add("zip", data)
    for p in pt_fixtures:
        c.add_file("pt", p)
        if zipfile.is_zipfile(p):
            c.add_file("zip", p)
    for data in torch_files():
        c.add("pt", data)
        if data[:2] == b"PK":
            c.add("zip", data)

    for p in fixture_files("*.safetensors") + fixture_files("packed/*.safetensors") + \
            fixture_files("packed/corrupt/*.safetensors"):
        c.add_file("safetensors", p)
    for data in safetensors_files():
        c.add("safetensors", data)

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        generated_gguf = gguf_files(tmp)
    for p in fixture_files("packed/*.gguf") + fixture_files("packed/corrupt/*.gguf"):
        c.add_file("gguf", p)
    for data in generated_gguf:
        c.add("gguf", data)

    for p in fixture_files("packed/*.bit2") + fixture_files("packed/corrupt/*.bit2"):
        c.add_file("bit2", p)

    for p in fixture_files("packed/*") + fixture_files("packed/corrupt/*"):
        c.add_file("packed", p)

    for data in token_files():
        c.add("tokens", data)
    for text in ("1 2 3", "1,2,3\n", "0", "9223372036854775807 18446744073709551616", "héllo wörld", "-1", "1e3"):
        c.add("tokenizer", text.encode())

    print("seed corpora: " + ", ".join(f"{t} {n}" for t, n in sorted(c.counts.items())), file=sys.stderr)


if __name__ == "__main__":
    main()
