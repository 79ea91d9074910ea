// GGUF: metadata of every value type (fixtures written with Python struct), alignment,
// innermost-first dimensions shown in PyTorch order, and the writer read back.
#include <catch2/catch.hpp>

#include <cstring>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/gguf.hpp"
#include "bitfsck/io/packed.hpp"
#include "support.hpp"

using namespace bitfsck;

namespace {
std::string meta(const io::Checkpoint& c, const std::string& key) {
    for (const auto& [k, v] : c.metadata())
        if (k == key) return v;
    return "<missing>";
}
}  // namespace

TEST_CASE("GGUF metadata of every value type reads as text") {
    io::Checkpoint c = io::Checkpoint::open(test::samples_dir() / "packed" / "tq2_0.gguf");
    CHECK(c.format() == io::Format::Gguf);
    CHECK(meta(c, "general.architecture") == "bitnet-b1.58");
    CHECK(meta(c, "test.u8") == "200");
    CHECK(meta(c, "test.i8") == "-5");
    CHECK(meta(c, "test.u16") == "60000");
    CHECK(meta(c, "test.i16") == "-300");
    CHECK(meta(c, "test.u32") == "4000000000");
    CHECK(meta(c, "test.i32") == "-7");
    CHECK(meta(c, "test.f32") == "0.5");
    CHECK(meta(c, "test.bool") == "true");
    CHECK(meta(c, "test.u64") == "1099511627776");
    CHECK(meta(c, "test.i64") == "-1099511627776");
    CHECK(meta(c, "test.f64") == "0.25");
    CHECK(meta(c, "test.strings") == "['a', 'bc', 'def']");
    CHECK(meta(c, "test.ints").find("… (20 i32)") != std::string::npos);
    CHECK(meta(c, "test.nested") == "[[1, 2], [3]]");
}

TEST_CASE("GGUF tensors sit at the file's alignment, shapes in PyTorch order") {
    io::Checkpoint c = io::Checkpoint::open(test::samples_dir() / "packed" / "tq1_0.gguf");
    CHECK(c.notes().at(0).find("alignment 64") != std::string::npos);
    for (const auto* t : c.state_dict_tensors()) {
        const std::uint64_t at = t->encoding == io::TensorEncoding::Plain ? t->storage_file_offset : t->packed.offset;
        CHECK(at % 64 == 0);
    }
    const auto* o = c.find_tensor("model.layers.0.self_attn.o_proj.weight");
    REQUIRE(o);
    CHECK(o->shape == std::vector<std::int64_t>{8, 512});  // stored as {512, 8}
    const auto* norm = c.find_tensor("model.norm.weight");
    REQUIRE(norm);
    CHECK(norm->dtype == io::DType::F32);
}

TEST_CASE("write_gguf output reads back: plain, TQ2_0 and TQ1_0 tensors and metadata") {
    test::TempDir tmp;
    std::vector<std::int8_t> codes(2 * 256);
    for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::int8_t>(static_cast<int>(i * 31 % 3) - 1);
    const std::vector<float> scales = {0.25f, 0.25f};
    std::vector<float> plain = {1.5f, -2.0f, 3.25f};
    io::GgufTensorOut a{"a.weight", {2, 256}, io::GgmlType::TQ2_0, io::pack_tq2_0(codes, scales)};
    io::GgufTensorOut b{"b.weight", {2, 256}, io::GgmlType::TQ1_0, io::pack_tq1_0(codes, scales)};
    io::GgufTensorOut p{"norm", {3}, io::GgmlType::F32, {}};
    p.data.resize(12);
    std::memcpy(p.data.data(), plain.data(), 12);
    const auto path = tmp / "w.gguf";
    io::write_gguf(path, {{"general.architecture", std::string("x")}, {"n", std::uint32_t{7}}, {"names", std::vector<std::string>{"p", "q"}}},
                   {a, b, p}, 128);
    io::Checkpoint c = io::Checkpoint::open(path);
    CHECK(meta(c, "n") == "7");
    CHECK(meta(c, "general.alignment") == "128");
    CHECK(meta(c, "names") == "['p', 'q']");
    for (const char* name : {"a.weight", "b.weight"}) {
        const auto* t = c.find_tensor(name);
        REQUIRE(t);
        CHECK(t->packed.offset % 128 == 0);
        auto v = io::read_ternary(c.data(*t), name);
        CHECK(v.codes == codes);
        CHECK(v.per_tensor());
        CHECK(v.scales[0] == 0.25f);
    }
    const auto* n = c.find_tensor("norm");
    REQUIRE(n);
    std::vector<float> back(3);
    c.data(*n).read(0, 3, back.data());
    CHECK(back == plain);
}

TEST_CASE("GGUF version 1 and an unknown version are refused by name") {
    test::TempDir tmp;
    for (std::uint32_t v : {1u, 9u}) {
        std::string bytes = "GGUF";
        bytes.append(reinterpret_cast<const char*>(&v), 4);
        bytes += std::string(16, '\0');
        test::write_bytes(tmp / "v.gguf", bytes);
        CHECK_THROWS_WITH(io::Checkpoint::open(tmp / "v.gguf"), Catch::Contains("GGUF version " + std::to_string(v)));
    }
}
