// The command line on release-shaped files written by their producers: GGUF by gguf-py, and
// bitfsck's own GGUF output read back by gguf-py (llama.cpp's reader), with llama.cpp's names.
#include <catch2/catch.hpp>

#include "releases.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string bitfsck_cmd(const std::string& args) { return test::quote(test::cli_path()) + " " + args; }

json read_back(const fs::path& gguf, const fs::path& names = {}) {
    auto r = test::run_command(test::python() + " " + test::quote(test::source_dir() / "tests/scripts/read_gguf.py") + " " +
                               test::quote(gguf) + (names.empty() ? "" : " " + test::quote(names)));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
}

}  // namespace

TEST_CASE("scan of a collapsed llama GGUF exits 5 and names llama.cpp's layers", "[gguf]") {
    const fs::path dir = test::releases("gguf");
    auto r = test::run_command(bitfsck_cmd("scan " + test::quote(dir / "llama_tq2_0.gguf")));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 5);
    CHECK(r.out.find("gguf names") != std::string::npos);
    CHECK(r.out.find("collapsed: blk.1.ffn_up.weight") != std::string::npos);
    CHECK(r.out.find("verdict: collapsed  (21 tensors, 14 layer groups)") != std::string::npos);
}

TEST_CASE("scan says which I2_S layout it assumed, and takes another with --i2s-layout", "[gguf]") {
    const fs::path dir = test::releases("gguf");
    auto r = test::run_command(bitfsck_cmd("scan " + test::quote(dir / "i2s_interleaved.gguf")));
    CHECK(r.out.find("I2_S layout not recorded in the file; assumed act-parallel") != std::string::npos);
    r = test::run_command(bitfsck_cmd("scan --json --i2s-layout interleaved " + test::quote(dir / "i2s_interleaved.gguf")));
    REQUIRE(r.exit_code == 5);
    const json doc = json::parse(r.out)[0];
    bool noted = false;
    for (const auto& n : doc["notes"]) noted = noted || n.get<std::string>().find("assumed interleaved") != std::string::npos;
    CHECK(noted);
    r = test::run_command(bitfsck_cmd("scan --i2s-layout sideways " + test::quote(dir / "i2s_interleaved.gguf")));
    CHECK(r.exit_code == 1);
}

TEST_CASE("scan of bitnet.cpp TL1 exits 6: nothing could be judged, and says why", "[gguf]") {
    const fs::path dir = test::releases("gguf");
    auto r = test::run_command(bitfsck_cmd("scan " + test::quote(dir / "tl1.gguf")));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 6);
    CHECK(r.out.find("14 tensors not decoded") != std::string::npos);
    CHECK(r.out.find("bitnet.cpp TL1 (type 38)") != std::string::npos);
    CHECK(r.out.find("verdict: unknown") != std::string::npos);
}

TEST_CASE("convert to GGUF: llama.cpp names, TQ2_0 matrices, F16 embedding and head, F32 norms, read back by gguf-py", "[gguf]") {
    test::TempDir tmp;
    SECTION("a GGUF written by gguf-py, converted again") {
        const fs::path in = test::releases("gguf") / "llama_tq2_0.gguf";
        auto r = test::run_command(bitfsck_cmd("convert " + test::quote(in) + " " + test::quote(tmp / "again.gguf")));
        INFO(r.out << r.err);
        REQUIRE(r.exit_code == 0);
        const json back = read_back(tmp / "again.gguf");
        const json expected = test::read_json(in.string() + ".expected.json");
        CHECK(back["architecture"] == "llama");
        CHECK(back["tensors"]["token_embd.weight"]["type"] == "F16");
        CHECK(back["tensors"]["output.weight"]["type"] == "F16");
        CHECK(back["tensors"]["output_norm.weight"]["type"] == "F32");
        for (const auto& [name, want] : expected["tensors"].items()) {
            INFO(name);
            const json& got = back["tensors"][name];
            CHECK(got["type"] == "TQ2_0");
            CHECK(got["zero"].get<double>() == Approx(want["zero"].get<double>()).margin(1e-12));
            CHECK(got["neg"].get<double>() == Approx(want["neg"].get<double>()).margin(1e-12));
        }
    }
    SECTION("a sharded Hugging Face BitNet release, packed across shards") {
        const fs::path in = test::releases("sharded") / "bitnet_autobitlinear";
        auto r = test::run_command(bitfsck_cmd("convert " + test::quote(in) + " " + test::quote(tmp / "bitnet.gguf")));
        INFO(r.out << r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.out.find("architecture bitnet") != std::string::npos);
        const fs::path names = test::releases("sharded") / "bitnet_autobitlinear.expected.json";
        const json back = read_back(tmp / "bitnet.gguf", names);
        CHECK(back["architecture"] == "bitnet");
        CHECK(back["metadata"]["bitnet.block_count"] == 2);
        CHECK(back["metadata"]["bitnet.attention.head_count"] == 4);  // from config.json
        CHECK(back["tensors"]["token_embd.weight"]["type"] == "F16");
        CHECK(back["tensors"]["blk.0.attn_sub_norm.weight"]["type"] == "F32");
        for (const auto& [hf, want] : test::read_json(names)["tensors"].items()) {
            INFO(hf);
            // gguf-py's own mapping of the Hugging Face name is the name we wrote.
            const json& gguf_name = back["hf_to_gguf"][hf];
            REQUIRE(gguf_name.is_string());
            const json& got = back["tensors"][gguf_name.get<std::string>()];
            CHECK(got["type"] == "TQ2_0");
            CHECK(got["zero"].get<double>() == Approx(want["zero"].get<double>()).margin(1e-12));
            // The values config.json's AutoBitLinear rule gives (code × weight_scale), not 1/that.
            CHECK(got["mean_abs"].get<double>() == Approx(want["absmean"].get<double>()).epsilon(1e-3));
        }
        // diff pairs the two namings by what the names mean: every tensor compared, no code flipped.
        r = test::run_command(bitfsck_cmd("diff --json " + test::quote(in) + " " + test::quote(tmp / "bitnet.gguf")));
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        const json d = json::parse(r.out);
        CHECK(d["totals"]["only_in_a"] == 0);
        CHECK(d["totals"]["only_in_b"] == 0);
        CHECK(d["totals"]["tensors_compared"] == 24);
        CHECK(d["totals"]["flips"] == 0);
    }
}

TEST_CASE("convert reports a tensor the layout could not pack, and writes it unchanged", "[gguf]") {
    test::TempDir tmp;
    // The sample run's rows are 64 wide: ggml's ternary blocks need 256.
    const fs::path in = test::samples_dir() / "run/step_000050.pt";
    auto r = test::run_command(bitfsck_cmd("convert --quantize " + test::quote(in) + " " + test::quote(tmp / "small.gguf")));
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("0 packed") != std::string::npos);
    CHECK(r.out.find("14 left as floats that the layout could not pack") != std::string::npos);
    CHECK(r.out.find("quantized and packed") == std::string::npos);
    CHECK(r.out.find("not packed (nor quantized): ggml ternary types need rows of a multiple of 256 elements, these have 64") !=
          std::string::npos);
    const json back = read_back(tmp / "small.gguf");
    CHECK(back["tensors"]["blk.0.ffn_up.weight"]["type"] == "F32");
    CHECK(back["tensors"]["token_embd.weight"]["type"] == "F16");
}
