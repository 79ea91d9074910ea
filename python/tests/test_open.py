"""bitfsck.open from Python gives the arrays torch.load gives, as views of the memory map."""
import pathlib
import sys
import types

import numpy as np
import pytest

import bitfsck
from conftest import SAMPLES

torch = pytest.importorskip("torch")

# Every real torch.save / safetensors fixture (hostile/ and pickles/ are for the readers'
# refusals; GGUF and .bit2 have no torch.load to compare with).
FIXTURES = sorted(
    [p for d in ("", "packed", "run", "models", "finetune") for p in (SAMPLES / d).glob("*.pt")]
    + [p for d in ("", "packed") for p in (SAMPLES / d).glob("*.safetensors")])


class _Anything:
    """Stands in for classes the fixtures pickle that this process cannot import (__main__.TrainConfig)."""
    def __init__(self, *a, **k):
        pass

    def __setstate__(self, state):
        self.__dict__["state"] = state


class _AnyMain(types.ModuleType):
    """A __main__ that has every class the fixtures' scripts pickled from theirs (GPTConfig, ...)."""
    def __getattr__(self, name):
        return type(name, (_Anything,), {})


def torch_tensors(path: pathlib.Path):
    if path.suffix == ".safetensors":
        st = pytest.importorskip("safetensors.torch")
        try:
            return st.load_file(str(path)), True
        except Exception as e:  # a header safetensors itself refuses (non-string metadata)
            pytest.skip(f"safetensors cannot load it: {e}")
    main = sys.modules["__main__"]
    sys.modules["__main__"] = _AnyMain("__main__")
    try:
        return torch.load(str(path), map_location="cpu"), False
    finally:
        sys.modules["__main__"] = main


def follow(obj, tree_path: str):
    """The object at a bitfsck tree path ("model_state_dict.layers.0.mlp.up_proj.weight"): keys
    may hold dots themselves, so the longest key that the path starts with is taken."""
    rest = tree_path
    while rest:
        if isinstance(obj, dict):
            keys = [k for k in obj if rest == str(k) or rest.startswith(str(k) + ".")]
            assert keys, (tree_path, rest)
            key = max(keys, key=lambda k: len(str(k)))
        elif isinstance(obj, (list, tuple)):
            key = int(rest.split(".")[0])
        else:
            obj = obj.__dict__.get("state", obj.__dict__)
            continue
        obj = obj[key]
        rest = rest[len(str(key)) + 1:]
    return obj


def as_numpy(t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.float().numpy()
    return t.numpy()


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_open_gives_torch_tensors(path):
    ckpt = bitfsck.open(path)
    loaded, flat = torch_tensors(path)
    compared = 0
    for name in ckpt.names(state_dict_only=False):
        info = ckpt.info(name)
        if info["encoding"] != "plain":
            continue  # a packed group: its float view is bitfsck's decoding, its parts are compared as stored
        expected = loaded[name] if flat else follow(loaded, info["path"])
        assert isinstance(expected, torch.Tensor), (name, type(expected))
        got = ckpt[name]
        assert list(got.shape) == list(expected.shape), name
        want = as_numpy(expected)
        if info["viewable"]:
            assert got.dtype == want.dtype, name
            assert not got.flags.writeable and not got.flags.owndata, f"{name}: not a read-only view"
        assert np.array_equal(got, want, equal_nan=got.dtype.kind in "fc"), name
        compared += 1
    assert compared > 0 or not ckpt.names(False)


def test_packed_tensors_decode_on_request():
    ckpt = bitfsck.open(SAMPLES / "packed" / "i2s.pt")
    packed = [n for n in ckpt.names() if ckpt.info(n)["encoding"] != "plain"]
    assert packed
    name = packed[0]
    with pytest.raises(bitfsck.UsageError):
        ckpt.view(name)
    codes = ckpt.codes(name)
    assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 0, 1}
    values = ckpt.decode(name)
    assert values.dtype == np.float32 and values.shape == codes.shape
    # code x scale: zero exactly where the code is zero, the code's sign elsewhere
    assert np.array_equal(np.sign(values).astype(np.int8), codes)


def test_security_findings_and_tree():
    hostile = bitfsck.open(SAMPLES / "hostile" / "pickle_os_system.pt")
    assert any(f["severity"] == "critical" for f in hostile.findings)
    assert "os" in " ".join(f["global"] for f in hostile.findings)
    ckpt = bitfsck.open(SAMPLES / "training_checkpoint.pt")
    assert ckpt.findings == [] or all(f["severity"] == "warning" for f in ckpt.findings)
    assert ckpt.tree["step"] == 1234
    assert ckpt.state_dict_path == "model_state_dict"
    assert ckpt.format == "torch_zip"


def test_errors_carry_kind_and_file(tmp_path):
    with pytest.raises(bitfsck.FileError) as e:
        bitfsck.open(tmp_path / "missing.pt")
    assert isinstance(e.value, bitfsck.Error) and e.value.kind == "file"
    broken = SAMPLES / "hostile" / "truncated_half.pt"
    with pytest.raises(bitfsck.UnreadableError) as e:
        bitfsck.open(broken)
    assert str(broken) in str(e.value) and e.value.file == str(broken)
    with pytest.raises(bitfsck.UsageError):
        bitfsck.open(SAMPLES / "plain_state_dict.pt")["no.such.tensor"]


def test_views_outlive_the_checkpoint():
    a = bitfsck.open(SAMPLES / "plain_state_dict.pt")
    name = a.names()[0]
    view = a[name]
    expected = view.copy()
    del a
    import gc
    gc.collect()
    assert np.array_equal(view, expected)  # the map is kept alive by the array
