// bitfsck convert: latent .pt → every packed format → .pt keeps the absmean codes and scales
// bit for bit (GGUF: the scale as fp16, the format's own precision); non-ternary weights are
// refused without --quantize; inputs are never overwritten; scan and inspect agree on every
// format.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <map>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/tensor_names.hpp"
#include "support.hpp"

using namespace bitfsck;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path packed_dir() { return test::samples_dir() / "packed"; }
std::string bitfsck_cmd(const std::string& args) { return test::quote(test::cli_path()) + " " + args; }

std::vector<std::int8_t> parse_codes(const std::string& s) {
    std::vector<std::int8_t> out;
    for (char c : s) out.push_back(c == '-' ? -1 : c == '0' ? 0 : 1);
    return out;
}

// Codes and scale of every BitLinear weight, read through whatever the file's layout is.
std::map<std::string, io::TernaryTensor> views(const fs::path& file) {
    io::Checkpoint c = io::Checkpoint::open(file);
    std::map<std::string, io::TernaryTensor> out;
    for (const auto* t : c.state_dict_tensors()) {
        if (io::place_of(t->name).role == io::Role::Norm) continue;
        io::TensorData d = c.data(*t);
        if (d.is_ternary()) {
            out[t->name] = io::read_ternary(d, t->name);
        } else {
            std::vector<float> v(static_cast<std::size_t>(d.numel()));
            d.read(0, d.numel(), v.data());
            auto x = io::exact_ternary(t->name, t->shape, v, nullptr);
            REQUIRE(x);
            out[t->name] = *x;
        }
    }
    return out;
}

// A tensor by its name in the input, whichever name the output gave it (GGUF: llama.cpp's).
const io::TernaryTensor& view_of(const std::map<std::string, io::TernaryTensor>& v, const std::string& name) {
    auto it = v.find(name);
    if (it == v.end()) it = v.find(io::gguf_tensor_name(name).value_or(name));
    REQUIRE(it != v.end());
    return it->second;
}

struct Target {
    const char* to;
    const char* file;
    const char* encoding;
    bool fp16_scale;
};
const Target kTargets[] = {{"i2s-pt", "x.pt", "i2s", false},
                           {"hf-packed", "x.safetensors", "hf_packed", false},
                           {"gguf-tq2_0", "x2.gguf", "TQ2_0", true},
                           {"gguf-tq1_0", "x1.gguf", "TQ1_0", true},
                           {"bit2", "x.bit2", "bit2_ternary", false}};

}  // namespace

TEST_CASE("convert refuses to pack weights that are not ternary, and says why") {
    test::TempDir tmp;
    auto r = test::run_command(bitfsck_cmd("convert " + test::quote(packed_dir() / "latent.pt") + " " + test::quote(tmp / "x.gguf")));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("not ternary") != std::string::npos);
    CHECK(r.err.find("--quantize") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / "x.gguf"));
}

TEST_CASE("convert never overwrites its input") {
    test::TempDir tmp;
    fs::copy_file(packed_dir() / "model.bit2", tmp / "m.bit2");
    const std::string before = test::read_text(tmp / "m.bit2");
    auto r = test::run_command(bitfsck_cmd("convert " + test::quote(tmp / "m.bit2") + " " + test::quote(tmp / "m.bit2")));
    CHECK(r.exit_code != 0);
    CHECK(test::read_text(tmp / "m.bit2") == before);
}

TEST_CASE("latent .pt → each packed format → .pt keeps the absmean codes and scales exactly") {
    const auto expected = test::read_json(packed_dir() / "latent.pt.expected.json");
    for (const auto& target : kTargets) {
        INFO(target.to);
        test::TempDir tmp;
        const auto packed = tmp / target.file;
        auto r = test::run_command(bitfsck_cmd("convert " + test::quote(packed_dir() / "latent.pt") + " " + test::quote(packed) +
                                               " --to " + target.to + " --quantize"));
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        // The loss of quantizing is reported, matching the independent quantizer's.
        const auto& up = expected["tensors"]["model.layers.0.mlp.up_proj.weight"];
        char loss[64];
        std::snprintf(loss, sizeof loss, "relative L2 error %.4f", up["relative_l2"].get<double>());
        CHECK(r.out.find(loss) != std::string::npos);
        {
            io::Checkpoint c = io::Checkpoint::open(packed);
            for (const auto* t : c.state_dict_tensors())
                if (io::place_of(t->name).role != io::Role::Norm) CHECK(io::encoding_name(t->encoding) == target.encoding);
        }
        const auto back = tmp / "back.pt";
        r = test::run_command(bitfsck_cmd("convert " + test::quote(packed) + " " + test::quote(back)));
        REQUIRE(r.exit_code == 0);
        for (const auto& file : {packed, back}) {
            auto v = views(file);
            REQUIRE(v.size() == 3);
            for (auto it = expected["tensors"].begin(); it != expected["tensors"].end(); ++it) {
                INFO(file.string() << " " << it.key());
                const auto& t = view_of(v, it.key());
                CHECK(t.codes == parse_codes(it.value()["codes"].get<std::string>()));
                REQUIRE(t.per_tensor());
                const float scale = static_cast<float>(it.value()["scale"].get<double>());
                CHECK(t.scales[0] == (target.fp16_scale ? io::half_to_float(io::float_to_half(scale)) : scale));
            }
        }
        // The float tensors that were not packed come through unchanged.
        io::Checkpoint src = io::Checkpoint::open(packed_dir() / "latent.pt"), dst = io::Checkpoint::open(back);
        std::vector<double> a(256), b(256);
        src.data(*src.find_tensor("model.norm.weight")).read(0, 256, a.data());
        const io::TensorEntry* norm = dst.find_tensor("model.norm.weight");
        if (!norm) norm = dst.find_tensor("output_norm.weight");  // through GGUF: llama.cpp's name
        REQUIRE(norm);
        dst.data(*norm).read(0, 256, b.data());
        CHECK(a == b);
    }
}

TEST_CASE("packed → packed conversions round-trip every fixture's codes and scales bit for bit") {
    for (const char* fixture : {"i2s.pt", "hf_packed.safetensors", "tq2_0.gguf", "tq1_0.gguf", "i2_s.gguf", "model.bit2", "i2s_meta.safetensors"}) {
        const auto original = views(packed_dir() / fixture);
        for (const auto& target : kTargets) {
            INFO(fixture << " → " << target.to);
            test::TempDir tmp;
            auto r = test::run_command(bitfsck_cmd("convert " + test::quote(packed_dir() / fixture) + " " +
                                                   test::quote(tmp / target.file) + " --to " + target.to));
            INFO(r.err);
            REQUIRE(r.exit_code == 0);
            auto again = views(tmp / target.file);
            for (const auto& [name, t] : original) {
                CHECK(view_of(again, name).codes == t.codes);
                const float want = target.fp16_scale ? io::half_to_float(io::float_to_half(t.scales[0])) : t.scales[0];
                CHECK(view_of(again, name).scales == std::vector<float>{want});
            }
        }
    }
}

TEST_CASE("scan gives the same ternary fractions for the same weights in every format") {
    std::map<std::string, std::array<double, 3>> reference;
    for (const char* fixture : {"ternary.pt", "i2s.pt", "i2s_meta.safetensors", "hf_packed.safetensors", "hf_packed_absmean.safetensors",
                                "tq2_0.gguf", "tq1_0.gguf", "i2_s.gguf", "model.bit2"}) {
        INFO(fixture);
        auto r = test::run_command(bitfsck_cmd("scan --json " + test::quote(packed_dir() / fixture)));
        INFO(r.err);
        REQUIRE(!r.out.empty());
        const json doc = json::parse(r.out)[0];
        std::size_t seen = 0;
        for (const auto& t : doc["tensors"]) {
            const std::string name = t["name"].get<std::string>();
            if (name == "model.norm.weight") continue;
            ++seen;
            std::array<double, 3> f = {t["ternary"]["neg"].get<double>(), t["ternary"]["zero"].get<double>(),
                                       t["ternary"]["pos"].get<double>()};
            auto [it, inserted] = reference.emplace(name, f);
            INFO(name);
            if (!inserted) CHECK(f == it->second);
        }
        CHECK(seen == 3);
    }
    const auto expected = test::read_json(packed_dir() / "latent.pt.expected.json");
    for (auto it = expected["tensors"].begin(); it != expected["tensors"].end(); ++it)
        for (std::size_t k = 0; k < 3; ++k)
            CHECK(reference.at(it.key())[k] == Approx(it.value()["fractions"][k].get<double>()).margin(1e-12));
}

TEST_CASE("inspect shows packed encodings and notes, and describes a foreign .bit2") {
    auto r = test::run_command(bitfsck_cmd("inspect " + test::quote(packed_dir() / "hf_packed.safetensors")));
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("hf_packed") != std::string::npos);
    CHECK(r.out.find("weight_scale holds 1/absmean") != std::string::npos);
    CHECK(r.out.find("confidence high") != std::string::npos);
    r = test::run_command(bitfsck_cmd("inspect --json " + test::quote(packed_dir() / "i2_s.gguf")));
    CHECK(r.exit_code == 0);
    const json doc = json::parse(r.out)[0];
    CHECK(doc["format"] == "gguf");
    CHECK(doc["tensors"][0]["packed"]["encoding"] == "I2_S");
    r = test::run_command(bitfsck_cmd("inspect " + test::quote(packed_dir() / "corrupt" / "foreign.bit2")));
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("not bitfsck's .bit2 format") != std::string::npos);
    CHECK(r.err.find("entropy") != std::string::npos);
}
