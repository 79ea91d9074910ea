// What convert writes is what PyTorch reads: the i2s-packed .pt loads with torch.load
// (weights_only) and unpacks, in numpy, to the absmean codes; the unpacked .pt holds code × scale.
#include <catch2/catch.hpp>

#include "support.hpp"

using namespace bitfsck;

TEST_CASE("torch.load reads convert's i2s-packed and unpacked .pt files with the expected codes") {
    test::TempDir tmp;
    const auto dir = test::samples_dir() / "packed";
    const auto packed = tmp / "x.pt", unpacked = tmp / "y.pt";
    auto cli = test::quote(test::cli_path());
    REQUIRE(test::run_command(cli + " convert " + test::quote(dir / "latent.pt") + " " + test::quote(packed) + " --pack --quantize").exit_code == 0);
    REQUIRE(test::run_command(cli + " convert " + test::quote(packed) + " " + test::quote(unpacked)).exit_code == 0);
    const std::string script = R"PY(
import json, sys
import numpy as np, torch
exp = json.load(open(sys.argv[1]))["tensors"]
packed = torch.load(sys.argv[2], weights_only=True)
plain = torch.load(sys.argv[3], weights_only=True)
for name, e in exp.items():
    p = name[:-len(".weight")]
    shape = packed[p + "_shape"].tolist()
    b = packed[name].numpy()
    codes = np.stack([(b >> s) & 3 for s in (6, 4, 2, 0)], axis=1).reshape(-1)[: int(np.prod(shape))].astype(np.int64) - 1
    want = np.array(["-0+".index(c) - 1 for c in e["codes"]])
    assert shape == e["shape"], (name, shape)
    assert (codes == want).all(), name
    scale = packed[p + "_scale"].item()
    assert np.float32(scale) == np.float32(e["scale"]), (name, scale)
    v = plain[name].numpy()
    assert (v.reshape(-1) == (want.astype(np.float32) * np.float32(scale))).all(), name
print("ok")
)PY";
    test::write_bytes(tmp / "check.py", script);
    auto r = test::run_command(test::python() + " " + test::quote(tmp / "check.py") + " " + test::quote(dir / "latent.pt.expected.json") +
                               " " + test::quote(packed) + " " + test::quote(unpacked));
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n");
}
