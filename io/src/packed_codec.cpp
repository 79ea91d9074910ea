// Packed ternary layouts: byte sizes, decoding, code checks and packers. Layouts follow the
// exporters that write them (docs/formats.md): Distillix i2s, Hugging Face BitNet, ggml
// TQ1_0/TQ2_0/Q8_0 (ggml-quants.c), bitnet.cpp I2_S (ggml-bitnet-mad.cpp, x86 block of 128).
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/text.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "bitfsck/io/error.hpp"

namespace bitfsck::io {

std::string_view i2s_layout_name(I2sLayout l) {
    switch (l) {
        case I2sLayout::ActParallel: return "act-parallel";
        case I2sLayout::Interleaved: return "interleaved";
        case I2sLayout::Arm: return "arm";
    }
    return "act-parallel";
}

std::optional<I2sLayout> parse_i2s_layout(std::string_view name) {
    for (I2sLayout l : {I2sLayout::ActParallel, I2sLayout::Interleaved, I2sLayout::Arm})
        if (name == i2s_layout_name(l)) return l;
    return std::nullopt;
}

std::string_view encoding_name(TensorEncoding e) {
    switch (e) {
        case TensorEncoding::Plain: return "plain";
        case TensorEncoding::I2S: return "i2s";
        case TensorEncoding::HFPacked: return "hf_packed";
        case TensorEncoding::TQ1_0: return "TQ1_0";
        case TensorEncoding::TQ2_0: return "TQ2_0";
        case TensorEncoding::I2S_GGUF: return "I2_S";
        case TensorEncoding::Q8_0: return "Q8_0";
        case TensorEncoding::Bit2Sign: return "bit2_sign";
        case TensorEncoding::Bit2Ternary: return "bit2_ternary";
        case TensorEncoding::Opaque: return "opaque";
    }
    return "unknown";
}

bool encoding_is_ternary(TensorEncoding e) {
    switch (e) {
        case TensorEncoding::I2S:
        case TensorEncoding::HFPacked:
        case TensorEncoding::TQ1_0:
        case TensorEncoding::TQ2_0:
        case TensorEncoding::I2S_GGUF:
        case TensorEncoding::Bit2Sign:
        case TensorEncoding::Bit2Ternary: return true;
        default: return false;
    }
}

bool encoding_has_block_scales(TensorEncoding e) {
    return e == TensorEncoding::TQ1_0 || e == TensorEncoding::TQ2_0 || e == TensorEncoding::Q8_0 ||
           e == TensorEncoding::I2S_GGUF;
}

namespace {

std::int64_t product(const std::vector<std::int64_t>& shape, std::size_t from, const std::string& where) {
    std::int64_t n = 1;
    for (std::size_t i = from; i < shape.size(); ++i) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n))
            throw FormatError(where, "invalid shape " + shape_text(shape));
    }
    return n;
}

std::uint8_t byte_at(const PackedSource& s, std::uint64_t i) { return std::to_integer<std::uint8_t>(s.data[i]); }

float half_at(const PackedSource& s, std::uint64_t i) {
    std::uint16_t h;
    std::memcpy(&h, s.data + i, 2);
    return half_to_float(h);
}

[[noreturn]] void bad_code(const PackedSource& s, std::int64_t element, std::uint64_t byte, const std::string& what) {
    throw FormatError(s.where, what + " at element " + std::to_string(element) + " (packed byte " + std::to_string(byte) +
                                   "): impossible in " + std::string(encoding_name(s.encoding)) + ", the data is corrupted");
}

// TQ1_0 stores 5 (or 4, then ×3) trits per byte as ceil(value·256/243); only these bytes occur.
struct Tq1Tables {
    std::array<bool, 256> qs_ok{}, qh_ok{};
    Tq1Tables() {
        for (unsigned v = 0; v < 243; ++v) qs_ok[(v * 256 + 242) / 243] = true;
        for (unsigned v = 0; v < 81; ++v) qh_ok[(v * 3 * 256 + 242) / 243] = true;
    }
};
const Tq1Tables& tq1_tables() {
    static const Tq1Tables t;
    return t;
}

constexpr std::array<std::uint8_t, 5> kPow3 = {1, 3, 9, 27, 81};

int tq1_trit(std::uint8_t b, int n) {
    const auto q = static_cast<std::uint8_t>(b * kPow3[static_cast<std::size_t>(n)]);
    return (static_cast<std::uint16_t>(q) * 3) >> 8;
}

// Byte index within a TQ1_0 block and trit position for element k of the block.
void tq1_position(std::int64_t k, std::int64_t& byte, int& trit, bool& in_qh) {
    if (k < 160) {
        byte = k % 32, trit = static_cast<int>(k / 32), in_qh = false;
    } else if (k < 240) {
        byte = 32 + (k - 160) % 16, trit = static_cast<int>((k - 160) / 16), in_qh = false;
    } else {
        byte = 48 + (k - 240) % 4, trit = static_cast<int>((k - 240) / 4), in_qh = true;
    }
}

// Code 3 anywhere in a byte of four 2-bit codes.
const std::array<bool, 256>& code3_table() {
    static const auto t = [] {
        std::array<bool, 256> a{};
        for (unsigned b = 0; b < 256; ++b)
            a[b] = (b & 3) == 3 || ((b >> 2) & 3) == 3 || ((b >> 4) & 3) == 3 || ((b >> 6) & 3) == 3;
        return a;
    }();
    return t;
}

}  // namespace

std::uint64_t packed_size(TensorEncoding e, const std::vector<std::int64_t>& shape, std::int64_t packed_rows,
                          const std::string& where, I2sLayout i2s_layout) {
    const std::int64_t numel = product(shape, 0, where);
    const std::int64_t cols = shape.empty() ? 1 : product(shape, 1, where);
    auto need_blocks = [&](std::int64_t block, const char* type) {
        // ggml quantizes whole rows: the innermost dimension is a multiple of the block.
        const std::int64_t inner = shape.empty() ? 1 : shape.back();
        if (inner % block != 0)
            throw FormatError(where, std::string(type) + " needs rows of a multiple of " + std::to_string(block) +
                                         " elements, shape is " + shape_text(shape));
        return static_cast<std::uint64_t>(numel / block);
    };
    switch (e) {
        case TensorEncoding::I2S:
        case TensorEncoding::Bit2Ternary: return static_cast<std::uint64_t>((numel + 3) / 4);
        case TensorEncoding::Bit2Sign: return static_cast<std::uint64_t>((numel + 7) / 8);
        case TensorEncoding::HFPacked: {
            const std::int64_t rows = shape.empty() ? 1 : shape[0];
            if (packed_rows <= 0 || rows != 4 * packed_rows)
                throw FormatError(where, "Hugging Face packed weight of " + std::to_string(packed_rows) +
                                             " stored rows cannot hold shape " + shape_text(shape));
            return static_cast<std::uint64_t>(packed_rows * cols);
        }
        case TensorEncoding::TQ1_0: return need_blocks(kGgmlBlockK, "TQ1_0") * kTq1BlockBytes;
        case TensorEncoding::TQ2_0: return need_blocks(kGgmlBlockK, "TQ2_0") * kTq2BlockBytes;
        case TensorEncoding::Q8_0: return need_blocks(kQ8Block, "Q8_0") * kQ8BlockBytes;
        case TensorEncoding::I2S_GGUF: {
            const std::int64_t rows = shape.empty() ? 1 : shape[0];
            switch (i2s_layout) {
                case I2sLayout::ActParallel:
                    if (numel % kI2sGgufBlock != 0)
                        throw FormatError(where, "I2_S (act-parallel layout) needs a multiple of 128 elements, shape is " + shape_text(shape));
                    break;
                case I2sLayout::Arm:
                    if (numel % 64 != 0)
                        throw FormatError(where, "I2_S (arm layout) needs a multiple of 64 elements, shape is " + shape_text(shape));
                    break;
                case I2sLayout::Interleaved:
                    if (rows % 4 != 0)
                        throw FormatError(where, "I2_S (interleaved layout) needs a multiple of 4 rows, shape is " + shape_text(shape));
                    break;
            }
            return static_cast<std::uint64_t>(numel / 4 + kI2sGgufTail);
        }
        case TensorEncoding::Plain:
        case TensorEncoding::Opaque: break;
    }
    throw FormatError(where, "no packed size for encoding " + std::string(encoding_name(e)));
}

void decode_codes(const PackedSource& s, std::int64_t first, std::int64_t count, std::int8_t* out) {
    const std::int64_t end = first + count;
    switch (s.encoding) {
        case TensorEncoding::I2S:
        case TensorEncoding::Bit2Ternary:
            for (std::int64_t i = first; i < end; ++i) {
                const unsigned c = (byte_at(s, static_cast<std::uint64_t>(i >> 2)) >> (6 - 2 * (i & 3))) & 3u;
                if (c == 3) bad_code(s, i, static_cast<std::uint64_t>(i >> 2), "2-bit code 3");
                *out++ = static_cast<std::int8_t>(int(c) - 1);
            }
            return;
        case TensorEncoding::Bit2Sign:
            for (std::int64_t i = first; i < end; ++i)
                *out++ = ((byte_at(s, static_cast<std::uint64_t>(i >> 3)) >> (7 - (i & 7))) & 1u) ? 1 : -1;
            return;
        case TensorEncoding::HFPacked: {
            const std::int64_t R = s.packed_rows;
            for (std::int64_t i = first; i < end; ++i) {
                const std::int64_t row = i / s.cols, col = i % s.cols;
                const std::int64_t block = row / R, r = row % R;
                const auto at = static_cast<std::uint64_t>(r * s.cols + col);
                const unsigned c = (byte_at(s, at) >> (2 * block)) & 3u;
                if (c == 3) bad_code(s, i, at, "2-bit code 3");
                *out++ = static_cast<std::int8_t>(int(c) - 1);
            }
            return;
        }
        case TensorEncoding::TQ2_0:
            for (std::int64_t i = first; i < end; ++i) {
                const std::int64_t k = i % kGgmlBlockK;
                const auto at = static_cast<std::uint64_t>((i / kGgmlBlockK) * kTq2BlockBytes + (k / 128) * 32 + k % 32);
                const unsigned c = (byte_at(s, at) >> (2 * ((k % 128) / 32))) & 3u;
                if (c == 3) bad_code(s, i, at, "2-bit code 3");
                *out++ = static_cast<std::int8_t>(int(c) - 1);
            }
            return;
        case TensorEncoding::TQ1_0: {
            const auto& tables = tq1_tables();
            for (std::int64_t i = first; i < end; ++i) {
                std::int64_t byte;
                int trit;
                bool in_qh;
                tq1_position(i % kGgmlBlockK, byte, trit, in_qh);
                const auto at = static_cast<std::uint64_t>((i / kGgmlBlockK) * kTq1BlockBytes + byte);
                const std::uint8_t b = byte_at(s, at);
                if (!(in_qh ? tables.qh_ok : tables.qs_ok)[b])
                    bad_code(s, i, at, "byte " + std::to_string(b) + ", which no TQ1_0 packing produces,");
                *out++ = static_cast<std::int8_t>(tq1_trit(b, trit) - 1);
            }
            return;
        }
        case TensorEncoding::I2S_GGUF:
            for (std::int64_t i = first; i < end; ++i) {
                std::uint64_t at;
                int shift;
                switch (s.i2s_layout) {
                    case I2sLayout::ActParallel: {
                        const std::int64_t j = i % kI2sGgufBlock;
                        at = static_cast<std::uint64_t>((i / kI2sGgufBlock) * 32 + j % 32);
                        shift = 6 - 2 * static_cast<int>(j / 32);
                        break;
                    }
                    case I2sLayout::Arm: {
                        const std::int64_t j = i % 64;
                        at = static_cast<std::uint64_t>((i / 64) * 16 + j % 16);
                        shift = 6 - 2 * static_cast<int>(j / 16);
                        break;
                    }
                    default: {  // Interleaved
                        const std::int64_t r = i / s.cols, k = i % s.cols;
                        at = static_cast<std::uint64_t>((r / 4) * s.cols + k);
                        shift = 6 - 2 * static_cast<int>(r % 4);
                        break;
                    }
                }
                const unsigned c = (byte_at(s, at) >> shift) & 3u;
                if (c == 3) bad_code(s, i, at, "2-bit code 3");
                *out++ = static_cast<std::int8_t>(int(c) - 1);
            }
            return;
        case TensorEncoding::Q8_0:
            for (std::int64_t i = first; i < end; ++i)
                *out++ = static_cast<std::int8_t>(
                    byte_at(s, static_cast<std::uint64_t>((i / kQ8Block) * kQ8BlockBytes + 2 + i % kQ8Block)));
            return;
        case TensorEncoding::Plain:
        case TensorEncoding::Opaque: break;
    }
    throw FormatError(s.where, "has no decodable codes (encoding " + std::string(encoding_name(s.encoding)) + ")");
}

float block_scale(const PackedSource& s, std::int64_t i) {
    switch (s.encoding) {
        case TensorEncoding::TQ1_0: return half_at(s, static_cast<std::uint64_t>((i / kGgmlBlockK) * kTq1BlockBytes + 52));
        case TensorEncoding::TQ2_0: return half_at(s, static_cast<std::uint64_t>((i / kGgmlBlockK) * kTq2BlockBytes + 64));
        case TensorEncoding::Q8_0: return half_at(s, static_cast<std::uint64_t>((i / kQ8Block) * kQ8BlockBytes));
        case TensorEncoding::I2S_GGUF: {
            float f;
            std::memcpy(&f, s.data + s.numel / 4, 4);
            return f;
        }
        default: return 0.0f;
    }
}

void check_codes(const PackedSource& s) {
    const auto& bad = code3_table();
    bool suspicious = false;
    auto scan = [&](std::uint64_t from, std::uint64_t n) {
        for (std::uint64_t i = from; i < from + n && !suspicious; ++i) suspicious = bad[byte_at(s, i)];
    };
    switch (s.encoding) {
        case TensorEncoding::I2S:
        case TensorEncoding::Bit2Ternary:
        case TensorEncoding::HFPacked: scan(0, s.nbytes); break;
        case TensorEncoding::I2S_GGUF: scan(0, static_cast<std::uint64_t>(s.numel / 4)); break;
        case TensorEncoding::TQ2_0:
            for (std::int64_t b = 0; b < s.numel / kGgmlBlockK && !suspicious; ++b)
                scan(static_cast<std::uint64_t>(b * kTq2BlockBytes), 64);
            break;
        case TensorEncoding::TQ1_0: {
            const auto& t = tq1_tables();
            for (std::int64_t b = 0; b < s.numel / kGgmlBlockK && !suspicious; ++b)
                for (std::int64_t k = 0; k < 52; ++k)
                    if (!(k < 48 ? t.qs_ok : t.qh_ok)[byte_at(s, static_cast<std::uint64_t>(b * kTq1BlockBytes + k))])
                        suspicious = true;
            break;
        }
        default: return;
    }
    if (!suspicious) return;
    // Padding codes of I2S may hold a 3 past the last element; decoding the real elements tells
    // where the corruption is, or that it was only in the padding.
    std::array<std::int8_t, 4096> buf;
    for (std::int64_t i = 0; i < s.numel; i += static_cast<std::int64_t>(buf.size()))
        decode_codes(s, i, std::min<std::int64_t>(static_cast<std::int64_t>(buf.size()), s.numel - i), buf.data());
    if (s.encoding == TensorEncoding::I2S || s.encoding == TensorEncoding::Bit2Ternary)
        throw FormatError(s.where, "2-bit code 3 in the padding after the last element (packed byte " +
                                       std::to_string(s.nbytes - 1) + "): the data is corrupted");
}

// ---------------------------------------------------------------------------------------------
// Packers
// ---------------------------------------------------------------------------------------------

namespace {
unsigned code_bits(std::int8_t c) {
    if (c < -1 || c > 1) throw Error("cannot pack code " + std::to_string(int(c)) + ": ternary codes are -1, 0, +1");
    return static_cast<unsigned>(c + 1);
}
}  // namespace

std::vector<std::uint8_t> pack_i2s(std::span<const std::int8_t> codes) {
    // Padding elements get code 1 (zero), as the Distillix exporter writes them.
    std::vector<std::uint8_t> out((codes.size() + 3) / 4, 0x55);
    for (std::size_t i = 0; i < codes.size(); ++i) {
        const unsigned shift = 6 - 2 * (i & 3);
        out[i >> 2] = static_cast<std::uint8_t>((out[i >> 2] & ~(3u << shift)) | (code_bits(codes[i]) << shift));
    }
    return out;
}

std::vector<std::uint8_t> pack_hf(std::span<const std::int8_t> codes, std::int64_t rows, std::int64_t cols) {
    if (rows % 4 != 0) throw Error("Hugging Face packing needs a multiple of 4 rows, got " + std::to_string(rows));
    const std::int64_t R = rows / 4;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(R * cols), 0);
    for (std::int64_t row = 0; row < rows; ++row)
        for (std::int64_t c = 0; c < cols; ++c)
            out[static_cast<std::size_t>((row % R) * cols + c)] |=
                static_cast<std::uint8_t>(code_bits(codes[static_cast<std::size_t>(row * cols + c)]) << (2 * (row / R)));
    return out;
}

std::vector<std::uint8_t> pack_sign_plane(std::span<const std::int8_t> codes) {
    std::vector<std::uint8_t> out((codes.size() + 7) / 8, 0);
    for (std::size_t i = 0; i < codes.size(); ++i) {
        if (codes[i] != 1 && codes[i] != -1) throw Error("a sign plane holds only ±1 codes, got 0 at element " + std::to_string(i));
        if (codes[i] == 1) out[i >> 3] |= static_cast<std::uint8_t>(0x80u >> (i & 7));
    }
    return out;
}

namespace {
void put_half(std::uint8_t* p, float f) {
    const std::uint16_t h = float_to_half(f);
    std::memcpy(p, &h, 2);
}
void check_blocks(std::span<const std::int8_t> codes, std::span<const float> scales, const char* type) {
    if (codes.size() % kGgmlBlockK != 0 || scales.size() != codes.size() / kGgmlBlockK)
        throw Error(std::string(type) + " packing needs whole 256-element blocks and one scale per block");
}
}  // namespace

std::vector<std::uint8_t> pack_tq2_0(std::span<const std::int8_t> codes, std::span<const float> scales) {
    check_blocks(codes, scales, "TQ2_0");
    std::vector<std::uint8_t> out(codes.size() / kGgmlBlockK * kTq2BlockBytes, 0);
    for (std::size_t b = 0; b < scales.size(); ++b) {
        std::uint8_t* blk = out.data() + b * kTq2BlockBytes;
        const std::int8_t* x = codes.data() + b * kGgmlBlockK;
        for (std::int64_t k = 0; k < kGgmlBlockK; ++k)
            blk[(k / 128) * 32 + k % 32] |= static_cast<std::uint8_t>(code_bits(x[k]) << (2 * ((k % 128) / 32)));
        put_half(blk + 64, scales[b]);
    }
    return out;
}

std::vector<std::uint8_t> pack_tq1_0(std::span<const std::int8_t> codes, std::span<const float> scales) {
    check_blocks(codes, scales, "TQ1_0");
    std::vector<std::uint8_t> out(codes.size() / kGgmlBlockK * kTq1BlockBytes, 0);
    for (std::size_t b = 0; b < scales.size(); ++b) {
        std::uint8_t* blk = out.data() + b * kTq1BlockBytes;
        const std::int8_t* x = codes.data() + b * kGgmlBlockK;
        // Base-3 value of the byte's trits, first trit most significant, then ceil(v·256/243).
        std::array<unsigned, 52> value{};
        for (std::int64_t k = 0; k < kGgmlBlockK; ++k) {
            std::int64_t byte;
            int trit;
            bool in_qh;
            tq1_position(k, byte, trit, in_qh);
            (void)trit, (void)in_qh;
            value[static_cast<std::size_t>(byte)] = value[static_cast<std::size_t>(byte)] * 3 + code_bits(x[k]);
        }
        for (std::size_t j = 0; j < 52; ++j) {
            unsigned v = value[j];
            if (j >= 48) v *= 3;  // qh holds 4 trits: the fifth (least significant) is 0
            blk[j] = static_cast<std::uint8_t>((v * 256 + 242) / 243);
        }
        put_half(blk + 52, scales[b]);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// The ternary view
// ---------------------------------------------------------------------------------------------

std::int64_t TernaryTensor::cols() const {
    std::int64_t c = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) c *= shape[i];
    return c;
}

std::array<double, 3> TernaryTensor::fractions() const {
    std::array<std::int64_t, 3> n{};
    for (auto c : codes) ++n[static_cast<std::size_t>(c + 1)];
    const double total = codes.empty() ? 1.0 : static_cast<double>(codes.size());
    return {n[0] / total, n[1] / total, n[2] / total};
}

void collapse_scales(TernaryTensor& t) {
    const std::int64_t n = t.numel();
    if (t.scales.size() <= 1 || t.scale_group <= 0) {
        if (t.scales.size() == 1) t.scale_group = std::max<std::int64_t>(n, 1);
        return;
    }
    const std::int64_t G = t.scale_group;
    std::vector<bool> informative(t.scales.size(), false);
    for (std::int64_t i = 0; i < n; ++i)
        if (t.codes[static_cast<std::size_t>(i)] != 0) informative[static_cast<std::size_t>(i / G)] = true;
    auto agree = [&](std::int64_t g_first, std::int64_t g_end, float& value) {
        bool seen = false;
        for (std::int64_t g = g_first; g < g_end; ++g) {
            if (!informative[static_cast<std::size_t>(g)]) continue;
            const float s = t.scales[static_cast<std::size_t>(g)];
            if (!seen) value = s, seen = true;
            else if (std::memcmp(&s, &value, sizeof s) != 0) return false;
        }
        if (!seen) value = t.scales[static_cast<std::size_t>(g_first)];
        return true;
    };
    float s;
    if (agree(0, static_cast<std::int64_t>(t.scales.size()), s)) {
        t.scales = {s};
        t.scale_group = std::max<std::int64_t>(n, 1);
        return;
    }
    const std::int64_t cols = t.cols();
    if (cols <= G || cols % G != 0 || cols == n) return;
    const std::int64_t per_row = cols / G;
    std::vector<float> rows(static_cast<std::size_t>(t.rows()));
    for (std::int64_t r = 0; r < t.rows(); ++r)
        if (!agree(r * per_row, (r + 1) * per_row, rows[static_cast<std::size_t>(r)])) return;
    t.scales = std::move(rows);
    t.scale_group = cols;
}

TernaryTensor read_ternary(const TensorData& data, const std::string& name) {
    TernaryTensor t;
    t.name = name;
    t.shape = data.shape();
    const std::int64_t n = data.numel();
    t.codes.resize(static_cast<std::size_t>(n));
    data.read_codes(0, n, t.codes.data());
    std::vector<float> per(static_cast<std::size_t>(n));
    data.read_scales(0, n, per.data());
    // Start from one scale per element group of the smallest natural size, then collapse.
    std::int64_t G = 1;
    switch (data.encoding()) {
        case TensorEncoding::TQ1_0:
        case TensorEncoding::TQ2_0: G = kGgmlBlockK; break;
        default: G = std::max<std::int64_t>(data.cols(), 1); break;
    }
    if (n == 0) G = 1;
    t.scale_group = G;
    for (std::int64_t i = 0; i < n; i += G) t.scales.push_back(per[static_cast<std::size_t>(i)]);
    if (t.scales.empty()) t.scales.push_back(0.0f);
    collapse_scales(t);
    return t;
}

std::optional<TernaryTensor> exact_ternary(const std::string& name, const std::vector<std::int64_t>& shape,
                                           std::span<const float> values, std::string* why) {
    TernaryTensor t;
    t.name = name;
    t.shape = shape;
    const auto n = static_cast<std::int64_t>(values.size());
    const std::int64_t cols = std::max<std::int64_t>(t.cols(), 1);
    const std::int64_t rows = shape.empty() ? 1 : shape[0];
    t.codes.resize(values.size());
    // One magnitude per row; then see whether all rows share it.
    std::vector<float> row_scale(static_cast<std::size_t>(std::max<std::int64_t>(rows, 1)), 0.0f);
    for (std::int64_t i = 0; i < n; ++i) {
        const float v = values[static_cast<std::size_t>(i)];
        if (!std::isfinite(v)) {
            if (why) *why = "holds a non-finite value at element " + std::to_string(i);
            return std::nullopt;
        }
        if (v == 0.0f) {
            t.codes[static_cast<std::size_t>(i)] = 0;
            continue;
        }
        float& s = row_scale[static_cast<std::size_t>(i / cols)];
        const float a = std::fabs(v);
        if (s == 0.0f) s = a;
        else if (a != s) {
            if (why) *why = "is not ternary: row " + std::to_string(i / cols) + " holds magnitudes " + std::to_string(s) +
                            " and " + std::to_string(a);
            return std::nullopt;
        }
        t.codes[static_cast<std::size_t>(i)] = v > 0 ? 1 : -1;
    }
    t.scales = row_scale;
    t.scale_group = cols;
    collapse_scales(t);
    return t;
}

TernaryTensor absmean_quantize(const std::string& name, const std::vector<std::int64_t>& shape,
                               std::span<const float> values, QuantizeLoss* loss) {
    TernaryTensor t;
    t.name = name;
    t.shape = shape;
    double sum = 0;
    std::int64_t finite = 0;
    for (float v : values)
        if (std::isfinite(v)) sum += std::fabs(static_cast<double>(v)), ++finite;
    const float gamma = static_cast<float>(bitnet_gamma(finite ? sum / static_cast<double>(finite) : 0.0));
    t.codes.resize(values.size());
    double err2 = 0, norm2 = 0;
    std::int64_t changed = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
        const float v = values[i];
        // std::nearbyint rounds half to even in the default rounding mode, as torch.round does.
        const double q = std::isfinite(v) ? std::clamp(std::nearbyint(static_cast<double>(v) / gamma), -1.0, 1.0) : 0.0;
        t.codes[i] = static_cast<std::int8_t>(q);
        const float back = static_cast<float>(q) * gamma;
        if (back != v) ++changed;
        if (std::isfinite(v)) {
            const double d = static_cast<double>(v) - back;
            err2 += d * d;
            norm2 += static_cast<double>(v) * v;
        }
    }
    t.scales = {gamma};
    t.scale_group = std::max<std::int64_t>(static_cast<std::int64_t>(values.size()), 1);
    if (loss) {
        loss->relative_l2 = norm2 > 0 ? std::sqrt(err2 / norm2) : 0.0;
        loss->changed = values.empty() ? 0.0 : static_cast<double>(changed) / static_cast<double>(values.size());
    }
    return t;
}

std::vector<float> ternary_values(const TernaryTensor& t) {
    std::vector<float> out(t.codes.size());
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<float>(t.codes[i]) * t.scale_at(static_cast<std::int64_t>(i));
    return out;
}

}  // namespace bitfsck::io
