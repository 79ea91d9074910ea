#!/usr/bin/python3
"""Writes the packed ternary fixtures bitfsck's tests read (sample_ckpts/packed/), each packed by
code written here independently of bitfsck: numpy bit arithmetic following each layout's
definition, torch.save for .pt files, Python struct for safetensors, GGUF and .bit2 bytes.
Next to every file, <file>.expected.json holds the codes, scales and ternary fractions.

Run from anywhere:  /usr/bin/python3 sample_ckpts/make_packed.py
Deterministic (fixed seed). Needs python3-torch (1.13) and python3-numpy.

Layouts (docs/formats.md):
  i2s (Distillix):  byte = c0<<6 | c1<<4 | c2<<2 | c3, code = w+1, padding code 1;
                    <p>.weight uint8, <p>_shape int64, <p>_scale float32 scalar.
  Hugging Face:     packed[r, j] bits 2i..2i+1 = code of row i*R + r, R = out/4; weight_scale.
  ggml TQ2_0/TQ1_0: quantize_row_tq2_0_ref / quantize_row_tq1_0_ref of ggml-quants.c.
  bitnet.cpp I2_S:  quantize_i2_s of ggml-bitnet-mad.cpp (128-element blocks, trailing float).
  .bit2:            docs/bit2-format.md.
"""
import json
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "packed")
CORRUPT = os.path.join(OUT, "corrupt")

rng = np.random.default_rng(1581)

# Latent (float) weights: three BitLinear matrices and a norm that stays float.
LATENT = {
    "model.layers.0.mlp.up_proj.weight": (rng.standard_normal((16, 256)) * 0.02).astype(np.float32),
    "model.layers.0.self_attn.o_proj.weight": rng.laplace(0, 0.02, (8, 512)).astype(np.float32),
    "model.layers.0.mlp.down_proj.weight": (rng.standard_normal((12, 256)) * 0.03).astype(np.float32),
}
NORM_NAME = "model.norm.weight"
NORM = (1 + rng.standard_normal(256) * 0.1).astype(np.float32)


def absmean(w):
    """BitNet absmean: gamma = max(mean|W|, 1e-5) (mean in float64, kept as float32);
    codes = clamp(round_half_even(W / gamma), -1, 1)."""
    gamma = np.float32(max(np.abs(w.astype(np.float64)).mean(), 1e-5))
    codes = np.clip(np.rint(w.astype(np.float64) / np.float64(gamma)), -1, 1).astype(np.int8)
    return codes, gamma


QUANT = {name: absmean(w) for name, w in LATENT.items()}


def code_string(codes):
    return "".join("-0+"[c + 1] for c in codes.reshape(-1))


def fractions(codes):
    c = codes.reshape(-1)
    return [float((c == -1).mean()), float((c == 0).mean()), float((c == 1).mean())]


def expect(codes, scale, encoding, extra=None):
    d = {"shape": list(codes.shape), "encoding": encoding, "codes": code_string(codes),
         "fractions": fractions(codes)}
    if np.ndim(scale) == 0:
        d["scale"] = float(scale)
    else:
        d["scales"] = [float(s) for s in scale]
    d.update(extra or {})
    return d


def write_json(path, obj):
    with open(path + ".expected.json", "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# Packers, each from its layout's definition.

def pack_i2s(codes):
    flat = (codes.reshape(-1).astype(np.int16) + 1).astype(np.uint8)
    pad = (-len(flat)) % 4
    flat = np.concatenate([flat, np.ones(pad, np.uint8)])
    q = flat.reshape(-1, 4)
    return (q[:, 0] << 6 | q[:, 1] << 4 | q[:, 2] << 2 | q[:, 3]).astype(np.uint8)


def pack_hf(codes):
    out, inn = codes.shape
    R = out // 4
    u = (codes.astype(np.int16) + 1).astype(np.uint8)
    packed = np.zeros((R, inn), np.uint8)
    for i in range(4):
        packed |= u[i * R:(i + 1) * R] << (2 * i)
    return packed


def fp16_bytes(x):
    return np.float16(x).tobytes()


def quantize_tq2_0(x):
    """ggml quantize_row_tq2_0_ref on float32 values x (length a multiple of 256)."""
    out = bytearray()
    for blk in x.reshape(-1, 256):
        d = np.float32(np.abs(blk).max())
        inv = np.float32(1) / d if d else np.float32(0)
        qs = np.zeros(64, np.uint8)
        for j in range(0, 64, 32):
            for m in range(32):
                q = 0
                for n in range(4):
                    xi = int(np.round(np.float32(blk[j * 4 + m + n * 32] * inv))) + 1  # ternary: x·id is ±1 or 0
                    q += (xi & 3) << (2 * n)
                qs[j + m] = q
        out += qs.tobytes() + fp16_bytes(d)
    return bytes(out)


def quantize_tq1_0(x):
    """ggml quantize_row_tq1_0_ref."""
    out = bytearray()
    for blk in x.reshape(-1, 256):
        d = np.float32(np.abs(blk).max())
        inv = np.float32(1) / d if d else np.float32(0)
        xi = [int(np.round(np.float32(v * inv))) + 1 for v in blk]
        qs = []
        pos = 0
        for width in (32, 16):  # 32 bytes of 5 trits, then 16 bytes of 5 trits
            for m in range(width):
                q = 0
                for n in range(5):
                    q = q * 3 + xi[pos + m + n * width]
                qs.append((q * 256 + 242) // 243)
            pos += 5 * width
        qh = []
        for j in range(4):
            q = 0
            for m in range(4):
                q = q * 3 + xi[pos + j + m * 4]
            q *= 3
            qh.append((q * 256 + 242) // 243)
        out += bytes(qs) + bytes(qh) + fp16_bytes(d)
    return bytes(out)


def quantize_i2_s(x):
    """bitnet.cpp quantize_i2_s (x86, QK_I2_S = 128): codes by sign, scale = max|x|."""
    n = x.size
    scale = np.float32(np.abs(x.astype(np.float64)).max())
    q8 = np.where(np.abs(x) < 1e-6, 1, np.where(x > 0, 2, 0)).astype(np.uint8).reshape(-1)
    dst = np.zeros(n // 4, np.uint8)
    for i in range(n // 128):
        for j in range(128):
            dst[i * 32 + j % 32] |= q8[i * 128 + j] << (6 - 2 * (j // 32))
    return dst.tobytes() + scale.tobytes() + bytes(28)


# ----------------------------------------------------------------------------------------------
# Containers.

def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, bytes). Follows huggingface/safetensors."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


GG = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
      "u64": 10, "i64": 11, "f64": 12}
FMT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f", "bool": "<B",
       "u64": "<Q", "i64": "<q", "f64": "<d"}


def gguf_value(kind, v):
    """A value's bytes; "arr:<kind>" is an array (element type, count, elements), nestable."""
    if kind == "str":
        return gguf_string(v)
    if kind.startswith("arr:"):
        inner = kind[4:]
        etype = GG["arr"] if inner.startswith("arr") else GG[inner]
        return struct.pack("<IQ", etype, len(v)) + b"".join(gguf_value(inner, e) for e in v)
    return struct.pack(FMT[kind], v)


def write_gguf(path, kvs, tensors, alignment=32, version=3, truncate=None):
    """kvs: list of (key, kind, value); tensors: (name, shape in PyTorch order, ggml type, bytes)."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, kind, v in kvs:
        t = GG["arr"] if kind.startswith("arr") else GG[kind]
        out += gguf_string(key) + struct.pack("<I", t) + gguf_value(kind, v)
    off = 0
    offsets = []
    for name, shape, gtype, data in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))  # innermost first
        out += struct.pack("<IQ", gtype, off)
        offsets.append(off)
        off += len(data) + (-len(data)) % alignment
    out += bytes((-len(out)) % alignment)
    for _, _, _, data in tensors:
        out += data + bytes((-len(data)) % alignment)
    if truncate:
        out = out[:truncate]
    with open(path, "wb") as f:
        f.write(out)


BIT2_MAGIC = bytes([0x89]) + b"BIT2\r\n\x1a"


def write_bit2(path, entries):
    """entries: (name, dict header fields without offsets, codes bytes or plain bytes, scale bytes or None)."""
    header, data = {"__metadata__": {"writer": "make_packed.py"}}, b""
    for name, fields, payload, scales in entries:
        h = dict(fields)
        h["data_offsets"] = [len(data), len(data) + len(payload)]
        data += payload + bytes((-len(payload)) % 8)
        if scales is not None:
            h["scale_offsets"] = [len(data), len(data) + len(scales)]
            data += scales + bytes((-len(scales)) % 8)
        header[name] = h
    j = json.dumps(header).encode()
    j += b" " * ((-(24 + len(j))) % 64)
    with open(path, "wb") as f:
        f.write(BIT2_MAGIC + struct.pack("<IIQ", 1, 0, len(j)) + j + data)


# ----------------------------------------------------------------------------------------------

def ternary_floats(name):
    codes, g = QUANT[name]
    return (codes.astype(np.float32) * g).astype(np.float32)


def prefix(name):
    return name[: -len(".weight")]


def main():
    os.makedirs(CORRUPT, exist_ok=True)
    summary = {}

    # latent.pt: the float weights every packed fixture below is quantized from.
    sd = {k: torch.from_numpy(v.copy()) for k, v in LATENT.items()}
    sd[NORM_NAME] = torch.from_numpy(NORM.copy())
    torch.save(sd, os.path.join(OUT, "latent.pt"))
    exp = {"format": "torch_zip", "tensors": {}}
    for k, (codes, g) in QUANT.items():
        w = LATENT[k].astype(np.float64)
        q = codes.astype(np.float64) * np.float64(g)
        exp["tensors"][k] = expect(codes, g, "plain", {
            "relative_l2": float(np.linalg.norm(w - q) / np.linalg.norm(w)),
            "changed": float((LATENT[k] != (codes.astype(np.float32) * g)).mean())})
    write_json(os.path.join(OUT, "latent.pt"), exp)

    # ternary.pt: the quantized values as floats (code x gamma), what an unpacked export holds.
    sd = {k: torch.from_numpy(ternary_floats(k)) for k in LATENT}
    sd[NORM_NAME] = torch.from_numpy(NORM.copy())
    torch.save(sd, os.path.join(OUT, "ternary.pt"))
    write_json(os.path.join(OUT, "ternary.pt"),
               {"format": "torch_zip", "tensors": {k: expect(c, g, "plain") for k, (c, g) in QUANT.items()}})

    # i2s.pt: Distillix triplets.
    sd = {}
    for k, (codes, g) in QUANT.items():
        p = prefix(k)
        sd[k] = torch.from_numpy(pack_i2s(codes))
        sd[p + "_shape"] = torch.tensor(list(codes.shape), dtype=torch.int64)
        sd[p + "_scale"] = torch.tensor(float(g), dtype=torch.float32)
    sd[NORM_NAME] = torch.from_numpy(NORM.copy())
    torch.save(sd, os.path.join(OUT, "i2s.pt"))
    write_json(os.path.join(OUT, "i2s.pt"),
               {"format": "torch_zip", "notes_contain": ["i2s-packed"],
                "tensors": {k: expect(c, g, "i2s") for k, (c, g) in QUANT.items()}})

    # i2s_meta.safetensors: shapes as JSON in a uint8 tensor named __metadata__.
    table = json.dumps({"shapes": {k: list(c.shape) for k, (c, g) in QUANT.items()}}).encode()
    ts = [("__metadata__", "U8", [len(table)], table)]
    for k, (codes, g) in QUANT.items():
        packed = pack_i2s(codes).tobytes()
        ts.append((k, "U8", [len(packed)], packed))
        ts.append((prefix(k) + "_scale", "F32", [], np.float32(g).tobytes()))
    ts.append((NORM_NAME, "F32", [256], NORM.tobytes()))
    write_safetensors(os.path.join(OUT, "i2s_meta.safetensors"), ts)
    write_json(os.path.join(OUT, "i2s_meta.safetensors"),
               {"format": "safetensors", "notes_contain": ["__metadata__"],
                "tensors": {k: expect(c, g, "i2s") for k, (c, g) in QUANT.items()}})

    # Hugging Face packed: weight_scale = 1/absmean (BitLinear), and a converter's absmean variant.
    for fname, reciprocal in (("hf_packed.safetensors", True), ("hf_packed_absmean.safetensors", False)):
        ts = []
        for k, (codes, g) in QUANT.items():
            packed = pack_hf(codes)
            ts.append((k, "U8", list(packed.shape), packed.tobytes()))
            stored = np.float32(np.float32(1) / g) if reciprocal else g
            ts.append((k + "_scale", "F32", [1], np.float32(stored).tobytes()))
        ts.append((NORM_NAME, "F32", [256], NORM.tobytes()))
        write_safetensors(os.path.join(OUT, fname), ts, {"format": "pt"})
        tensors = {}
        for k, (codes, g) in QUANT.items():
            eff = np.float32(np.float32(1) / np.float32(np.float32(1) / g)) if reciprocal else g
            tensors[k] = expect(codes, eff, "hf_packed")
        write_json(os.path.join(OUT, fname),
                   {"format": "safetensors", "tensors": tensors,
                    "notes_contain": ["1/absmean" if reciprocal else "holds absmean", "confidence high"]})

    # GGUF TQ2_0 (alignment 32) and TQ1_0 (alignment 64), with every metadata value type.
    kvs = [("general.architecture", "str", "bitnet-b1.58"), ("general.name", "str", "bitfsck fixture"),
           ("test.u8", "u8", 200), ("test.i8", "i8", -5), ("test.u16", "u16", 60000), ("test.i16", "i16", -300),
           ("test.u32", "u32", 4000000000), ("test.i32", "i32", -7), ("test.f32", "f32", 0.5), ("test.bool", "bool", 1),
           ("test.u64", "u64", 2 ** 40), ("test.i64", "i64", -(2 ** 40)), ("test.f64", "f64", 0.25),
           ("test.strings", "arr:str", ["a", "bc", "def"]), ("test.ints", "arr:i32", list(range(20))),
           ("test.nested", "arr:arr:u8", [[1, 2], [3]])]
    for fname, gtype, quant, align in (("tq2_0.gguf", 35, quantize_tq2_0, 32), ("tq1_0.gguf", 34, quantize_tq1_0, 64)):
        my_kvs = list(kvs) + ([("general.alignment", "u32", align)] if align != 32 else [])
        ts, tensors = [], {}
        for k, (codes, g) in QUANT.items():
            ts.append((k, list(codes.shape), gtype, quant(ternary_floats(k))))
            tensors[k] = expect(codes, np.float32(np.float16(g)), "TQ2_0" if gtype == 35 else "TQ1_0")
        ts.append((NORM_NAME, [256], 0, NORM.tobytes()))
        write_gguf(os.path.join(OUT, fname), my_kvs, ts, alignment=align)
        write_json(os.path.join(OUT, fname), {"format": "gguf", "tensors": tensors, "alignment": align,
                                              "metadata": {"test.u16": "60000", "test.i64": str(-(2 ** 40)),
                                                           "test.bool": "true", "general.architecture": "bitnet-b1.58"}})

    # bitnet.cpp I2_S (type 36) in a bitnet architecture file.
    ts, tensors = [], {}
    for k, (codes, g) in QUANT.items():
        ts.append((k, list(codes.shape), 36, quantize_i2_s(ternary_floats(k))))
        tensors[k] = expect(codes, g, "I2_S")
    ts.append((NORM_NAME, [256], 0, NORM.tobytes()))
    write_gguf(os.path.join(OUT, "i2_s.gguf"), [("general.architecture", "str", "bitnet-b1.58")], ts)
    write_json(os.path.join(OUT, "i2_s.gguf"), {"format": "gguf", "tensors": tensors, "notes_contain": ["I2_S"]})

    # .bit2: the same ternary weights, per-tensor 2-bit codes.
    entries = []
    for k, (codes, g) in QUANT.items():
        entries.append((k, {"encoding": "ternary2", "shape": list(codes.shape), "scale": "tensor"},
                        pack_i2s(codes).tobytes(), np.float32(g).tobytes()))
    entries.append((NORM_NAME, {"encoding": "plain", "dtype": "F32", "shape": [256]}, NORM.tobytes(), None))
    write_bit2(os.path.join(OUT, "model.bit2"), entries)
    write_json(os.path.join(OUT, "model.bit2"), {"format": "bit2", "tensors":
                                                 {k: expect(c, g, "bit2_ternary") for k, (c, g) in QUANT.items()}})

    # .bit2 variants: per-channel ternary, and a binary (sign plane) tensor with per-row alpha.
    w = LATENT["model.layers.0.mlp.up_proj.weight"]
    rows = [absmean(r) for r in w]
    pc_codes = np.stack([c for c, _ in rows])
    pc_scales = np.array([s for _, s in rows], np.float32)
    wb = LATENT["model.layers.0.mlp.down_proj.weight"]
    sign = np.where(wb >= 0, 1, -1).astype(np.int8)
    alpha = np.abs(wb.astype(np.float64)).mean(axis=1).astype(np.float32)
    bits = (sign.reshape(-1) > 0).astype(np.uint8)
    bits = np.concatenate([bits, np.zeros((-len(bits)) % 8, np.uint8)])
    plane = np.packbits(bits, bitorder="big").tobytes()
    write_bit2(os.path.join(OUT, "variants.bit2"), [
        ("per_channel.weight", {"encoding": "ternary2", "shape": [16, 256], "scale": "channel"},
         pack_i2s(pc_codes).tobytes(), pc_scales.tobytes()),
        ("binary.weight", {"encoding": "sign1", "shape": [12, 256], "scale": "channel"}, plane, alpha.tobytes()),
    ])
    write_json(os.path.join(OUT, "variants.bit2"), {"format": "bit2", "tensors": {
        "per_channel.weight": expect(pc_codes, pc_scales, "bit2_ternary"),
        "binary.weight": expect(sign, alpha, "bit2_sign")}})

    # ------------------------------------------------------------------------------------------
    # Corrupted and foreign files, each with the words its error must contain.
    up = "model.layers.0.mlp.up_proj.weight"
    codes, g = QUANT[up]

    def i2s_sd(packed, shape):
        return {up: torch.from_numpy(packed), prefix(up) + "_shape": torch.tensor(shape, dtype=torch.int64),
                prefix(up) + "_scale": torch.tensor(float(g))}

    bad = pack_i2s(codes).copy()
    bad[100] = (bad[100] & 0b11001111) | 0b00110000  # element 401 (second in byte 100) -> code 3
    torch.save(i2s_sd(bad, [16, 256]), os.path.join(CORRUPT, "i2s_code3.pt"))
    errors = {"i2s_code3.pt": ["code 3", "element 401", "packed byte 100"]}
    torch.save(i2s_sd(pack_i2s(codes)[:-1].copy(), [16, 256]), os.path.join(CORRUPT, "i2s_short.pt"))
    errors["i2s_short.pt"] = ["1023 packed bytes", "needs 1024"]
    torch.save(i2s_sd(pack_i2s(codes), [16, 512]), os.path.join(CORRUPT, "i2s_shape_mismatch.pt"))
    errors["i2s_shape_mismatch.pt"] = ["[16, 512]", "needs 2048"]

    hf = pack_hf(codes)
    hf[1, 7] |= 0b11 << 4  # row 2*4+1 = 9, column 7 -> element 9*256+7 = 2311
    write_safetensors(os.path.join(CORRUPT, "hf_code3.safetensors"),
                      [(up, "U8", list(hf.shape), hf.tobytes()), (up + "_scale", "F32", [1], np.float32(1 / g).tobytes())])
    errors["hf_code3.safetensors"] = ["code 3", "element 2311"]

    tq = bytearray(quantize_tq2_0(ternary_floats(up)))
    tq[66 + 5] |= 0b11 << 2  # block 1, byte 5, l = 1 -> element 256 + 32 + 5 = 293
    write_gguf(os.path.join(CORRUPT, "tq2_0_code3.gguf"), [], [(up, [16, 256], 35, bytes(tq))])
    errors["tq2_0_code3.gguf"] = ["code 3", "element 293"]

    write_gguf(os.path.join(CORRUPT, "truncated.gguf"), [], [(up, [16, 256], 35, quantize_tq2_0(ternary_floats(up)))],
               truncate=400)
    errors["truncated.gguf"] = ["run past the end of the file"]

    # Type 36 whose room fits neither I2_S (n/4+32) nor IQ4_NL_4_4 (n/32*18), no bitnet architecture.
    write_gguf(os.path.join(CORRUPT, "type36_ambiguous.gguf"), [("general.architecture", "str", "llama")],
               [(up, [16, 256], 36, bytes(1500))])
    errors["type36_ambiguous.gguf"] = []  # opens; the note says it is ambiguous

    foreign = b"XB2\x00model v7 packed by another tool\n" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with open(os.path.join(CORRUPT, "foreign.bit2"), "wb") as f:
        f.write(foreign)
    errors["foreign.bit2"] = ["not bitfsck's .bit2 format", str(len(foreign)) + " bytes", "entropy", "model v7 packed by another tool"]
    with open(os.path.join(CORRUPT, "errors.json"), "w") as f:
        json.dump(errors, f, indent=1, sort_keys=True)
        f.write("\n")

    total = sum(os.path.getsize(os.path.join(d, n)) for d in (OUT, CORRUPT) for n in os.listdir(d)
                if os.path.isfile(os.path.join(d, n)))
    print("wrote", OUT, "(%d bytes)" % total)


if __name__ == "__main__":
    main()
