#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "bitfsck/io/tensor.hpp"
#include "support.hpp"

using namespace bitfsck::io;
using bitfsck::test::TempDir;
using bitfsck::test::write_bytes;
using Catch::Matchers::Contains;

namespace {

float f32(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

template <typename T>
std::vector<std::byte> as_bytes(const std::vector<T>& v) {
    std::vector<std::byte> b(v.size() * sizeof(T));
    if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
    return b;
}

std::vector<double> read_all(const TensorData& t) {
    std::vector<double> out(static_cast<std::size_t>(t.numel()));
    t.read(0, t.numel(), out.data());
    return out;
}

// A file holding `prefix` junk bytes, then float32 storage values 0, 1, 2, ..., then junk.
struct StorageFile {
    TempDir dir;
    std::filesystem::path path;
    static constexpr std::uint64_t kPrefix = 100;
    static constexpr std::int64_t kCount = 24;

    StorageFile() : path(dir / "storage.bin") {
        std::string content(kPrefix, '\x7f');
        for (std::int64_t i = 0; i < kCount; ++i) {
            float v = static_cast<float>(i);
            content.append(reinterpret_cast<const char*>(&v), 4);
        }
        content.append(64, '\x7f');
        write_bytes(path, content);
    }

    TensorEntry entry(std::vector<std::int64_t> shape, std::vector<std::int64_t> stride, std::int64_t offset = 0) const {
        TensorEntry e;
        e.name = "layers.0.weight";
        e.dtype = DType::F32;
        e.shape = std::move(shape);
        e.stride = std::move(stride);
        e.storage_offset = offset;
        e.storage_key = "7";
        e.storage_file_offset = kPrefix;
        e.storage_nbytes = kCount * 4;
        return e;
    }
};

}  // namespace

TEST_CASE("half_to_float decodes known bit patterns") {
    CHECK(half_to_float(0x3c00) == 1.0f);
    CHECK(half_to_float(0xc000) == -2.0f);
    CHECK(half_to_float(0x3555) == f32(0x3eaaa000));  // 0.333251953125
    CHECK(half_to_float(0x7bff) == 65504.0f);
    CHECK(half_to_float(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
    CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(half_to_float(0x03ff) == std::ldexp(1023.0f, -24));  // largest subnormal
    CHECK(bits(half_to_float(0x0000)) == 0x00000000u);
    CHECK(bits(half_to_float(0x8000)) == 0x80000000u);
    CHECK(half_to_float(0x8001) == -std::ldexp(1.0f, -24));
    CHECK(half_to_float(0x7c00) == std::numeric_limits<float>::infinity());
    CHECK(half_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(half_to_float(0x7e00)));
    CHECK(std::isnan(half_to_float(0x7c01)));  // signalling NaN must not become infinity
    CHECK(std::isnan(half_to_float(0xfe00)));
}

TEST_CASE("float_to_half rounds to nearest even") {
    CHECK(float_to_half(1.0f) == 0x3c00);
    CHECK(float_to_half(-2.0f) == 0xc000);
    CHECK(float_to_half(0.0f) == 0x0000);
    CHECK(float_to_half(-0.0f) == 0x8000);
    // Ties between 1 and 1+2^-10: to the even mantissa.
    CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
    CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
    CHECK(float_to_half(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)) == 0x3c01);
    CHECK(float_to_half(std::nextafter(1.0f + 3 * std::ldexp(1.0f, -11), 0.0f)) == 0x3c01);
    // Overflow: 65520 is the tie between 65504 (odd mantissa) and 65536, so it goes to infinity.
    CHECK(float_to_half(65504.0f) == 0x7bff);
    CHECK(float_to_half(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
    CHECK(float_to_half(65520.0f) == 0x7c00);
    CHECK(float_to_half(-1e10f) == 0xfc00);
    CHECK(float_to_half(std::numeric_limits<float>::infinity()) == 0x7c00);
    CHECK(float_to_half(-std::numeric_limits<float>::infinity()) == 0xfc00);
    // Subnormals.
    CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);  // tie with 0: even
    CHECK(float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
    CHECK(float_to_half(3 * std::ldexp(1.0f, -25)) == 0x0002);  // tie between 1 and 2
    CHECK(float_to_half(5 * std::ldexp(1.0f, -25)) == 0x0002);  // tie between 2 and 3
    CHECK(float_to_half(std::ldexp(1023.0f, -24)) == 0x03ff);
    CHECK(float_to_half(std::ldexp(1023.5f, -24)) == 0x0400);  // rounds up into the smallest normal
    CHECK(float_to_half(std::ldexp(1.0f, -30)) == 0x0000);
    CHECK(float_to_half(-std::ldexp(1.0f, -30)) == 0x8000);
    CHECK(float_to_half(std::numeric_limits<float>::denorm_min()) == 0x0000);
    // NaN stays NaN, including signalling NaN whose payload sits in the low bits.
    CHECK((float_to_half(std::numeric_limits<float>::quiet_NaN()) & 0x7fff) > 0x7c00);
    CHECK((float_to_half(f32(0x7f800001)) & 0x7fff) > 0x7c00);
    CHECK((float_to_half(f32(0xff800001)) & 0x8000) == 0x8000);
}

TEST_CASE("half round trips every non-NaN value exactly") {
    for (std::uint32_t h = 0; h <= 0xffff; ++h) {
        const auto hh = static_cast<std::uint16_t>(h);
        const float f = half_to_float(hh);
        if (std::isnan(f)) continue;
        if (float_to_half(f) != hh) FAIL("half 0x" << std::hex << h << " does not round trip");
    }
}

#if defined(__FLT16_MAX__)
TEST_CASE("float_to_half agrees with the compiler's _Float16 conversion") {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<std::uint32_t> any;
    std::uniform_int_distribution<std::uint32_t> near_half_range(0x32000000u, 0x48000000u);
    for (int i = 0; i < 300000; ++i) {
        std::uint32_t b = (i % 2) ? any(rng) : (near_half_range(rng) | (any(rng) & 0x80000000u));
        const float f = f32(b);
        if (std::isnan(f)) continue;
        const auto expected = std::bit_cast<std::uint16_t>(static_cast<_Float16>(f));
        if (float_to_half(f) != expected) FAIL("float bits 0x" << std::hex << b);
    }
}
#endif

TEST_CASE("bfloat16 conversions") {
    CHECK(bfloat16_to_float(0x3f80) == 1.0f);
    CHECK(bfloat16_to_float(0x4049) == 3.140625f);
    CHECK(bfloat16_to_float(0xc2f7) == -123.5f);
    CHECK(bfloat16_to_float(0x0001) == f32(0x00010000));  // subnormal
    CHECK(bfloat16_to_float(0x7f80) == std::numeric_limits<float>::infinity());
    CHECK(std::isnan(bfloat16_to_float(0x7fc0)));

    CHECK(float_to_bfloat16(1.0f) == 0x3f80);
    CHECK(float_to_bfloat16(3.14159265f) == 0x4049);
    CHECK(float_to_bfloat16(f32(0x3f808000)) == 0x3f80);  // tie, even stays
    CHECK(float_to_bfloat16(f32(0x3f818000)) == 0x3f82);  // tie, odd rounds up
    CHECK(float_to_bfloat16(f32(0x3f808001)) == 0x3f81);
    CHECK(float_to_bfloat16(f32(0x3f807fff)) == 0x3f80);
    CHECK(float_to_bfloat16(f32(0x00018000)) == 0x0002);  // subnormal tie, odd rounds up
    CHECK(float_to_bfloat16(-0.0f) == 0x8000);
    CHECK(float_to_bfloat16(std::numeric_limits<float>::max()) == 0x7f80);  // overflow to infinity
    CHECK(float_to_bfloat16(f32(0x7f7f7fff)) == 0x7f7f);
    CHECK(float_to_bfloat16(-std::numeric_limits<float>::infinity()) == 0xff80);
    // A NaN whose payload lies only in the low bits must not truncate to infinity.
    CHECK((float_to_bfloat16(f32(0x7f800001)) & 0x7fff) > 0x7f80);
    CHECK((float_to_bfloat16(f32(0xffc00000)) & 0xffc0) == 0xffc0);
    for (std::uint32_t b = 0; b <= 0xffff; ++b) {
        const float f = bfloat16_to_float(static_cast<std::uint16_t>(b));
        if (!std::isnan(f) && float_to_bfloat16(f) != b) FAIL("bfloat16 0x" << std::hex << b << " does not round trip");
    }
}

TEST_CASE("TensorData converts every readable dtype") {
    SECTION("float8 e4m3fn") {
        std::vector<std::uint8_t> v = {0x38, 0x7e, 0xfe, 0x01, 0x08, 0x80, 0x7f, 0x3c};
        const auto t_bytes = as_bytes(v);
        TensorData t(t_bytes, DType::F8_E4M3, {8});
        auto out = read_all(t);
        CHECK(out[0] == 1.0);
        CHECK(out[1] == 448.0);
        CHECK(out[2] == -448.0);
        CHECK(out[3] == std::ldexp(1.0, -9));
        CHECK(out[4] == std::ldexp(1.0, -6));
        CHECK(out[5] == 0.0);
        CHECK(std::signbit(out[5]));
        CHECK(std::isnan(out[6]));
        CHECK(out[7] == 1.5);
    }
    SECTION("float8 e5m2") {
        std::vector<std::uint8_t> v = {0x3c, 0x7b, 0x7c, 0xfc, 0x7d, 0x01, 0xc2};
        const auto t_bytes = as_bytes(v);
        TensorData t(t_bytes, DType::F8_E5M2, {7});
        auto out = read_all(t);
        CHECK(out[0] == 1.0);
        CHECK(out[1] == 57344.0);
        CHECK(out[2] == std::numeric_limits<double>::infinity());
        CHECK(out[3] == -std::numeric_limits<double>::infinity());
        CHECK(std::isnan(out[4]));
        CHECK(out[5] == std::ldexp(1.0, -16));
        CHECK(out[6] == -3.0);
    }
    SECTION("half and bfloat16") {
        std::vector<std::uint16_t> h = {0x3c00, 0xbc00, 0x0001, 0x7c00};
        auto out = read_all(TensorData(as_bytes(h), DType::F16, {2, 2}));
        CHECK(out == std::vector<double>{1.0, -1.0, std::ldexp(1.0, -24), std::numeric_limits<double>::infinity()});
        std::vector<std::uint16_t> b = {0x3f80, 0x4049, 0xc2f7};
        out = read_all(TensorData(as_bytes(b), DType::BF16, {3}));
        CHECK(out == std::vector<double>{1.0, 3.140625, -123.5});
    }
    SECTION("integers are exact") {
        std::vector<std::int64_t> i64 = {std::int64_t(1) << 53, -1, -(std::int64_t(1) << 40)};
        CHECK(read_all(TensorData(as_bytes(i64), DType::I64, {3})) ==
              std::vector<double>{9007199254740992.0, -1.0, -1099511627776.0});
        std::vector<std::int32_t> i32 = {std::numeric_limits<std::int32_t>::min(), 7};
        CHECK(read_all(TensorData(as_bytes(i32), DType::I32, {2})) == std::vector<double>{-2147483648.0, 7.0});
        std::vector<std::int16_t> i16 = {-32768, 32767};
        CHECK(read_all(TensorData(as_bytes(i16), DType::I16, {2})) == std::vector<double>{-32768.0, 32767.0});
        std::vector<std::int8_t> i8 = {-128, -1, 127};
        CHECK(read_all(TensorData(as_bytes(i8), DType::I8, {3})) == std::vector<double>{-128.0, -1.0, 127.0});
        std::vector<std::uint8_t> u8 = {0, 255};
        CHECK(read_all(TensorData(as_bytes(u8), DType::U8, {2})) == std::vector<double>{0.0, 255.0});
        std::vector<std::uint16_t> u16 = {65535};
        CHECK(read_all(TensorData(as_bytes(u16), DType::U16, {1})) == std::vector<double>{65535.0});
        std::vector<std::uint32_t> u32 = {4294967295u};
        CHECK(read_all(TensorData(as_bytes(u32), DType::U32, {1})) == std::vector<double>{4294967295.0});
        std::vector<std::uint64_t> u64 = {std::numeric_limits<std::uint64_t>::max(), 3};
        CHECK(read_all(TensorData(as_bytes(u64), DType::U64, {2})) == std::vector<double>{18446744073709551615.0, 3.0});
    }
    SECTION("bool reads as 0 and 1") {
        std::vector<std::uint8_t> v = {0, 1, 2, 0};
        CHECK(read_all(TensorData(as_bytes(v), DType::Bool, {4})) == std::vector<double>{0.0, 1.0, 1.0, 0.0});
    }
    SECTION("float64 to float32 and back") {
        std::vector<double> d = {0.1, -2.5, 1e300};
        const auto t_bytes = as_bytes(d);
        TensorData t(t_bytes, DType::F64, {3});
        CHECK(read_all(t) == d);
        std::vector<float> f(3);
        t.read(0, 3, f.data());
        CHECK(f[0] == 0.1f);
        CHECK(f[1] == -2.5f);
        CHECK(std::isinf(f[2]));
        std::vector<std::int64_t> big = {(std::int64_t(1) << 24) + 1};
        float g = 0;
        TensorData(as_bytes(big), DType::I64, {1}).read(0, 1, &g);
        CHECK(g == 16777216.0f);
    }
    SECTION("complex is refused") {
        std::vector<float> c = {1, 2, 3, 4};
        const auto t_bytes = as_bytes(c);
        TensorData t(t_bytes, DType::C64, {2});
        double out[2];
        CHECK_THROWS_AS(t.read(0, 2, out), FormatError);
        CHECK_THROWS_WITH(t.read(0, 2, out), Contains("complex tensors are not supported for reading values"));
    }
}

TEST_CASE("TensorData in memory checks its buffer and ranges") {
    std::vector<float> v = {1, 2, 3, 4, 5, 6};
    CHECK_THROWS_AS(TensorData(as_bytes(v), DType::F32, {2, 4}), FormatError);
    CHECK_THROWS_AS(TensorData(as_bytes(v), DType::F32, {-1, 2}), FormatError);
    const auto t_bytes = as_bytes(v);
    TensorData t(t_bytes, DType::F32, {2, 3});
    CHECK(t.numel() == 6);
    CHECK(t.rows() == 2);
    CHECK(t.cols() == 3);
    double out[6];
    t.read(4, 2, out);
    CHECK(out[0] == 5.0);
    CHECK(out[1] == 6.0);
    t.read(6, 0, out);
    CHECK_THROWS_AS(t.read(5, 2, out), FormatError);
    CHECK_THROWS_AS(t.read(-1, 1, out), FormatError);
    CHECK_THROWS_AS(t.read(std::numeric_limits<std::int64_t>::max(), 2, out), FormatError);
    t.release();
}

TEST_CASE("TensorData rows and cols") {
    std::vector<float> v(24);
    CHECK(TensorData(as_bytes(v), DType::F32, {}).rows() == 1);
    CHECK(TensorData(as_bytes(v), DType::F32, {}).cols() == 1);
    CHECK(TensorData(as_bytes(v), DType::F32, {}).numel() == 1);
    CHECK(TensorData(as_bytes(v), DType::F32, {5}).rows() == 5);
    CHECK(TensorData(as_bytes(v), DType::F32, {5}).cols() == 1);
    CHECK(TensorData(as_bytes(v), DType::F32, {2, 3, 4}).rows() == 2);
    CHECK(TensorData(as_bytes(v), DType::F32, {2, 3, 4}).cols() == 12);
    CHECK(TensorData(as_bytes(v), DType::F32, {0, 4}).rows() == 0);
    CHECK(TensorData(as_bytes(v), DType::F32, {0, 4}).cols() == 4);
    CHECK(TensorData(as_bytes(v), DType::F32, {0, 4}).numel() == 0);
}

TEST_CASE("TensorEntry numel, nbytes and contiguity") {
    TensorEntry e;
    e.dtype = DType::BF16;
    e.shape = {3, 4};
    e.stride = {4, 1};
    CHECK(e.numel() == 12);
    CHECK(e.nbytes() == 24);
    CHECK(e.is_contiguous());
    e.stride = {1, 3};
    CHECK_FALSE(e.is_contiguous());
    e.shape = {1, 4};
    e.stride = {99, 1};  // the stride of a size-1 dimension does not matter
    CHECK(e.is_contiguous());
    e.shape = {3, 4};
    e.stride = {};
    CHECK(e.is_contiguous());
    e.stride = {4};
    CHECK_FALSE(e.is_contiguous());
    e.shape = {};
    e.stride = {};
    CHECK(e.numel() == 1);
    e.shape = {std::int64_t(1) << 62, 8};
    CHECK_THROWS_AS(e.numel(), FormatError);
}

TEST_CASE("TensorData reads strided and offset tensors from a file") {
    StorageFile sf;
    MappedFile file(sf.path);

    SECTION("contiguous with an offset") {
        TensorData t(file, sf.entry({2, 3}, {3, 1}, 5));
        CHECK(read_all(t) == std::vector<double>{5, 6, 7, 8, 9, 10});
        float f[3];
        t.read(2, 3, f);
        CHECK(f[0] == 7.0f);
        CHECK(f[2] == 9.0f);
    }
    SECTION("a transposed view") {
        // The transpose of a 4x3 row-major matrix: element [i][j] is storage[i + 3j].
        TensorData t(file, sf.entry({3, 4}, {1, 3}));
        CHECK(read_all(t) == std::vector<double>{0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11});
        double part[5];
        t.read(3, 5, part);  // starts mid-row and crosses a row boundary
        CHECK(std::vector<double>(part, part + 5) == std::vector<double>{9, 1, 4, 7, 10});
        float fpart[2];
        t.read(10, 2, fpart);
        CHECK(fpart[0] == 8.0f);
        CHECK(fpart[1] == 11.0f);
    }
    SECTION("strides with gaps and an offset in 3 dimensions") {
        TensorData t(file, sf.entry({2, 2, 2}, {12, 4, 2}, 1));
        CHECK(read_all(t) == std::vector<double>{1, 3, 5, 7, 13, 15, 17, 19});
        double tail[3];
        t.read(5, 3, tail);
        CHECK(std::vector<double>(tail, tail + 3) == std::vector<double>{15, 17, 19});
    }
    SECTION("broadcast (zero stride)") {
        TensorData t(file, sf.entry({3, 2}, {0, 1}, 22));
        CHECK(read_all(t) == std::vector<double>{22, 23, 22, 23, 22, 23});
    }
    SECTION("a scalar") {
        TensorData t(file, sf.entry({}, {}, 23));
        CHECK(t.numel() == 1);
        CHECK(read_all(t) == std::vector<double>{23});
    }
    SECTION("an empty tensor") {
        TensorData t(file, sf.entry({0, 4}, {4, 1}, 24));
        CHECK(t.numel() == 0);
        t.read(0, 0, static_cast<double*>(nullptr));
        double x;
        CHECK_THROWS_AS(t.read(0, 1, &x), FormatError);
    }
    SECTION("release keeps it readable") {
        TensorData t(file, sf.entry({4, 6}, {6, 1}));
        t.release();
        auto all = read_all(t);
        CHECK(all.front() == 0.0);
        CHECK(all.back() == 23.0);
    }
}

TEST_CASE("TensorData refuses tensors that reach past their storage") {
    StorageFile sf;
    MappedFile file(sf.path);
    const std::string name = sf.path.string();

    CHECK_THROWS_AS(TensorData(file, sf.entry({5, 5}, {5, 1})), FormatError);
    CHECK_THROWS_WITH(TensorData(file, sf.entry({5, 5}, {5, 1})),
                      Contains(name) && Contains("tensor 'layers.0.weight' needs 100 bytes but its storage '7' holds 96"));
    // One element past the end through the offset alone.
    CHECK_THROWS_WITH(TensorData(file, sf.entry({4, 6}, {6, 1}, 1)), Contains("needs 100 bytes"));
    // Through a stride.
    CHECK_THROWS_AS(TensorData(file, sf.entry({2, 2}, {23, 1})), FormatError);
    CHECK_NOTHROW(TensorData(file, sf.entry({2, 2}, {22, 1})));
    // Negative strides and offsets do not exist in torch.
    CHECK_THROWS_WITH(TensorData(file, sf.entry({2, 2}, {-1, 1}, 10)), Contains(name) && Contains("negative stride"));
    CHECK_THROWS_AS(TensorData(file, sf.entry({2}, {1}, -1)), FormatError);
    // Sizes that overflow 64 bits are errors, not wrap-arounds.
    CHECK_THROWS_AS(TensorData(file, sf.entry({std::int64_t(1) << 62, 4}, {4, 1})), FormatError);
    CHECK_THROWS_AS(TensorData(file, sf.entry({3, 2}, {std::int64_t(1) << 62, 1})), FormatError);
    CHECK_THROWS_AS(TensorData(file, sf.entry({2}, {1}, std::numeric_limits<std::int64_t>::max())), FormatError);
    // Rank mismatch between shape and stride.
    CHECK_THROWS_AS(TensorData(file, sf.entry({2, 2}, {1})), FormatError);
    // The storage itself must be inside the file.
    auto e = sf.entry({2}, {1});
    e.storage_file_offset = file.size() - 4;
    e.storage_nbytes = 8;
    CHECK_THROWS_WITH(TensorData(file, e), Contains(name) && Contains("runs past the end of the file"));
    e.storage_file_offset = std::numeric_limits<std::uint64_t>::max() - 2;
    CHECK_THROWS_AS(TensorData(file, e), FormatError);
}
