// .bit2, bitfsck's own container: the Python-written fixture (docs/bit2-format.md followed by
// independent code) reads back, our writer round-trips bit for bit, and foreign or damaged
// .bit2 files are refused with what can be said about them.
#include <catch2/catch.hpp>

#include <cstring>

#include "bitfsck/io/bit2.hpp"
#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "support.hpp"

using namespace bitfsck;

TEST_CASE(".bit2 writer output reads back: 2-bit per tensor and per channel, sign planes, plain") {
    test::TempDir tmp;
    io::TernaryTensor tern{"t.weight", {4, 8}, {}, {0.125f}, 32};
    for (int i = 0; i < 32; ++i) tern.codes.push_back(static_cast<std::int8_t>(i % 3 - 1));
    io::TernaryTensor chan{"c.weight", {2, 5}, {1, 0, -1, 1, 1, 0, 0, -1, 1, 1}, {0.5f, 0.75f}, 5};
    io::TernaryTensor sign{"s.weight", {3, 3}, {1, -1, 1, -1, -1, 1, 1, 1, -1}, {0.5f, 0.25f, 2.0f}, 3};
    std::vector<float> norm = {1.0f, 2.0f};
    io::Bit2Tensor plain{"norm", {2}, std::nullopt, io::DType::F32, std::vector<std::byte>(8)};
    std::memcpy(plain.plain.data(), norm.data(), 8);
    std::vector<io::Bit2Tensor> all = {{"t.weight", tern.shape, tern, io::DType::F32, {}},
                                       {"c.weight", chan.shape, chan, io::DType::F32, {}},
                                       {"s.weight", sign.shape, sign, io::DType::F32, {}},
                                       plain};
    const auto path = tmp / "m.bit2";
    io::write_bit2(path, all, {{"k", "v"}});
    io::Checkpoint c = io::Checkpoint::open(path);
    CHECK(c.format() == io::Format::Bit2);
    REQUIRE(c.metadata().size() == 1);
    CHECK(c.metadata()[0].second == "v");
    for (const auto* want : {&tern, &chan, &sign}) {
        INFO(want->name);
        const auto* t = c.find_tensor(want->name);
        REQUIRE(t);
        auto v = io::read_ternary(c.data(*t), t->name);
        CHECK(v.codes == want->codes);
        CHECK(v.scales == want->scales);
        CHECK(v.shape == want->shape);
    }
    CHECK(c.find_tensor("s.weight")->encoding == io::TensorEncoding::Bit2Sign);
    CHECK(c.find_tensor("c.weight")->encoding == io::TensorEncoding::Bit2Ternary);
    std::vector<float> back(2);
    c.data(*c.find_tensor("norm")).read(0, 2, back.data());
    CHECK(back == norm);
    // Data starts at a multiple of 64 as the format says.
    std::uint64_t n;
    std::memcpy(&n, test::read_text(path).data() + 16, 8);
    CHECK((24 + n) % 64 == 0);
}

TEST_CASE(".bit2 refuses block scales it cannot store") {
    test::TempDir tmp;
    io::TernaryTensor t{"x", {1, 512}, std::vector<std::int8_t>(512, 1), {0.5f, 0.25f}, 256};
    CHECK_THROWS_WITH(io::write_bit2(tmp / "x.bit2", {{"x", t.shape, t, io::DType::F32, {}}}),
                      Catch::Contains("per tensor or per output channel"));
}

TEST_CASE("damaged .bit2 files fail with errors naming the problem") {
    test::TempDir tmp;
    io::TernaryTensor t{"x", {2, 4}, {1, 0, -1, 1, 0, 0, 1, -1}, {0.5f}, 8};
    io::write_bit2(tmp / "ok.bit2", {{"x", t.shape, t, io::DType::F32, {}}});
    const std::string good = test::read_text(tmp / "ok.bit2");
    std::uint64_t n;
    std::memcpy(&n, good.data() + 16, 8);
    const std::size_t data = 24 + n;

    std::string bad = good;
    bad[data] = static_cast<char>(0xC0);  // element 0 -> code 3
    test::write_bytes(tmp / "code3.bit2", bad);
    CHECK_THROWS_WITH(io::Checkpoint::open(tmp / "code3.bit2"), Catch::Contains("code 3 at element 0"));

    bad = good;
    const std::uint32_t v2 = 2;
    std::memcpy(bad.data() + 8, &v2, 4);
    test::write_bytes(tmp / "v2.bit2", bad);
    CHECK_THROWS_WITH(io::Checkpoint::open(tmp / "v2.bit2"), Catch::Contains("version 2"));

    test::write_bytes(tmp / "short.bit2", good.substr(0, data + 1));
    CHECK_THROWS_WITH(io::Checkpoint::open(tmp / "short.bit2"), Catch::Contains("run past the data"));
}

TEST_CASE("a .bit2 file that is not ours is described, not guessed at") {
    const auto path = test::samples_dir() / "packed" / "corrupt" / "foreign.bit2";
    CHECK_THROWS_WITH(io::Checkpoint::open(path),
                      Catch::Contains("not bitfsck's .bit2 format") && Catch::Contains("entropy") &&
                          Catch::Contains("model v7 packed by another tool"));
}
