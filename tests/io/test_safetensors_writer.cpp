// write_safetensors read back through bitfsck's reader, and the header laid out as the
// huggingface/safetensors library writes it (length prefix, JSON padded with spaces to 8 bytes).
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/safetensors_writer.hpp"
#include "output_tensors.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

std::vector<std::byte> stored_bytes(const io::Checkpoint& c, const io::TensorEntry& t) {
    auto s = c.file().bytes(t.storage_file_offset + static_cast<std::uint64_t>(t.storage_offset) * io::dtype_size(t.dtype), t.nbytes());
    return {s.begin(), s.end()};
}

}  // namespace

TEST_CASE("write_safetensors writes a file the reader and the spec agree on", "[safetensors_writer]") {
    test::TempDir dir;
    const auto p = dir / "model.safetensors";
    std::vector<io::OutputTensor> ts;
    ts.push_back(test::output_tensor("b.weight", io::DType::BF16, {2, 3}, test::to_bytes(std::vector<std::uint16_t>{0x3F80, 0xBF80, 0, 0x7F80, 1, 2})));
    ts.push_back(test::output_tensor("a.bias", io::DType::F32, {3}, test::to_bytes(std::vector<float>{1.5f, -2.f, 0.f})));
    ts.push_back(test::output_tensor("steps", io::DType::I64, {}, test::to_bytes(std::vector<std::int64_t>{INT64_MIN})));
    ts.push_back(test::output_tensor("mask", io::DType::Bool, {4}, test::to_bytes(std::vector<std::uint8_t>{1, 0, 1, 1})));
    ts.push_back(test::output_tensor("empty", io::DType::F16, {0, 4}, {}));
    std::vector<std::int8_t> codes(4096);
    for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::int8_t>(static_cast<int>(i % 3) - 1);
    ts.push_back(test::output_tensor("codes", io::DType::I8, {64, 64}, test::to_bytes(codes)));
    io::OutputTensor tied;
    tied.name = "tied";
    tied.dtype = io::DType::F32;
    tied.shape = {3};
    tied.tied_to = "a.bias";
    ts.push_back(tied);
    io::write_safetensors(p, ts, {{"format", "pt"}, {"quant", "ternary"}});

    // Layout: u64 header length, a JSON header padded to 8 bytes, tensors in the given order.
    const std::string raw = test::read_text(p);
    REQUIRE(raw.size() >= 8);
    std::uint64_t n = 0;
    std::memcpy(&n, raw.data(), 8);
    CHECK(n % 8 == 0);
    const std::string header = raw.substr(8, n);
    const std::size_t json_end = header.find_last_not_of(' ') + 1;  // padding: fewer than 8 spaces after the JSON
    CHECK(header[json_end - 1] == '}');
    CHECK(header.size() - json_end < 8);
    auto j = nlohmann::ordered_json::parse(header);
    std::vector<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
    CHECK(keys == std::vector<std::string>{"__metadata__", "b.weight", "a.bias", "steps", "mask", "empty", "codes", "tied"});
    CHECK(j["__metadata__"]["quant"] == "ternary");
    CHECK(j["b.weight"]["dtype"] == "BF16");
    CHECK(j["mask"]["dtype"] == "BOOL");
    CHECK(j["b.weight"]["data_offsets"] == nlohmann::json::array({0, 12}));
    CHECK(j["tied"]["data_offsets"] == nlohmann::json::array({12 + 12 + 8 + 4 + 0 + 4096, 12 + 12 + 8 + 4 + 4096 + 12}));
    CHECK(raw.size() == 8 + n + 12 + 12 + 8 + 4 + 4096 + 12);

    auto c = io::Checkpoint::open(p);
    CHECK(c.format() == io::Format::Safetensors);
    CHECK(c.metadata() == std::vector<std::pair<std::string, std::string>>{{"format", "pt"}, {"quant", "ternary"}});
    REQUIRE(c.tensors().size() == ts.size());
    for (const auto& want : ts) {
        INFO(want.name);
        const io::TensorEntry* got = c.find_tensor(want.name);
        REQUIRE(got != nullptr);
        CHECK(got->dtype == want.dtype);
        CHECK(got->shape == want.shape);
        auto bytes = want.tied_to.empty() ? want.bytes() : ts[1].bytes();
        CHECK(stored_bytes(c, *got) == std::vector<std::byte>(bytes.begin(), bytes.end()));
    }
}

TEST_CASE("write_safetensors refuses bad input and never replaces an input", "[safetensors_writer]") {
    test::TempDir dir;
    const auto p = dir / "x.safetensors";
    auto f = test::output_tensor("a", io::DType::F32, {2}, test::to_bytes(std::vector<float>{1, 2}));
    CHECK_THROWS_AS(io::write_safetensors(p, {f, f}), Error);
    CHECK_THROWS_AS(io::write_safetensors(p, {test::output_tensor("a", io::DType::F32, {3}, test::to_bytes(std::vector<float>{1}))}), Error);
    CHECK_THROWS_AS(io::write_safetensors(p, {test::output_tensor("__metadata__", io::DType::F32, {2}, test::to_bytes(std::vector<float>{1, 2}))}), Error);
    CHECK_THROWS_AS(io::write_safetensors(p, {test::output_tensor(std::string("bad\xff", 4), io::DType::F32, {2}, test::to_bytes(std::vector<float>{1, 2}))}), Error);
    CHECK_FALSE(fs::exists(p));
    io::write_safetensors(p, {f});
    const std::string before = test::read_text(p);
    CHECK_THROWS_AS(io::write_safetensors(p, {test::output_tensor("b", io::DType::F32, {1}, test::to_bytes(std::vector<float>{3}))}, {}, {p}), io::OutputError);
    CHECK(test::read_text(p) == before);
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}) == 1);
}
