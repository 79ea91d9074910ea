#!/usr/bin/env python3
"""Reads a GGUF file with llama.cpp's own reader (gguf-py's GGUFReader and dequantize) and prints
what it holds as JSON, for tests that check bitfsck's GGUF output against the producer's code.

usage: read_gguf.py FILE.gguf [NAMES.json]

NAMES.json, when given, is a JSON object whose keys are Hugging Face tensor names: the output's
"hf_to_gguf" then says which GGUF name gguf-py's tensor_mapping gives each (null when it has
none), for the architecture and block count the file declares.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader, MODEL_ARCH_NAMES, get_tensor_name_map
from gguf.quants import dequantize


def field_value(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def main(path, names_file=None):
    reader = GGUFReader(path)
    arch = field_value(reader, "general.architecture")
    out = {"architecture": arch, "metadata": {}, "tensors": {}}
    for key in reader.fields:
        if key.startswith(arch + ".") or key.startswith("general."):
            v = field_value(reader, key)
            out["metadata"][key] = v if isinstance(v, (int, float, str, bool)) else None
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        out["tensors"][t.name] = {
            "type": t.tensor_type.name,
            "shape": [int(d) for d in reversed(t.shape)],  # PyTorch order
            "neg": float((values < 0).mean()),
            "zero": float((values == 0).mean()),
            "pos": float((values > 0).mean()),
            "mean_abs": float(np.abs(values).mean()),
        }
    if names_file:
        with open(names_file) as f:
            names = json.load(f)
        names = names.get("tensors", names)
        arch_id = next(k for k, v in MODEL_ARCH_NAMES.items() if v == arch)
        blocks = field_value(reader, arch + ".block_count")
        mapping = get_tensor_name_map(arch_id, int(blocks))
        out["hf_to_gguf"] = {}
        for hf in names:
            base = hf[: -len(".weight")] if hf.endswith(".weight") else hf
            name = mapping.get_name(base)
            out["hf_to_gguf"][hf] = None if name is None else name + ".weight"
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
