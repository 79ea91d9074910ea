// Packed ternary fixtures written by independent numpy/struct code (sample_ckpts/make_packed.py)
// read back with exactly the codes, scales and fractions in their expected JSON; corrupted files
// fail with errors naming what and where; bitfsck's packers reproduce the fixtures' bytes.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <random>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/packed.hpp"
#include "support.hpp"

using namespace bitfsck;
namespace fs = std::filesystem;

namespace {

fs::path packed_dir() { return test::samples_dir() / "packed"; }

std::vector<std::int8_t> parse_codes(const std::string& s) {
    std::vector<std::int8_t> out;
    for (char c : s) out.push_back(c == '-' ? -1 : c == '0' ? 0 : 1);
    return out;
}

const char* kFixtures[] = {"i2s.pt", "i2s_meta.safetensors", "hf_packed.safetensors", "hf_packed_absmean.safetensors",
                           "tq2_0.gguf", "tq1_0.gguf", "i2_s.gguf", "model.bit2", "variants.bit2"};

}  // namespace

TEST_CASE("every packed fixture reads back with the codes, scales and values its packer wrote") {
    for (const char* name : kFixtures) {
        INFO(name);
        const auto path = packed_dir() / name;
        const auto expected = test::read_json(path.string() + ".expected.json");
        io::Checkpoint c = io::Checkpoint::open(path);
        CHECK(io::format_name(c.format()) == expected["format"].get<std::string>());
        for (auto it = expected["tensors"].begin(); it != expected["tensors"].end(); ++it) {
            INFO(it.key());
            const auto& e = it.value();
            const io::TensorEntry* t = c.find_tensor(it.key());
            REQUIRE(t);
            CHECK(t->in_state_dict);
            CHECK(io::encoding_name(t->encoding) == e["encoding"].get<std::string>());
            CHECK(t->shape == e["shape"].get<std::vector<std::int64_t>>());
            io::TensorData d = c.data(*t);
            const auto codes = parse_codes(e["codes"].get<std::string>());
            std::vector<std::int8_t> got(codes.size());
            d.read_codes(0, d.numel(), got.data());
            CHECK(got == codes);
            io::TernaryTensor v = io::read_ternary(d, t->name);
            if (e.contains("scale")) {
                REQUIRE(v.per_tensor());
                CHECK(v.scales[0] == static_cast<float>(e["scale"].get<double>()));
            } else {
                std::vector<float> want;
                for (double s : e["scales"]) want.push_back(static_cast<float>(s));
                CHECK(v.scales == want);
            }
            const auto f = v.fractions();
            for (int k = 0; k < 3; ++k) CHECK(f[static_cast<std::size_t>(k)] == Approx(e["fractions"][static_cast<std::size_t>(k)].get<double>()).margin(1e-12));
            // The float view is code × scale, element by element, read in odd-sized pieces.
            std::vector<double> values(static_cast<std::size_t>(d.numel()));
            for (std::int64_t first = 0; first < d.numel(); first += 999)
                d.read(first, std::min<std::int64_t>(999, d.numel() - first), values.data() + first);
            for (std::size_t i = 0; i < values.size(); i += 37)
                CHECK(values[i] == static_cast<double>(static_cast<float>(codes[i]) * v.scale_at(static_cast<std::int64_t>(i))));
        }
        // Helper buffers are folded into their packed tensor, not left in the state dict.
        for (const auto* t : c.state_dict_tensors()) {
            CHECK_FALSE(t->name.ends_with("_shape"));
            CHECK_FALSE(t->name.ends_with("_scale"));
            CHECK(t->name != "__metadata__");
        }
        if (expected.contains("notes_contain"))
            for (const auto& want : expected["notes_contain"]) {
                bool found = false;
                for (const auto& n : c.notes()) found = found || n.find(want.get<std::string>()) != std::string::npos;
                INFO("note wanted: " << want.get<std::string>());
                CHECK(found);
            }
    }
}

TEST_CASE("the same latent weights exported to every format give the same ternary fractions") {
    const auto latent = test::read_json(packed_dir() / "latent.pt.expected.json");
    for (const char* name : {"i2s.pt", "i2s_meta.safetensors", "hf_packed.safetensors", "hf_packed_absmean.safetensors",
                             "tq2_0.gguf", "tq1_0.gguf", "i2_s.gguf", "model.bit2", "ternary.pt"}) {
        INFO(name);
        io::Checkpoint c = io::Checkpoint::open(packed_dir() / name);
        for (auto it = latent["tensors"].begin(); it != latent["tensors"].end(); ++it) {
            const io::TensorEntry* t = c.find_tensor(it.key());
            REQUIRE(t);
            io::TensorData d = c.data(*t);
            std::vector<float> values(static_cast<std::size_t>(d.numel()));
            d.read(0, d.numel(), values.data());
            // Through the float view, as scan sees it: the values are exactly ternary again.
            std::string why;
            auto v = io::exact_ternary(t->name, t->shape, values, &why);
            INFO(why);
            REQUIRE(v);
            CHECK(v->codes == parse_codes(it.value()["codes"].get<std::string>()));
        }
    }
}

TEST_CASE("the Hugging Face scale convention is detected, with its confidence") {
    io::Checkpoint rec = io::Checkpoint::open(packed_dir() / "hf_packed.safetensors");
    io::Checkpoint abs = io::Checkpoint::open(packed_dir() / "hf_packed_absmean.safetensors");
    const auto* r = rec.find_tensor("model.layers.0.mlp.up_proj.weight");
    const auto* a = abs.find_tensor("model.layers.0.mlp.up_proj.weight");
    REQUIRE(r);
    REQUIRE(a);
    CHECK(r->packed.reciprocal_scale);
    CHECK_FALSE(a->packed.reciprocal_scale);
    // Both read to the same absmean scale, up to the float32 reciprocal the file stores.
    auto vr = io::read_ternary(rec.data(*r), r->name), va = io::read_ternary(abs.data(*a), a->name);
    CHECK(vr.scales[0] == Approx(va.scales[0]).epsilon(1e-6));
    CHECK(vr.codes == va.codes);
    REQUIRE(r->packed.parts.size() == 2);
    CHECK(r->packed.parts[1] == "model.layers.0.mlp.up_proj.weight_scale");
}

TEST_CASE("corrupted and foreign packed files fail with errors that say what and where") {
    const auto errors = test::read_json(packed_dir() / "corrupt" / "errors.json");
    for (auto it = errors.begin(); it != errors.end(); ++it) {
        if (it.value().empty()) continue;
        INFO(it.key());
        const auto path = packed_dir() / "corrupt" / it.key();
        std::string message;
        try {
            io::Checkpoint::open(path);
        } catch (const io::FormatError& e) {
            message = e.what();
        }
        INFO(message);
        REQUIRE_FALSE(message.empty());
        CHECK(message.find(path.string()) == 0);  // names the file
        CHECK(message.find('\n') == std::string::npos);
        for (const auto& want : it.value()) CHECK(message.find(want.get<std::string>()) != std::string::npos);
    }
}

TEST_CASE("a GGUF type 36 that fits neither I2_S nor IQ4_NL_4_4 is listed, undecoded, with the ambiguity noted") {
    io::Checkpoint c = io::Checkpoint::open(packed_dir() / "corrupt" / "type36_ambiguous.gguf");
    REQUIRE(c.tensors().size() == 1);
    const auto& t = c.tensors()[0];
    CHECK(t.encoding == io::TensorEncoding::Opaque);
    CHECK(t.shape == std::vector<std::int64_t>{16, 256});
    CHECK(t.packed.note.find("ambiguous") != std::string::npos);
    CHECK_THROWS_AS(c.data(t), io::FormatError);
    bool noted = false;
    for (const auto& n : c.notes()) noted = noted || n.find("ambiguous") != std::string::npos;
    CHECK(noted);
}

TEST_CASE("bitfsck's packers reproduce the independent packers' bytes") {
    const auto exp = test::read_json(packed_dir() / "i2s.pt.expected.json");
    const std::string name = "model.layers.0.mlp.up_proj.weight";
    const auto codes = parse_codes(exp["tensors"][name]["codes"].get<std::string>());
    const float scale = static_cast<float>(exp["tensors"][name]["scale"].get<double>());
    auto stored = [&](const char* file) {
        io::Checkpoint c = io::Checkpoint::open(packed_dir() / file);
        const auto* t = c.find_tensor(name);
        REQUIRE(t);
        auto b = c.file().bytes(t->packed.offset, t->packed.nbytes);
        return std::vector<std::uint8_t>(reinterpret_cast<const std::uint8_t*>(b.data()),
                                         reinterpret_cast<const std::uint8_t*>(b.data()) + b.size());
    };
    CHECK(io::pack_i2s(codes) == stored("i2s.pt"));
    CHECK(io::pack_i2s(codes) == stored("model.bit2"));
    CHECK(io::pack_hf(codes, 16, 256) == stored("hf_packed.safetensors"));
    const std::vector<float> blocks(codes.size() / 256, scale);
    CHECK(io::pack_tq2_0(codes, blocks) == stored("tq2_0.gguf"));
    CHECK(io::pack_tq1_0(codes, blocks) == stored("tq1_0.gguf"));
}

TEST_CASE("every packed layout decodes what it packs, for random codes of every value") {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> dist(-1, 1);
    std::vector<std::int8_t> codes(4 * 512);
    for (auto& c : codes) c = static_cast<std::int8_t>(dist(rng));
    // TQ1_0 packs 5 trits a byte: the first 32-byte group of the 8 blocks walks all 243 byte values.
    for (int v = 0; v < 243; ++v) {
        int x = v;
        for (int n = 4; n >= 0; --n, x /= 3)
            codes[static_cast<std::size_t>((v / 32) * 256 + v % 32 + n * 32)] = static_cast<std::int8_t>(x % 3 - 1);
    }
    const std::vector<std::int64_t> shape{4, 512};
    const std::vector<float> blocks(codes.size() / 256, 0.5f);
    struct Case {
        io::TensorEncoding e;
        std::vector<std::uint8_t> bytes;
        std::int64_t packed_rows;
    };
    std::vector<Case> cases = {{io::TensorEncoding::I2S, io::pack_i2s(codes), 0},
                               {io::TensorEncoding::HFPacked, io::pack_hf(codes, 4, 512), 1},
                               {io::TensorEncoding::TQ2_0, io::pack_tq2_0(codes, blocks), 0},
                               {io::TensorEncoding::TQ1_0, io::pack_tq1_0(codes, blocks), 0}};
    for (const auto& k : cases) {
        INFO(io::encoding_name(k.e));
        CHECK(k.bytes.size() == io::packed_size(k.e, shape, k.packed_rows, "test"));
        io::PackedSource s;
        s.encoding = k.e;
        s.data = reinterpret_cast<const std::byte*>(k.bytes.data());
        s.nbytes = k.bytes.size();
        s.numel = static_cast<std::int64_t>(codes.size());
        s.cols = 512;
        s.packed_rows = k.packed_rows;
        std::vector<std::int8_t> back(codes.size());
        io::decode_codes(s, 0, s.numel, back.data());
        CHECK(back == codes);
        CHECK_NOTHROW(io::check_codes(s));
        if (io::encoding_has_block_scales(k.e)) CHECK(io::block_scale(s, 300) == 0.5f);
    }
    // A sign plane holds ±1 only.
    std::vector<std::int8_t> signs(codes.size());
    for (std::size_t i = 0; i < signs.size(); ++i) signs[i] = (i * 7919 % 3) ? 1 : -1;
    auto plane = io::pack_sign_plane(signs);
    io::PackedSource s;
    s.encoding = io::TensorEncoding::Bit2Sign;
    s.data = reinterpret_cast<const std::byte*>(plane.data());
    s.nbytes = plane.size();
    s.numel = static_cast<std::int64_t>(signs.size());
    std::vector<std::int8_t> back(signs.size());
    io::decode_codes(s, 0, s.numel, back.data());
    CHECK(back == signs);
    CHECK_THROWS(io::pack_sign_plane(codes));
}

TEST_CASE("TQ1_0 bytes no packer writes are corruption") {
    std::vector<std::int8_t> codes(256, 0);
    auto bytes = io::pack_tq1_0(codes, std::vector<float>{1.0f});
    bytes[3] = 20;  // ceil(v·256/243) is never 20 (nor 1, 40, 60, ...)
    io::PackedSource s;
    s.encoding = io::TensorEncoding::TQ1_0;
    s.data = reinterpret_cast<const std::byte*>(bytes.data());
    s.nbytes = bytes.size();
    s.numel = 256;
    s.cols = 256;
    CHECK_THROWS_WITH(io::check_codes(s), Catch::Contains("element 3") && Catch::Contains("TQ1_0"));
}

TEST_CASE("the absmean quantizer matches the independent one and reports its loss") {
    const auto exp = test::read_json(packed_dir() / "latent.pt.expected.json");
    io::Checkpoint c = io::Checkpoint::open(packed_dir() / "latent.pt");
    for (auto it = exp["tensors"].begin(); it != exp["tensors"].end(); ++it) {
        INFO(it.key());
        const auto* t = c.find_tensor(it.key());
        REQUIRE(t);
        io::TensorData d = c.data(*t);
        std::vector<float> values(static_cast<std::size_t>(d.numel()));
        d.read(0, d.numel(), values.data());
        std::string why;
        CHECK_FALSE(io::exact_ternary(t->name, t->shape, values, &why));
        CHECK(why.find("not ternary") != std::string::npos);
        io::QuantizeLoss loss;
        auto v = io::absmean_quantize(t->name, t->shape, values, &loss);
        CHECK(v.codes == parse_codes(it.value()["codes"].get<std::string>()));
        CHECK(v.scales[0] == static_cast<float>(it.value()["scale"].get<double>()));
        CHECK(loss.relative_l2 == Approx(it.value()["relative_l2"].get<double>()).epsilon(1e-9));
        CHECK(loss.changed == Approx(it.value()["changed"].get<double>()).margin(1e-12));
    }
}
