#!/usr/bin/env python3
"""Writes the pickle fixtures for tests/io/test_pickle.cpp into sample_ckpts/pickles/.

Uses the standard library only (no torch, no numpy): torch- and numpy-shaped pickles come from
small stand-in modules registered in sys.modules, so pickle writes the same GLOBALs, persistent
ids and REDUCE/BUILD sequences that torch.save would. Hostile and malformed pickles are written
as raw opcode streams where the Python pickler cannot produce them.

expected.json describes what each pickle must decode to. Every expectation is computed here from
the Python objects (and the pickle's own opcodes, for offsets), never typed by hand, using this
encoding of the decoded tree:
    None/bool/str       -> JSON null/bool/string
    int                 -> JSON number when it fits int64, else {"bigint": "<decimal>"}
    float               -> {"float": number | "nan" | "inf" | "-inf"}
    bytes, bytearray    -> {"bytes": "<hex>"}
    tuple               -> {"tuple": [...]}
    list                -> [...]
    dict                -> {"dict": [[key, value], ...]} (+ "state" for an OrderedDict with attributes)
    set, frozenset      -> {"set": [...]} sorted by the canonical JSON text of each item
    class or function   -> {"global": "module.name"}
    other instances     -> {"object": "module.name", "args": [...], "state": ...}
    torch tensor        -> {"tensor": {dtype, shape, stride, storage_offset, requires_grad,
                                       is_parameter, storage: {key, location, numel}}}
    a container met again inside itself -> {"cycle": <how many levels up>}
"""
import argparse
import collections
import copyreg
import dataclasses
import json
import math
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "pickles")
PWNED = "/tmp/bitfsck_pwned"
SHELL = f"echo pwned > {PWNED}"

# Python 3's unpickler maps these Python 2 module names (fix_imports); bitfsck does the same, so
# expectations name the module torch.load would actually import.
MODULE_RENAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


# ---------------------------------------------------------------------------------------------
# Stand-ins for torch and numpy: just enough for pickle to write what the real libraries write.

def fake_module(name):
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


def place(mod, name, obj):
    """Makes obj importable as mod.name, which pickle checks before writing a GLOBAL."""
    obj.__module__ = mod.__name__
    obj.__qualname__ = name
    obj.__name__ = name
    setattr(mod, name, obj)
    return obj


torch = fake_module("torch")
torch_utils = fake_module("torch._utils")
torch_tensor_mod = fake_module("torch._tensor")
fake_module("torch.nn")
torch_nn_parameter = fake_module("torch.nn.parameter")
mylib = fake_module("mylib")


def _unused(*args):
    raise RuntimeError("stand-in, never called")


for fn in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"):
    place(torch_utils, fn, types.FunctionType(_unused.__code__, {}, fn))
place(torch_tensor_mod, "_rebuild_from_type_v2", types.FunctionType(_unused.__code__, {}, "rft"))
for cls in ("device", "Size", "Tensor"):
    place(torch, cls, type(cls, (), {}))
place(torch_nn_parameter, "Parameter", type("Parameter", (), {}))
place(mylib, "QuantTensor", type("QuantTensor", (), {}))

STORAGE_DTYPES = {"FloatStorage": "float32", "BFloat16Storage": "bfloat16", "HalfStorage": "float16",
                  "LongStorage": "int64", "CharStorage": "int8", "ByteStorage": "uint8"}
for cls in STORAGE_DTYPES:
    place(torch, cls, type(cls, (), {}))


class TorchDtype:
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return self.name  # pickled as the global torch.<name>


TorchDtype.__module__ = "torch"
torch.float32 = TorchDtype("float32")
torch.bfloat16 = TorchDtype("bfloat16")


class Storage:
    def __init__(self, cls, key, location, numel, view=None):
        self.cls, self.key, self.location, self.numel, self.view = cls, key, location, numel, view


class Tensor:
    def __init__(self, storage, offset, shape, requires_grad=False, parameter=False, subclass=None):
        self.storage, self.offset, self.shape = storage, offset, tuple(shape)
        stride, acc = [], 1
        for n in reversed(self.shape):
            stride.append(acc)
            acc *= n
        self.stride = tuple(reversed(stride))
        self.requires_grad, self.parameter, self.subclass = requires_grad, parameter, subclass

    def rebuild_args(self):
        return (self.storage, self.offset, self.shape, self.stride, self.requires_grad,
                collections.OrderedDict())

    def __reduce__(self):
        if self.subclass is not None:
            return (torch_tensor_mod._rebuild_from_type_v2,
                    (torch_utils._rebuild_tensor_v2, self.subclass, self.rebuild_args(), {}))
        if self.parameter:
            plain = Tensor(self.storage, self.offset, self.shape, False)
            return (torch_utils._rebuild_parameter, (plain, self.requires_grad, collections.OrderedDict()))
        return (torch_utils._rebuild_tensor_v2, self.rebuild_args())


class LegacyTensor(Tensor):
    def __reduce__(self):
        return (torch_utils._rebuild_tensor, self.rebuild_args()[:4])


class Device:
    def __init__(self, kind, index=None):
        self.kind, self.index = kind, index

    def __reduce__(self):
        return (torch.device, (self.kind,) if self.index is None else (self.kind, self.index))


class Size(tuple):
    def __reduce__(self):
        return (torch.Size, (list(self),))


class TorchPickler(pickle.Pickler):
    """What torch.save's persistent_id writes: zip format 5-tuples, legacy format 6-tuples."""
    legacy = False

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = ("storage", obj.cls, obj.key, obj.location, obj.numel)
            if self.legacy:
                pid += (obj.view,)
            return pid
        return None


def torch_dumps(obj, protocol, legacy=False):
    import io
    buf = io.BytesIO()
    p = TorchPickler(buf, protocol=protocol)
    p.legacy = legacy
    p.dump(obj)
    return buf.getvalue()


numpy = fake_module("numpy")
fake_module("numpy.core")
numpy_multiarray = fake_module("numpy.core.multiarray")
place(numpy_multiarray, "scalar", types.FunctionType(_unused.__code__, {}, "scalar"))


class NumpyDtype:
    def __init__(self, code, order):
        self.code, self.order = code, order

    def __reduce__(self):
        return (NumpyDtype, (self.code, False, True), (3, self.order, None, None, None, -1, -1, 0))


place(numpy, "dtype", NumpyDtype)

STRUCT_CODES = {"f8": "d", "f4": "f", "f2": "e", "i8": "q", "i4": "i", "i2": "h", "i1": "b",
                "u8": "Q", "u4": "I", "u2": "H", "u1": "B", "b1": "?"}


class NumpyScalar:
    def __init__(self, code, order, value):
        self.dtype = NumpyDtype(code, order)
        fmt = ("<" if order in "<|=" else ">") + STRUCT_CODES[code]
        self.raw = struct.pack(fmt, value)
        self.value = struct.unpack(fmt, self.raw)[0]  # what reading the bytes back gives

    def __reduce__(self):
        return (numpy_multiarray.scalar, (self.dtype, self.raw))


class Settings(dict):
    """A dict subclass: protocols 0-1 pass its items to copyreg._reconstructor, 2+ SETITEMS them."""


class History(list):
    """A list subclass with an attribute: NEWOBJ, APPENDS and BUILD on an opaque object."""


@dataclasses.dataclass
class TrainConfig:
    lr: float
    layers: list
    name: str = "bitnet"


# ---------------------------------------------------------------------------------------------
# The canonical JSON encoding of a decoded tree (see the module docstring).

def enc(obj, protocol, ancestors=()):
    if isinstance(obj, (list, dict, set, frozenset, tuple)) or hasattr(obj, "__dict__"):
        for up, a in enumerate(reversed(ancestors), start=1):
            if a is obj:
                return {"cycle": up}
    inner = ancestors + (obj,)

    def e(x):
        return enc(x, protocol, inner)

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj if -2**63 <= obj < 2**63 else {"bigint": str(obj)}
    if isinstance(obj, float):
        if math.isnan(obj):
            return {"float": "nan"}
        if math.isinf(obj):
            return {"float": "inf" if obj > 0 else "-inf"}
        return {"float": obj}
    if isinstance(obj, (bytes, bytearray)):
        return {"bytes": bytes(obj).hex()}
    if isinstance(obj, Size):
        return {"tuple": [e(x) for x in obj]}
    if type(obj) is tuple:
        return {"tuple": [e(x) for x in obj]}
    if type(obj) is list:
        return [e(x) for x in obj]
    if type(obj) in (dict, collections.OrderedDict):
        out = {"dict": [[e(k), e(v)] for k, v in obj.items()]}
        if isinstance(obj, collections.OrderedDict) and vars(obj):
            out["state"] = e(dict(vars(obj)))
        return out
    if type(obj) in (set, frozenset):
        return {"set": sorted((e(x) for x in obj), key=lambda j: json.dumps(j, sort_keys=True))}
    if isinstance(obj, slice):
        return {"tuple": [e(obj.start), e(obj.stop), e(obj.step)]}
    if isinstance(obj, Tensor):
        s = obj.storage
        view_offset, numel, key = 0, s.numel, s.key
        if s.view is not None:
            view_offset, numel = s.view[1], s.view[2]
        return {"tensor": {"dtype": STORAGE_DTYPES[s.cls.__name__], "shape": list(obj.shape),
                           "stride": list(obj.stride), "storage_offset": obj.offset + view_offset,
                           "requires_grad": obj.requires_grad,
                           "is_parameter": obj.parameter or obj.subclass is torch_nn_parameter.Parameter,
                           "storage": {"key": key, "location": s.location, "numel": numel}}}
    if isinstance(obj, Device):
        return obj.kind if obj.index is None else f"{obj.kind}:{obj.index}"
    if isinstance(obj, TorchDtype):
        return {"global": f"torch.{obj.name}"}
    if isinstance(obj, NumpyScalar):
        return e(obj.value)
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
        return {"global": f"{MODULE_RENAMES.get(obj.__module__, obj.__module__)}.{obj.__qualname__}"}
    # Any other instance: what its __reduce_ex__ gives pickle (copyreg.__newobj__ or _reconstructor).
    reducer = copyreg.dispatch_table.get(type(obj))  # pickle consults this first (complex)
    rv = reducer(obj) if reducer else obj.__reduce_ex__(protocol)
    func, args = rv[0], rv[1]
    state = rv[2] if len(rv) > 2 else None
    if func is copyreg.__newobj__:
        cls, args = args[0], args[1:]
    elif func is copyreg._reconstructor:
        # (cls, base, base_state): base_state is the contents of dict/list subclasses.
        cls, args = args[0], (() if args[2] is None else (args[2],))
    else:
        cls = func
    out = {"object": f"{MODULE_RENAMES.get(cls.__module__, cls.__module__)}.{cls.__qualname__}",
           "args": [e(a) for a in args]}
    if state is not None:
        out["state"] = e(state)
    if len(rv) > 3 and rv[3] is not None:  # list items pickle APPENDs to the object
        out["items"] = [e(x) for x in rv[3]]
    if len(rv) > 4 and rv[4] is not None:  # dict items pickle SETITEMs on the object
        out["entries"] = [[e(k), e(v)] for k, v in rv[4]]
    return out


def shared_paths(obj):
    """Pairs of paths (list/tuple index, or [dict entry, 0 key | 1 value]) that reach the same list
    or dict: pickle's memo must keep those one object."""
    first, pairs, stack = {}, [], [(obj, [], ())]
    while stack:
        x, path, anc = stack.pop()
        if any(a is x for a in anc):
            continue
        if isinstance(x, (list, dict)):
            if id(x) in first:
                pairs.append([first[id(x)], path])
                continue
            first[id(x)] = path
        if type(x) in (list, tuple):
            for i, c in enumerate(x):
                stack.append((c, path + [i], anc + (x,)))
        elif type(x) is dict:
            for i, (k, v) in enumerate(x.items()):
                stack.append((k, path + [[i, 0]], anc + (x,)))
                stack.append((v, path + [[i, 1]], anc + (x,)))
    return pairs


def global_ops(data):
    """(module.name, offset) of every GLOBAL, INST and STACK_GLOBAL opcode, following the memo
    for STACK_GLOBAL's two strings."""
    found, strings, memo = [], [], {}
    for op, arg, pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, name = arg.split(" ", 1)
            found.append((f"{MODULE_RENAMES.get(module, module)}.{name}", pos))
            strings.append(None)
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            strings.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = strings[-1]
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = strings[-1]
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            strings.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            module, name = strings[-2], strings[-1]
            found.append((f"{MODULE_RENAMES.get(module, module)}.{name}", pos))
            strings.append(None)
        else:
            strings.append(None)
    return found


# ---------------------------------------------------------------------------------------------

samples = []


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def value_sample(name, obj, protocol, data=None, findings=None):
    """A pickle that must decode to enc(obj). findings: {"module.name": (severity, called)} for
    the globals that must be reported; every other global in the pickle must not be."""
    data = pickle.dumps(obj, protocol=protocol) if data is None else data
    write(name, data)
    sample = {"file": name, "kind": "value", "protocol": protocol, "value": enc(obj, protocol),
              "shared": shared_paths(obj), "findings": expected_findings(data, findings or {})}
    samples.append(sample)


def expected_findings(data, wanted):
    out = []
    for qualified, offset in global_ops(data):
        if qualified in wanted:
            severity, called = wanted[qualified]
            out.append({"global": qualified, "offset": offset, "severity": severity, "called": called})
    return out


def hostile_sample(name, data, wanted):
    write(name, data)
    samples.append({"file": name, "kind": "hostile", "findings": expected_findings(data, wanted)})


def malformed_sample(name, data, error):
    """A pickle that must be rejected with a FormatError whose message contains `error`."""
    write(name, data)
    samples.append({"file": name, "kind": "malformed", "error": error})


def nested_data():
    return {
        "none": None, "true": True, "false": False,
        "ints": [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31 - 1, 2**31, -2**31 - 1,
                 2**40, -2**40, 2**63 - 1, -2**63],
        "bigints": [2**63, -2**63 - 1, 2**64, 2**70, -2**70, 2**200 + 12345, -(3**300)],
        "floats": [0.0, -0.0, 1.5, -2.25e-300, 1e300, 0.1, 5e-324, float("nan"), float("inf"), float("-inf")],
        "strs": ["", "ascii", "h\u00e9llo w\u00f6rld", "\u65e5\u672c\u8a9e", "emoji \U0001F600",
                 "back\\slash\nnew\rline\x1a", "nul\x00", "u\\u0041 not an escape", "'quotes\""],
        "bytes": [b"", b"\x00\x01\xff", bytes(range(256)), bytearray(b"ba\x80")],
        "tuples": [(), (1,), (1, "two"), (1, 2, 3), (1, 2, 3, 4), tuple(range(10))],
        "lists": [[], [[]], [1, [2, [3, []]]], list(range(1500))],
        "dict": {1: "int key", (1, 2): "tuple key", 2.5: None, "nested": {"a": {"b": {}}}},
        "set": {1, 2, 3}, "frozenset": frozenset({"a", "b"}), "empty_set": set(), "empty_frozenset": frozenset(),
        "ordered": collections.OrderedDict([("x", 1), ("y", [2])]),
        "namespace": argparse.Namespace(lr=0.001, name="run-7", betas=(0.9, 0.95)),
        "config": TrainConfig(lr=3e-4, layers=[1, 2]),
        "complex": 1 + 2j, "slice": slice(1, 10, 2),
    }


def shared_data():
    shared = [1, 2]
    inner = {"k": shared}
    selfref = ["head"]
    selfref.append(selfref)
    looped = []
    tup = (looped, 1)
    looped.append(tup)  # a tuple met again while its own items are being pickled: POP/POP_MARK + GET
    return {"a": shared, "b": shared, "inner": inner, "inner_again": inner, "self": selfref,
            "tuple_cycle": tup, "pair": (shared, shared)}


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    sys.setrecursionlimit(10000)

    for p in range(6):
        value_sample(f"nested_p{p}.pkl", nested_data(), p,
                     findings={"__main__.TrainConfig": ("warning", True)})
        value_sample(f"shared_p{p}.pkl", shared_data(), p)
    deep = []
    for _ in range(500):
        deep = [deep]
    value_sample("deep_500_p2.pkl", deep, 2)
    for p in (0, 2):
        history = History([1.5, 2.5])
        history.note = "loss"
        value_sample(f"subclasses_p{p}.pkl", {"settings": Settings(a=1, b=[2]), "history": history}, p,
                     findings={"__main__.Settings": ("warning", True), "__main__.History": ("warning", True)})
    value_sample("ordered_dict_p0.pkl", collections.OrderedDict([("b", 2), ("a", 1)]), 0)
    value_sample("namespace_p4.pkl", argparse.Namespace(epochs=3, lr=0.5), 4)
    value_sample("dataclass_p1.pkl", TrainConfig(lr=0.25, layers=["q", "k"]), 1,
                 findings={"__main__.TrainConfig": ("warning", True)})

    # torch-shaped pickles.
    weight = Storage(torch.FloatStorage, "0", "cuda:0", 12)
    bf16 = Storage(torch.BFloat16Storage, "1", "cpu", 8)
    state = collections.OrderedDict()
    state["layers.0.weight"] = Tensor(weight, 0, (3, 4))
    state["layers.0.bias"] = Tensor(bf16, 2, (6,))
    state["layers.1.weight"] = Tensor(weight, 0, (2, 2))  # shares storage "0"
    state._metadata = collections.OrderedDict([("", {"version": 1})])
    ckpt = {"model": state,
            "param": Tensor(bf16, 0, (2, 4), requires_grad=True, parameter=True),
            "as_parameter": Tensor(weight, 4, (8,), requires_grad=True, subclass=torch_nn_parameter.Parameter),
            "device": Device("cuda", 0), "cpu": Device("cpu"), "size": Size([2, 3]),
            "dtype": torch.float32, "step": 2000, "args": argparse.Namespace(lr=1e-3)}
    for p in (2, 4):
        value_sample(f"torch_zip_p{p}.pkl", ckpt, p, data=torch_dumps(ckpt, p))
    sub = {"w": Tensor(weight, 0, (12,), subclass=mylib.QuantTensor)}
    value_sample("torch_subclass_p2.pkl", sub, 2, data=torch_dumps(sub, 2),
                 findings={"mylib.QuantTensor": ("warning", True)})
    root = Storage(torch.LongStorage, "140233", "cpu", 100, view=("140299", 10, 20))
    legacy = {"w": LegacyTensor(root, 3, (4, 5)),
              "v": Tensor(Storage(torch.HalfStorage, "140300", "cpu", 6), 0, (6,))}
    value_sample("torch_legacy_p2.pkl", legacy, 2, data=torch_dumps(legacy, 2, legacy=True))
    scalars = {"f8": NumpyScalar("f8", "<", 0.125), "f8be": NumpyScalar("f8", ">", -3.5),
               "f4": NumpyScalar("f4", "<", 0.1), "f2": NumpyScalar("f2", "<", 1.5),
               "i8": NumpyScalar("i8", "<", -42), "u8": NumpyScalar("u8", "<", 2**64 - 1),
               "u1": NumpyScalar("u1", "|", 200), "b1": NumpyScalar("b1", "|", True)}
    for p in (2, 4):
        value_sample(f"numpy_scalars_p{p}.pkl", scalars, p)

    # Hostile pickles. Real pickles of objects whose __reduce__ runs something...
    class OsSystem:
        def __reduce__(self):
            return (os.system, (SHELL,))

    class Eval:
        def __reduce__(self):
            return (eval, (f"__import__('os').system('{SHELL}')",))

    class Exec:
        def __reduce__(self):
            return (exec, (f"import os; os.system('{SHELL}')",))

    class Popen:
        def __reduce__(self):
            return (subprocess.Popen, (["sh", "-c", SHELL],))

    class Import:
        def __reduce__(self):
            return (__import__, ("os",))

    class GetSystem:
        def __call__(self, *args):
            raise RuntimeError("never called")

        def __reduce__(self):
            return (getattr, (Import(), "system"))

    class Chain:
        def __reduce__(self):
            return (GetSystem(), (SHELL,))

    # os.system's own __module__ is "posix" here, so pickle names it posix.system.
    for p in (0, 2, 4):
        hostile_sample(f"posix_system_p{p}.pkl", pickle.dumps(OsSystem(), protocol=p),
                       {"posix.system": ("critical", True)})
    for p in (2, 4):
        hostile_sample(f"eval_p{p}.pkl", pickle.dumps(Eval(), protocol=p), {"builtins.eval": ("critical", True)})
    hostile_sample("exec_p3.pkl", pickle.dumps(Exec(), protocol=3), {"builtins.exec": ("critical", True)})
    hostile_sample("popen_p4.pkl", pickle.dumps(Popen(), protocol=4), {"subprocess.Popen": ("critical", True)})
    hostile_sample("getattr_chain_p4.pkl", pickle.dumps(Chain(), protocol=4),
                   {"builtins.getattr": ("critical", True), "builtins.__import__": ("critical", True)})
    hostile_sample("referenced_only_p2.pkl", pickle.dumps({"f": os.system, "ok": [1]}, protocol=2),
                   {"posix.system": ("critical", False)})
    # A hostile payload hidden in an otherwise normal state dict, after the tensors.
    bad = collections.OrderedDict(ckpt["model"])
    bad["zzz"] = OsSystem()
    hostile_sample("torch_with_payload_p2.pkl", torch_dumps(bad, 2), {"posix.system": ("critical", True)})

    # ...and opcode streams pickle no longer writes: GLOBAL os.system, INST and OBJ.
    cmd = SHELL.encode()
    hostile_sample("os_system_global_p2.pkl",
                   b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(cmd)) + cmd + b"\x85R.",
                   {"os.system": ("critical", True)})
    hostile_sample("inst_p0.pkl", b"(S'" + cmd + b"'\nios\nsystem\np0\n.", {"os.system": ("critical", True)})
    hostile_sample("obj_p1.pkl", b"(cos\nsystem\nU" + bytes([len(cmd)]) + cmd + b"o.",
                   {"os.system": ("critical", True)})
    hostile_sample("reconstructor_p0.pkl",
                   b"ccopy_reg\n_reconstructor\n(csubprocess\ncall\nc__builtin__\nobject\nNtR.",
                   {"subprocess.call": ("critical", True)})

    # Malformed pickles.
    nested = pickle.dumps(nested_data(), protocol=2)
    malformed_sample("truncated_p2.pkl", nested[: len(nested) // 2], "truncated")
    malformed_sample("no_stop_p2.pkl", b"\x80\x02]K\x01a", "STOP")
    malformed_sample("empty.pkl", b"", "STOP")
    malformed_sample("memo_unknown_p2.pkl", b"\x80\x02]q\x00h\x05.", "memo")
    malformed_sample("long4_huge_p2.pkl", b"\x80\x02\x8b\xff\xff\xff\x7f\x01\x02.", "LONG4")
    malformed_sample("binunicode_past_end_p2.pkl", b"\x80\x02X\x00\x01\x00\x00abc.", "BINUNICODE")
    malformed_sample("binstring_negative_p1.pkl", b"T\xff\xff\xff\xffab.", "negative")
    malformed_sample("underflow_append_p2.pkl", b"\x80\x02a.", "stack underflow")
    malformed_sample("underflow_mark_p2.pkl", b"\x80\x02(K\x01K\x02e.", "stack underflow")
    malformed_sample("bad_protocol.pkl", b"\x80\x09N.", "protocol")
    malformed_sample("unknown_opcode.pkl", b"\x80\x02\xff.", "unknown opcode")
    malformed_sample("ext1_p2.pkl", b"\x80\x02\x82\x01.", "extension registry")
    malformed_sample("next_buffer_p5.pkl", b"\x80\x05\x97.", "out-of-band")
    malformed_sample("stack_global_int_p4.pkl", b"\x80\x04K\x01K\x02\x93.", "STACK_GLOBAL")
    malformed_sample("setitems_odd_p2.pkl", b"\x80\x02}(K\x01u.", "odd")
    malformed_sample("reduce_non_callable_p2.pkl", b"\x80\x02K\x01)R.", "not callable")
    malformed_sample("mark_in_result_p2.pkl", b"\x80\x02(.", "MARK")
    malformed_sample("int_garbage_p0.pkl", b"I12x\n.", "INT")
    # 100000 levels of nesting, two ways: EMPTY_LIST + APPEND chains, and MARK ... LIST.
    malformed_sample("deep_append_p2.pkl", b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b".",
                     "nesting deeper than 1000")
    malformed_sample("deep_mark_p1.pkl", b"(" * 100000 + b"l" * 100000 + b".", "nesting deeper than 1000")

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        # One line per sample: diffs stay readable without indenting the 500-deep sample 500 times.
        f.write('{"pwned_marker": ' + json.dumps(PWNED) + ', "samples": [\n')
        f.write(",\n".join(json.dumps(s, sort_keys=True) for s in samples))
        f.write("\n]}\n")
    print(f"wrote {len(samples)} pickles and expected.json to {OUT}")


if __name__ == "__main__":
    # Sets of str pickle in hash order: a fixed seed makes regenerated fixtures byte-identical.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})
    main()
