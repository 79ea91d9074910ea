#!/usr/bin/env python3
"""Writes the pickle fixtures for tests/io/test_pickle.cpp into sample_ckpts/pickles/.

Uses the standard library only (no torch, no numpy): torch- and numpy-shaped pickles come from
small stand-in modules registered in sys.modules, so pickle writes the same GLOBALs, persistent
ids and REDUCE/BUILD sequences that torch.save would. Hostile and malformed pickles are written
as raw opcode streams where the Python pickler cannot produce them.

With torch importable (Debian's python3-torch), it also writes the checkpoints of the security
classes into sample_ckpts/hostile/ (see make_checkpoints): real torch.save output, with a
pickle_module that adds what a hostile or broken writer would (bytes after the pickle's STOP, a
payload in the legacy format's system-info pickle, storage element counts that disagree with the
records), and hostile/security_classes.json saying what bitfsck must report for each.

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
import datetime
import io
import pathlib
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


def python3_name(module, name):
    """module.name as Python 3's unpickler resolves a GLOBAL (its own fix_imports tables)."""
    import _compat_pickle
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


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
    if type(obj) in (dict, collections.OrderedDict, collections.defaultdict, collections.Counter):
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
            found.append((python3_name(module, name), pos))
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
            found.append((python3_name(module, name), pos))
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


def hostile_sample(name, data, wanted, misuse=False):
    """misuse: the findings are about allowed globals used where the allow-list does not accept
    them (a class as a defaultdict factory, a type pickle never calls called)."""
    write(name, data)
    sample = {"file": name, "kind": "hostile", "findings": expected_findings(data, wanted)}
    if misuse:
        sample["misuse"] = True
    samples.append(sample)


def malformed_sample(name, data, error):
    """A pickle that must be rejected with a FormatError whose message contains `error`."""
    write(name, data)
    samples.append({"file": name, "kind": "malformed", "error": error})


def stdlib_sample(name, obj, protocol):
    """A value sample of standard-library data types, with Python's str() of each dict value that
    bitfsck renders as text (dates, paths) and the factory of each defaultdict."""
    value_sample(name, obj, protocol)
    sample = samples[-1]
    sample["texts"] = {k: str(v) for k, v in obj.items()
                       if isinstance(v, (datetime.date, datetime.time, datetime.timedelta, datetime.tzinfo, pathlib.PurePath))}
    sample["factories"] = {k: (None if v.default_factory is None else
                               f"{MODULE_RENAMES.get(v.default_factory.__module__, v.default_factory.__module__)}."
                               f"{v.default_factory.__qualname__}")
                           for k, v in obj.items() if isinstance(v, collections.defaultdict)}
    sample["kinds"] = {k: type(v).__qualname__ for k, v in obj.items() if isinstance(v, (collections.defaultdict, collections.Counter))}


def stdlib_data():
    utc = datetime.timezone.utc
    return {
        "dd_list": collections.defaultdict(list, {"a": [1]}), "dd_int": collections.defaultdict(int, {"n": 3}),
        "dd_none": collections.defaultdict(None), "dd_ordered": collections.defaultdict(collections.OrderedDict),
        "counter": collections.Counter({"x": 2, "y": 1}), "empty_counter": collections.Counter(),
        "set": {1, 2}, "frozenset": frozenset({"a"}), "types": [int, float, str, bool, list, dict],
        "datetime": datetime.datetime(2024, 5, 1, 12, 30, 5, 7, tzinfo=utc),
        "naive": datetime.datetime(1999, 12, 31, 23, 59, 59),
        "east": datetime.datetime(2020, 2, 29, 1, 2, 3, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
        "date": datetime.date(2023, 1, 31), "time": datetime.time(8, 15), "time_tz": datetime.time(23, 0, 1, 5, tzinfo=utc),
        "delta": datetime.timedelta(days=2, seconds=5, microseconds=6), "neg_delta": datetime.timedelta(seconds=-1),
        "tz": datetime.timezone(datetime.timedelta(hours=-5), "EST"), "utc": utc,
        "tz_plus2": datetime.timezone(datetime.timedelta(hours=2)),
        "path": pathlib.PurePosixPath("runs/exp1/ckpt.pt"), "abs_path": pathlib.PosixPath("/data/x"),
        "win_path": pathlib.PureWindowsPath("C:/models/a.pt"), "dot": pathlib.PurePosixPath(),
    }


def make_default():
    return 0


class TagSet(set):
    """A set subclass: a class of the training script, so a finding."""


class CallNow:
    def __reduce__(self):
        return (datetime.datetime.now, ())  # pickled as getattr(datetime.datetime, 'now')


class DateOfCallable:
    def __reduce__(self):
        return (datetime.date, (os.getcwd,))  # a callable where data belongs


class IntFromText:
    def __reduce__(self):
        return (int, ("5",))


class Unlink:
    def __reduce__(self):
        return (pathlib.Path.unlink, (pathlib.PosixPath(PWNED),))


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

    # The standard library's data types (docs/allow-list.md): data, no findings, in every protocol.
    for p in (0, 2, 4, 5):
        stdlib_sample(f"stdlib_p{p}.pkl", stdlib_data(), p)
    # ...and their near misses: each a finding.
    for p in (2, 4):
        hostile_sample(f"defaultdict_function_factory_p{p}.pkl",
                       pickle.dumps(collections.defaultdict(make_default, {"k": 1}), protocol=p),
                       {"__main__.make_default": ("warning", False)})
        hostile_sample(f"defaultdict_system_factory_p{p}.pkl",
                       pickle.dumps(collections.defaultdict(os.system), protocol=p),
                       {"posix.system": ("critical", False)})
        hostile_sample(f"defaultdict_allowed_class_factory_p{p}.pkl",
                       pickle.dumps(collections.defaultdict(argparse.Namespace), protocol=p),
                       {"argparse.Namespace": ("warning", False)}, misuse=True)
        hostile_sample(f"userdict_p{p}.pkl", pickle.dumps(collections.UserDict({"a": 1}), protocol=p),
                       {"collections.UserDict": ("warning", True)})
        hostile_sample(f"set_subclass_p{p}.pkl", pickle.dumps(TagSet({"a"}), protocol=p),
                       {"__main__.TagSet": ("warning", True)})
        hostile_sample(f"datetime_method_called_p{p}.pkl", pickle.dumps({"clock": CallNow()}, protocol=p),
                       {"builtins.getattr": ("critical", True)})
        hostile_sample(f"datetime_given_callable_p{p}.pkl", pickle.dumps(DateOfCallable(), protocol=p),
                       {"posix.getcwd": ("critical", False)})
        hostile_sample(f"int_called_p{p}.pkl", pickle.dumps(IntFromText(), protocol=p),
                       {"builtins.int": ("warning", True)}, misuse=True)
    hostile_sample("path_unlink_p4.pkl", pickle.dumps(Unlink(), protocol=4),
                   {"pathlib.Path.unlink": ("critical", True)})

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
    make_checkpoints()


# ---------------------------------------------------------------------------------------------
# Checkpoints of the security classes, written by torch.save itself into hostile/.

HOSTILE = os.path.join(HERE, "hostile")


def make_checkpoints():
    """torch.save with a pickle_module that does what a hostile or broken writer would. Every byte
    of the zip or legacy container is torch's own; only what the module's Pickler adds differs."""
    # The stand-ins above took torch's and numpy's names: the real ones are wanted here.
    for name in [n for n in sys.modules if n.split(".")[0] in ("torch", "numpy")]:
        del sys.modules[name]
    try:
        import torch
    except ImportError:
        print("torch is not importable: hostile/security_classes.json not rewritten", file=sys.stderr)
        return
    torch.manual_seed(5)
    state = collections.OrderedDict(weight=torch.randn(4, 4), bias=torch.zeros(4))
    base = torch.arange(8, dtype=torch.float32)

    class Payload:
        def __reduce__(self):
            return (os.system, (SHELL,))

    def module_with(pickler_class, dump=pickle.dump):
        mod = types.ModuleType("hostile_pickle_module")
        mod.__dict__.update(pickle.__dict__)
        mod.Pickler, mod.dump = pickler_class, dump
        return mod

    def appending(extra):
        """A Pickler that writes a second pickle after the object's STOP, into the same record."""
        class Appending(pickle.Pickler):
            def __init__(self, file, protocol=None, **kw):
                super().__init__(file, protocol, **kw)
                self.out, self.protocol_used = file, protocol

            def dump(self, obj):
                super().dump(obj)
                pickle.dump(extra, self.out, protocol=self.protocol_used)
        return Appending

    def numel_scaled(factor):
        """A Pickler whose storage persistent ids declare factor times the elements torch wrote."""
        class Liar(pickle.Pickler):
            def __setattr__(self, name, value):
                if name == "persistent_id":  # torch.save sets its own; wrap it
                    f = value

                    def value(obj):
                        pid = f(obj)
                        return pid if pid is None else pid[:4] + (int(pid[4] * factor),) + pid[5:]
                super().__setattr__(name, value)
        return Liar

    def sys_info_payload(obj, f, **kw):
        """pickle.dump, except that the legacy format's system-info dict carries a payload."""
        if isinstance(obj, dict) and "little_endian" in obj:
            obj = dict(obj, extra=Payload())
        pickle.dump(obj, f, **kw)

    files = collections.OrderedDict()

    def save(name, obj, expect, **kw):
        path = os.path.join(HOSTILE, name)
        torch.save(obj, path, **kw)
        files[name] = expect
        return path

    legacy = {"_use_new_zipfile_serialization": False}
    system = {"global": "posix.system", "severity": "critical", "called": True}
    save("after_stop_payload.pt", {"model_state_dict": state},
         {"format": "torch_zip", "findings": [dict(system, reason_contains="further pickle")],
          "notes_contain": ["data.pkl after its STOP", "posix.system"]},
         pickle_module=module_with(appending(Payload())))
    save("after_stop_benign.pt", {"model_state_dict": state},
         {"format": "torch_zip", "findings": [], "notes_contain": ["1 further pickle(s)"]},
         pickle_module=module_with(appending({"note": "a second pickle"})))
    save("legacy_sys_info_payload.pt", {"model_state_dict": state},
         {"format": "torch_legacy", "findings": [dict(system, reason_contains="system info pickle")], "notes_contain": []},
         pickle_module=module_with(pickle.Pickler, sys_info_payload), **legacy)
    path = save("legacy_after_storages.pt", {"model_state_dict": state},
                {"format": "torch_legacy", "findings": [dict(system, reason_contains="further pickle")],
                 "notes_contain": ["after the last storage", "posix.system"]}, **legacy)
    with open(path, "ab") as f:
        pickle.dump(Payload(), f, protocol=2)  # after torch's own bytes, where another loader reads on
    view = {"v": base[:4]}
    save("numel_declared_larger.pt", view,
         {"format": "torch_zip", "error_contains": "declares 16 float32 element(s) (64 bytes) but its record"},
         pickle_module=module_with(numel_scaled(2)))
    save("numel_declared_larger_legacy.pt", view,
         {"format": "torch_legacy", "error_contains": "declares 16 float32 element(s) (64 bytes) but the file stores 32 bytes"},
         pickle_module=module_with(numel_scaled(2)), **legacy)
    save("numel_declared_smaller.pt", view,
         {"format": "torch_zip", "findings": [], "notes_contain": [],
          "warnings_contain": ["storage '0': its record", "32 bytes, 16 more than its 4 float32 element(s) need"]},
         pickle_module=module_with(numel_scaled(0.5)))
    save("numel_declared_smaller_than_view.pt", {"v": base[:6]},
         {"format": "torch_zip", "error_contains": "needs 24 bytes but its storage '0' holds 16"},
         pickle_module=module_with(numel_scaled(0.5)))
    with open(os.path.join(HOSTILE, "security_classes.json"), "w") as f:
        json.dump({"written_by": "sample_ckpts/make_pickles.py make_checkpoints", "torch": torch.__version__,
                   "files": files}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(files)} checkpoints and security_classes.json to {HOSTILE}")


if __name__ == "__main__":
    # Sets of str pickle in hash order: a fixed seed makes regenerated fixtures byte-identical.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})
    main()
