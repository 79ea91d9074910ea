// GGUF files written by llama.cpp's own Python package (gguf-py), and bitnet.cpp's I2_S and TL1
// packed by the lines of bitnet.cpp that write them (sample_ckpts/make_releases.py): read with
// llama.cpp's names as layers and roles, judged like any other checkpoint.
#include <algorithm>
#include <map>

#include "bitfsck/analysis/scan.hpp"
#include "releases.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

analysis::ScanReport scan(const fs::path& path, io::I2sLayout layout = io::I2sLayout::ActParallel) {
    io::OpenOptions open;
    open.i2s_layout = layout;
    analysis::ScanOptions options;
    options.threads = 2;
    return analysis::scan_checkpoint(io::Checkpoint::open(path, open), options);
}

const analysis::TensorStats& tensor(const analysis::ScanReport& r, const std::string& name) {
    auto it = std::find_if(r.tensors.begin(), r.tensors.end(), [&](const auto& t) { return t.name == name; });
    REQUIRE(it != r.tensors.end());
    return *it;
}

std::map<std::string, analysis::Verdict> verdict_by_group(const analysis::ScanReport& r) {
    std::map<std::string, analysis::Verdict> out;
    for (const auto& l : r.layers) out[std::to_string(l.layer.value_or(-1)) + "." + std::string(analysis::role_name(l.role))] = l.verdict;
    return out;
}

bool any_note_contains(const analysis::ScanReport& r, const std::string& text) {
    return std::any_of(r.notes.begin(), r.notes.end(), [&](const std::string& n) { return n.find(text) != std::string::npos; });
}

// Every ternary matrix as gguf-py's own dequantize (or the packer) says it is.
void check_against_expected(const analysis::ScanReport& r, const fs::path& expected_file) {
    const auto expected = test::read_json(expected_file);
    for (const auto& [name, want] : expected["tensors"].items()) {
        INFO(name);
        const auto& t = tensor(r, name);
        CHECK(t.ternary.neg == Approx(want["neg"].get<double>()).margin(1e-12));
        CHECK(t.ternary.zero == Approx(want["zero"].get<double>()).margin(1e-12));
        CHECK(t.ternary.pos == Approx(want["pos"].get<double>()).margin(1e-12));
        CHECK(t.dead.dead_rows == want["dead_rows"].get<std::int64_t>());
        CHECK(t.dead.rows == want["rows"].get<std::int64_t>());
    }
}

}  // namespace

TEST_CASE("a llama GGUF written by gguf-py with collapsed MLPs is judged collapsed, layer by layer", "[gguf][releases]") {
    const fs::path dir = test::releases("gguf");
    for (const char* file : {"llama_tq2_0.gguf", "llama_tq1_0.gguf"}) {
        INFO(file);
        const auto r = scan(dir / file);
        CHECK(r.name_layout == "gguf");
        CHECK(r.unassigned.empty());
        CHECK(r.undecoded.empty());
        REQUIRE(r.layers.size() == 14);  // 2 blocks × q, k, v, o, gate, up, down
        CHECK(r.verdict == analysis::Verdict::Collapsed);
        const auto groups = verdict_by_group(r);
        for (const char* role : {"mlp_gate", "mlp_up", "mlp_down"}) {
            CHECK(groups.at(std::string("1.") + role) == analysis::Verdict::Collapsed);
            CHECK(groups.at(std::string("0.") + role) == analysis::Verdict::Healthy);
        }
        for (const char* role : {"attn_q", "attn_k", "attn_v", "attn_o"}) {
            CHECK(groups.at(std::string("0.") + role) == analysis::Verdict::Healthy);
            CHECK(groups.at(std::string("1.") + role) == analysis::Verdict::Healthy);
        }
        check_against_expected(r, dir / (std::string(file) + ".expected.json"));
    }
}

TEST_CASE("a bitnet GGUF: sub-norms are norms, the embedding and norms are not judged as ternary matrices", "[gguf][releases]") {
    const fs::path dir = test::releases("gguf");
    const auto r = scan(dir / "bitnet_tq2_0.gguf");
    CHECK(r.verdict == analysis::Verdict::Healthy);
    CHECK(r.layers.size() == 14);
    CHECK(r.unassigned.empty());
    CHECK(analysis::place_of("blk.1.attn_sub_norm.weight").role == analysis::Role::Norm);
    CHECK(analysis::place_of("blk.1.ffn_sub_norm.weight").role == analysis::Role::Norm);
    CHECK(analysis::place_of("token_embd.weight").role == analysis::Role::Embedding);
    check_against_expected(r, dir / "bitnet_tq2_0.gguf.expected.json");
}

TEST_CASE("bitnet.cpp I2_S: every build layout decodes exactly when named, and the report says what was assumed", "[gguf][releases]") {
    const fs::path dir = test::releases("gguf");
    const std::pair<const char*, io::I2sLayout> layouts[] = {
        {"act-parallel", io::I2sLayout::ActParallel}, {"interleaved", io::I2sLayout::Interleaved}, {"arm", io::I2sLayout::Arm}};
    for (const auto& [name, layout] : layouts) {
        INFO(name);
        const fs::path file = dir / ("i2s_" + std::string(name) + ".gguf");
        const auto r = scan(file, layout);
        CHECK(r.verdict == analysis::Verdict::Collapsed);  // layer 1's MLPs
        check_against_expected(r, file.string() + ".expected.json");
        CHECK(any_note_contains(r, "I2_S layout not recorded in the file; assumed " + std::string(name)));
    }
    // The default assumption, on a file of another build: tensor-level fractions survive, the
    // dead rows (1 in 4 rows, interleaved four to a byte) do not. That is why the report says it.
    const auto wrong = scan(dir / "i2s_interleaved.gguf");
    CHECK(any_note_contains(wrong, "assumed act-parallel"));
    const auto want = test::read_json(dir / "i2s_interleaved.gguf.expected.json")["tensors"]["blk.0.ffn_up.weight"];
    const auto& up = tensor(wrong, "blk.0.ffn_up.weight");
    CHECK(up.ternary.zero == Approx(want["zero"].get<double>()).margin(1e-12));
    CHECK(want["dead_rows"].get<std::int64_t>() == 16);
    CHECK(up.dead.dead_rows != 16);
}

TEST_CASE("bitnet.cpp TL1 is named and refused with its reason, and nothing is called healthy", "[gguf][releases]") {
    const fs::path dir = test::releases("gguf");
    const io::Checkpoint c = io::Checkpoint::open(dir / "tl1.gguf");
    const io::TensorEntry* q = c.find_tensor("blk.0.attn_q.weight");
    REQUIRE(q);
    CHECK(q->encoding == io::TensorEncoding::Opaque);
    CHECK(q->packed.note.find("bitnet.cpp TL1 (type 38)") != std::string::npos);
    CHECK(q->packed.note.find("kernel tiling (BM/BK/bm)") != std::string::npos);
    const auto r = scan(dir / "tl1.gguf");
    CHECK(r.layers.empty());
    CHECK(r.undecoded.size() == 14);
    CHECK(r.verdict == analysis::Verdict::Unknown);
}
