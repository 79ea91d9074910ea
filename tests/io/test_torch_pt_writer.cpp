// What bitfsck writes, loaded by real PyTorch (/usr/bin/python3 with torch; registered only
// where it exists): every value compared exactly as bytes, and rewritten training checkpoints
// compared with their sources loaded by torch in the same script.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/pt_writer.hpp"
#include "output_tensors.hpp"
#include "support.hpp"

using namespace bitfsck;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string hex(std::span<const std::byte> b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (std::byte x : b) {
        s += d[static_cast<unsigned>(x) >> 4];
        s += d[static_cast<unsigned>(x) & 15];
    }
    return s;
}

// Runs a Python script with arguments; returns its stdout parsed as JSON.
json run_python(const test::TempDir& dir, const std::string& script, const std::vector<std::string>& args) {
    const auto path = dir / "check.py";
    test::write_bytes(path, script);
    std::string cmd = "'" + test::python() + "' " + test::quote(path);
    for (const auto& a : args) cmd += " '" + a + "'";
    auto r = test::run_command(cmd);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
}

// Loads a state dict with weights_only=True and dumps each tensor: dtype, shape, raw bytes (bfloat16
// through an int16 view: numpy has no bfloat16), Parameter or not, and which tensors share memory.
const char* kDumpScript = R"PY(
import json, sys, torch
sd = torch.load(sys.argv[1], weights_only=True)
out = {"type": type(sd).__name__, "tensors": []}
for name, t in sd.items():
    raw = t.detach()
    if raw.dtype == torch.bfloat16:
        raw = raw.view(torch.int16)
    out["tensors"].append({
        "name": name, "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
        "hex": raw.contiguous().numpy().tobytes().hex(), "parameter": isinstance(t, torch.nn.Parameter),
        "requires_grad": t.requires_grad, "ptr": t.data_ptr() if t.numel() else 0})
print(json.dumps(out))
)PY";

// Loads a source checkpoint and its rewrite and compares them recursively: types, keys in order,
// tensors by dtype/shape/stride/offset/raw bytes, numpy scalars by dtype and bytes, objects by
// their fields. Tensors named in the replacements file must hold the new bytes instead.
const char* kCompareScript = R"PY(
import argparse, collections, dataclasses, json, math, sys
import numpy as np, torch

@dataclasses.dataclass
class TrainConfig:  # the stand-in for the __main__.TrainConfig pickled in training_checkpoint.pt
    vocab_size: int = 64
    hidden_size: int = 32
    num_layers: int = 2
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    name: str = "tiny-llama"

src_path, out_path, mode, repl_path = sys.argv[1:5]
replaced = json.load(open(repl_path))
src = torch.load(src_path, weights_only=(mode == "weights_only"))
out = torch.load(out_path, weights_only=(mode == "weights_only"))
problems, checked = [], []
if mode == "drop":
    src = {k: v for k, v in src.items() if "optim" not in k}

def raw(t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()

def join(path, part):
    return str(part) if not path else path + "." + str(part)

def cmp(a, b, path):
    if type(a) is not type(b):
        problems.append(f"{path}: {type(a).__name__} vs {type(b).__name__}")
        return
    if isinstance(a, torch.Tensor):
        if (a.dtype, a.shape, a.stride(), a.storage_offset(), a.requires_grad) != (b.dtype, b.shape, b.stride(), b.storage_offset(), b.requires_grad):
            problems.append(path + ": layout differs")
        want = raw(a)
        if path in replaced:
            checked.append(path)
            if want == bytes.fromhex(replaced[path]):
                problems.append(path + ": the new values equal the old ones")
            want = bytes.fromhex(replaced[path])
        if raw(b) != want:
            problems.append(path + ": values differ")
    elif isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            problems.append(f"{path}: keys {list(a.keys())} vs {list(b.keys())}")
        for k in a:
            if k in b:
                cmp(a[k], b[k], join(path, k))
        if getattr(a, "_metadata", None) != getattr(b, "_metadata", None):
            problems.append(path + ": _metadata differs")
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            problems.append(path + ": lengths differ")
        for i, (x, y) in enumerate(zip(a, b)):
            cmp(x, y, join(path, i))
    elif isinstance(a, argparse.Namespace) or dataclasses.is_dataclass(a):
        cmp(vars(a), vars(b), path)
    elif isinstance(a, np.generic):
        if a.dtype != b.dtype or a.tobytes() != b.tobytes():
            problems.append(path + ": numpy scalar differs")
    elif isinstance(a, float):
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            problems.append(path + ": float differs")
    elif a != b:
        problems.append(path + ": value differs")

cmp(src, out, "")
# Tied weights must stay one tensor in memory, as in the source.
def ptrs(sd):
    return {k: v.data_ptr() for k, v in sd.items() if isinstance(v, torch.Tensor) and v.numel()}
sd_src = src.get("model_state_dict", src) if isinstance(src, dict) else src
sd_out = out.get("model_state_dict", out) if isinstance(out, dict) else out
ps, po = ptrs(sd_src), ptrs(sd_out)
shared = lambda p: sorted(sorted(k for k in p if p[k] == v) for v in set(p.values()) if list(p.values()).count(v) > 1)
if shared(ps) != shared(po):
    problems.append("storage sharing differs")
print(json.dumps({"problems": problems, "checked": checked, "keys": [str(k) for k in out.keys()], "type": type(out).__name__,
                  "shared": shared(po)}))
)PY";

std::vector<io::OutputTensor> every_dtype() {
    std::vector<io::OutputTensor> ts;
    ts.push_back(test::output_tensor("f64", io::DType::F64, {5}, test::to_bytes(std::vector<double>{0.0, -1.5, 1e300, 5e-324, -INFINITY})));
    for (auto& t : test::small_tensors_of_every_dtype()) ts.push_back(std::move(t));
    std::vector<float> large(512 * 300);
    for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<float>(i) * 0.125f - 100.f;
    ts.push_back(test::output_tensor("large", io::DType::F32, {512, 300}, test::to_bytes(large)));
    std::vector<std::int8_t> codes(6 * 1000);
    for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::int8_t>(static_cast<int>(i * 7 % 3) - 1);
    ts.push_back(test::output_tensor("codes", io::DType::I8, {6, 10, 100}, test::to_bytes(codes)));
    auto embed = test::output_tensor("embed.weight", io::DType::F32, {4, 2}, test::to_bytes(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));
    embed.parameter = true;
    ts.push_back(embed);
    io::OutputTensor head;
    head.name = "lm_head.weight";
    head.dtype = io::DType::F32;
    head.shape = {4, 2};
    head.parameter = true;
    head.tied_to = "embed.weight";
    ts.push_back(head);
    return ts;
}

void check_dump(const json& got, const std::vector<io::OutputTensor>& ts) {
    CHECK(got["type"] == "OrderedDict");
    REQUIRE(got["tensors"].size() == ts.size());
    for (std::size_t i = 0; i < ts.size(); ++i) {
        const auto& want = ts[i];
        const auto& t = got["tensors"][i];
        INFO(want.name);
        CHECK(t["name"] == want.name);
        CHECK(t["dtype"] == std::string(io::dtype_name(want.dtype)));
        CHECK(t["shape"].get<std::vector<std::int64_t>>() == want.shape);
        auto bytes = want.tied_to.empty() ? want.bytes() : ts[i - 1].bytes();
        CHECK(t["hex"].get<std::string>() == hex(bytes));
        CHECK(t["parameter"].get<bool>() == want.parameter);
        CHECK(t["requires_grad"].get<bool>() == want.parameter);
    }
    // Tied: one storage in torch too.
    CHECK(got["tensors"][ts.size() - 1]["ptr"] == got["tensors"][ts.size() - 2]["ptr"]);
    CHECK(got["tensors"][0]["ptr"] != got["tensors"][1]["ptr"]);
}

json compare(const test::TempDir& dir, const fs::path& src, const fs::path& out, const std::string& mode, const json& replaced) {
    const auto repl = dir / "replaced.json";
    test::write_bytes(repl, replaced.dump());
    return run_python(dir, kCompareScript, {src.string(), out.string(), mode, repl.string()});
}

io::ReplacementTensor new_values(const io::Checkpoint& c, const std::string& name, float scale) {
    const io::TensorEntry* t = c.find_tensor(name);
    REQUIRE(t != nullptr);
    REQUIRE(t->dtype == io::DType::F32);
    io::ReplacementTensor r;
    r.dtype = t->dtype;
    r.shape = t->shape;
    std::vector<float> v(static_cast<std::size_t>(t->numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * static_cast<float>(static_cast<int>(i % 3) - 1);
    r.data = test::to_bytes(v);
    return r;
}

}  // namespace

TEST_CASE("torch loads a written state dict with weights_only=True and gets every byte", "[torch][pt_writer]") {
    test::TempDir dir;
    const auto ts = every_dtype();
    const auto p = dir / "state.pt";
    io::write_state_dict_pt(p, ts);
    check_dump(run_python(dir, kDumpScript, {p.string()}), ts);

    // The same with every ZIP64 field forced: torch's zip reader takes them too.
    io::PtWriteOptions options;
    options.zip64_threshold = 0;
    const auto p64 = dir / "state64.pt";
    io::write_state_dict_pt(p64, ts, options);
    check_dump(run_python(dir, kDumpScript, {p64.string()}), ts);
}

TEST_CASE("torch loads a rewritten training checkpoint equal to its source but for the new tensor", "[torch][pt_writer][rewrite]") {
    test::TempDir dir;
    const auto src_path = test::samples_dir() / "training_checkpoint.pt";
    auto src = io::Checkpoint::open(src_path);
    const std::string name = "layers.1.self_attn.q_proj.weight";
    auto r = new_values(src, name, 0.03f);
    const auto out = dir / "rewritten.pt";
    io::rewrite_checkpoint_pt(src, out, {{name, r}});
    auto got = compare(dir, src_path, out, "full", {{"model_state_dict." + name, hex(r.data)}});
    INFO(got.dump());
    CHECK(got["problems"].empty());
    CHECK(got["checked"] == json::array({"model_state_dict." + name}));
    CHECK(got["keys"].size() == 12);

    // Without the optimizer state (and a replacement): a fresh pickle, the rest unchanged.
    io::RewriteOptions options;
    options.drop_optimizer_state = true;
    const auto slim = dir / "slim.pt";
    io::rewrite_checkpoint_pt(src, slim, {{name, r}}, options);
    auto got2 = compare(dir, src_path, slim, "drop", {{"model_state_dict." + name, hex(r.data)}});
    INFO(got2.dump());
    CHECK(got2["problems"].empty());
    CHECK(got2["checked"].size() == 1);
    CHECK(got2["keys"].size() == 11);
    CHECK(std::find(got2["keys"].begin(), got2["keys"].end(), "optimizer_state_dict") == got2["keys"].end());
    CHECK(fs::file_size(slim) < fs::file_size(out));
}

TEST_CASE("rewritten plain state dicts load in torch (weights_only=True where torch 1.13 allows)", "[torch][pt_writer][rewrite]") {
    test::TempDir dir;
    for (const char* sample : {"plain_state_dict.pt", "views.pt", "protocol4.pt"}) {
        INFO(sample);
        const auto src_path = test::samples_dir() / sample;
        auto src = io::Checkpoint::open(src_path);
        const std::string name = std::string(sample) == "views.pt" ? "embed.weight" : "layers.0.mlp.down_proj.weight";
        auto r = new_values(src, name, 0.5f);
        const auto out = dir / "out.pt";
        io::rewrite_checkpoint_pt(src, out, {{name, r}});
        // torch 1.13's weights_only unpickler knows no protocol-4 opcodes (FRAME), not even in
        // the torch-written source, so that one is compared with a full load.
        const std::string mode = std::string(sample) == "protocol4.pt" ? "full" : "weights_only";
        auto got = compare(dir, src_path, out, mode, {{name, hex(r.data)}});
        INFO(got.dump());
        // views.pt: lm_head.weight is the same Parameter as embed.weight, so it changes too.
        if (std::string(sample) == "views.pt") {
            CHECK(got["problems"] == json::array({"lm_head.weight: values differ"}));
        } else {
            CHECK(got["problems"].empty());
        }
        CHECK(got["checked"].size() == 1);
        CHECK(got["type"] == "OrderedDict");
        fs::remove(out);
    }
}

TEST_CASE("torch loads a legacy checkpoint rewritten in the zip format", "[torch][pt_writer][rewrite]") {
    test::TempDir dir;
    const auto src_path = test::samples_dir() / "legacy.pt";
    auto src = io::Checkpoint::open(src_path);
    const std::string name = "layers.1.mlp.up_proj.weight";
    auto r = new_values(src, name, 0.25f);
    const auto out = dir / "legacy_zip.pt";
    io::rewrite_checkpoint_pt(src, out, {{name, r}});
    CHECK(test::read_text(out).starts_with("PK\x03\x04"));
    auto got = compare(dir, src_path, out, "weights_only", {{name, hex(r.data)}});
    INFO(got.dump());
    CHECK(got["problems"].empty());
    CHECK(got["checked"].size() == 1);
    CHECK(got["shared"] == json::array({json::array({"embed_tokens.weight", "lm_head.weight"})}));  // the tied pair
}
