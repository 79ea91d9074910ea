#include "bitfsck/io/tensor.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "bitfsck/io/error.hpp"
#include "bitfsck/io/mapped_file.hpp"
#include "bitfsck/io/packed.hpp"
#include "bitfsck/io/text.hpp"

namespace bitfsck::io {

// ---------------------------------------------------------------------------------------------
// Half, bfloat16 and float8 conversions
// ---------------------------------------------------------------------------------------------

float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    const std::uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        // Zero or subnormal: mant * 2^-24 is exact in a float.
        float v = std::ldexp(static_cast<float>(mant), -24);
        return std::bit_cast<float>(std::bit_cast<std::uint32_t>(v) | sign);
    }
    if (exp == 0x1f)  // infinity, or NaN with its payload kept
        return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    return std::bit_cast<float>(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

float bfloat16_to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }

namespace {

// Rounds `value` right by `shift` bits, to nearest with ties to even.
std::uint32_t shift_round_even(std::uint32_t value, unsigned shift) {
    const std::uint32_t q = value >> shift;
    const std::uint32_t rem = value & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    return (rem > half || (rem == half && (q & 1u))) ? q + 1 : q;
}

}  // namespace

std::uint16_t float_to_half(float f) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    const std::uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u)  // NaN: keep it quiet and keep what fits of the payload
        return static_cast<std::uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
    if (abs >= 0x477ff000u)  // 65520 and above round to infinity (65504 has an odd mantissa)
        return static_cast<std::uint16_t>(sign | 0x7c00u);
    if (abs >= 0x38800000u) {  // a normal half; the rounding carry may bump the exponent, correctly
        const std::uint32_t rebased = abs - ((127u - 15u) << 23);
        return static_cast<std::uint16_t>(sign | shift_round_even(rebased, 13));
    }
    const std::uint32_t exp = abs >> 23;
    if (exp < 102)  // below 2^-25, half of the smallest subnormal: rounds to zero
        return sign;
    // Subnormal half: units of 2^-24. A result of 0x400 is the smallest normal, also correct.
    const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    return static_cast<std::uint16_t>(sign | shift_round_even(mant, 126 - exp));
}

std::uint16_t float_to_bfloat16(float f) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)  // NaN: truncating could leave an infinity, so force quiet
        return static_cast<std::uint16_t>((x >> 16) | 0x40u);
    const std::uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
    return static_cast<std::uint16_t>(rounded >> 16);
}

namespace {

template <typename T>
std::vector<std::byte> encode_floats(std::span<const T> v, DType dtype, const std::string& what) {
    std::vector<std::byte> out(v.size() * dtype_size(dtype));
    for (std::size_t i = 0; i < v.size(); ++i) {
        switch (dtype) {
            case DType::F64: {
                const double d = static_cast<double>(v[i]);
                std::memcpy(out.data() + 8 * i, &d, 8);
                break;
            }
            case DType::F32: {
                const float f = static_cast<float>(v[i]);
                std::memcpy(out.data() + 4 * i, &f, 4);
                break;
            }
            case DType::F16:
            case DType::BF16: {
                const float f = static_cast<float>(v[i]);
                const std::uint16_t h = dtype == DType::F16 ? float_to_half(f) : float_to_bfloat16(f);
                std::memcpy(out.data() + 2 * i, &h, 2);
                break;
            }
            default:
                throw Error(what + ": only float64, float32, float16 and bfloat16 tensors can be written with new values, not " +
                                  std::string(dtype_name(dtype)));
        }
    }
    if (v.empty() && dtype != DType::F64 && dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16)
        throw Error(what + ": only float64, float32, float16 and bfloat16 tensors can be written with new values, not " +
                          std::string(dtype_name(dtype)));
    return out;
}

}  // namespace

std::vector<std::byte> encode_float_values(std::span<const double> values, DType dtype, const std::string& what) {
    return encode_floats(values, dtype, what);
}
std::vector<std::byte> encode_float_values(std::span<const float> values, DType dtype, const std::string& what) {
    return encode_floats(values, dtype, what);
}

namespace {

float e4m3fn_to_float(std::uint8_t b) {
    const bool negative = b & 0x80u;
    const int exp = (b >> 3) & 0xf;
    const int mant = b & 0x7;
    float v;
    if (exp == 0xf && mant == 0x7)
        v = std::numeric_limits<float>::quiet_NaN();  // e4m3fn has no infinities
    else if (exp == 0)
        v = std::ldexp(static_cast<float>(mant), -9);  // subnormal: mant/8 * 2^-6
    else
        v = std::ldexp(static_cast<float>(8 + mant), exp - 7 - 3);
    return negative ? -v : v;
}

// e5m2 is the upper byte of an IEEE half.
float e5m2_to_float(std::uint8_t b) { return half_to_float(static_cast<std::uint16_t>(b << 8)); }

template <float (*Decode)(std::uint8_t)>
std::array<float, 256> make_table() {
    std::array<float, 256> t{};
    for (unsigned i = 0; i < 256; ++i) t[i] = Decode(static_cast<std::uint8_t>(i));
    return t;
}

const std::array<float, 256>& e4m3_table() {
    static const auto t = make_table<e4m3fn_to_float>();
    return t;
}
const std::array<float, 256>& e5m2_table() {
    static const auto t = make_table<e5m2_to_float>();
    return t;
}

// ---------------------------------------------------------------------------------------------
// Checked arithmetic: shapes and strides come from untrusted files.
// ---------------------------------------------------------------------------------------------

bool mul_ok(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_mul_overflow(a, b, &out); }
bool add_ok(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_add_overflow(a, b, &out); }

std::vector<std::int64_t> row_major_strides(const std::vector<std::int64_t>& shape) {
    std::vector<std::int64_t> stride(shape.size());
    std::int64_t step = 1;
    for (std::size_t i = shape.size(); i-- > 0;) {
        stride[i] = step;
        // Saturate: strides only matter for dims of size > 1, and then numel() has been checked.
        if (!mul_ok(step, std::max<std::int64_t>(shape[i], 1), step)) step = std::numeric_limits<std::int64_t>::max();
    }
    return stride;
}

// Elements counted by a shape; nullopt on a negative dimension or overflow.
std::optional<std::int64_t> checked_numel(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    bool overflow = false;
    for (auto d : shape) {
        if (d < 0) return std::nullopt;
        if (d == 0) return 0;  // a zero dim wins even over an overflowing product
        if (!overflow && !mul_ok(n, d, n)) overflow = true;
    }
    if (overflow) return std::nullopt;
    return n;
}

// ---------------------------------------------------------------------------------------------
// Element conversion
// ---------------------------------------------------------------------------------------------

// Error messages name the file; in-memory tensors have none.
std::string name_of(const MappedFile* file) { return file ? file->display_name() : std::string(); }

template <typename T>
T load(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Converts n elements starting at p, `step` bytes apart (the data may be unaligned).
template <typename Out, typename Decode>
void convert_loop(const std::byte* p, std::int64_t n, std::ptrdiff_t step, Out* out, Decode decode) {
    for (std::int64_t i = 0; i < n; ++i, p += step) out[i] = static_cast<Out>(decode(p));
}

// The same with the step known at compile time, so the compiler vectorises the common case of a
// contiguous run (what a scan spends a third of its time in otherwise).
// The same for contiguous runs, four elements at a time in vector registers (GCC does not
// vectorise the loop above at -O2): what a scan spends a third of its time in otherwise.
template <std::size_t kStep, typename Out, typename Decode>
void convert_contiguous(const std::byte* p, std::int64_t n, Out* out, Decode decode) {
    using v4f = float __attribute__((vector_size(16)));
    using v4u = std::uint32_t __attribute__((vector_size(16)));
    using v4d = double __attribute__((vector_size(32)));
    using v4o = std::conditional_t<std::is_same_v<Out, double>, v4d, v4f>;
    std::int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f f;
        if constexpr (kStep == 4) {
            std::memcpy(&f, p + i * 4, sizeof f);
        } else {
            std::uint16_t h[4];
            std::memcpy(h, p + i * 2, sizeof h);
            v4u u = {h[0], h[1], h[2], h[3]};
            f = reinterpret_cast<v4f>(u << 16);
        }
        v4o o = __builtin_convertvector(f, v4o);
        std::memcpy(out + i, &o, sizeof o);
    }
    for (; i < n; ++i) out[i] = static_cast<Out>(decode(p + i * static_cast<std::int64_t>(kStep)));
}

template <typename Out>
void convert_run(DType dtype, const std::byte* p, std::int64_t n, std::ptrdiff_t step, Out* out,
                 const MappedFile* file) {
    if (dtype == DType::F32 && step == 4) return convert_contiguous<4>(p, n, out, load<float>);
    if (dtype == DType::BF16 && step == 2)
        return convert_contiguous<2>(p, n, out, [](const std::byte* q) {
            return std::bit_cast<float>(static_cast<std::uint32_t>(load<std::uint16_t>(q)) << 16);
        });
    switch (dtype) {
        case DType::F64:
            if constexpr (std::is_same_v<Out, double>)
                if (step == 8) return (void)std::memcpy(out, p, std::size_t(n) * 8);
            return convert_loop(p, n, step, out, load<double>);
        case DType::F32:
            if constexpr (std::is_same_v<Out, float>)
                if (step == 4) return (void)std::memcpy(out, p, std::size_t(n) * 4);
            return convert_loop(p, n, step, out, load<float>);
        case DType::F16:
            return convert_loop(p, n, step, out, [](const std::byte* q) { return half_to_float(load<std::uint16_t>(q)); });
        case DType::BF16:
            return convert_loop(p, n, step, out, [](const std::byte* q) { return bfloat16_to_float(load<std::uint16_t>(q)); });
        case DType::F8_E4M3:
            return convert_loop(p, n, step, out, [&t = e4m3_table()](const std::byte* q) { return t[std::to_integer<unsigned>(*q)]; });
        case DType::F8_E5M2:
            return convert_loop(p, n, step, out, [&t = e5m2_table()](const std::byte* q) { return t[std::to_integer<unsigned>(*q)]; });
        case DType::I64: return convert_loop(p, n, step, out, load<std::int64_t>);
        case DType::I32: return convert_loop(p, n, step, out, load<std::int32_t>);
        case DType::I16: return convert_loop(p, n, step, out, load<std::int16_t>);
        case DType::I8: return convert_loop(p, n, step, out, load<std::int8_t>);
        case DType::U8: return convert_loop(p, n, step, out, load<std::uint8_t>);
        case DType::U16: return convert_loop(p, n, step, out, load<std::uint16_t>);
        case DType::U32: return convert_loop(p, n, step, out, load<std::uint32_t>);
        case DType::U64: return convert_loop(p, n, step, out, load<std::uint64_t>);
        case DType::Bool:
            return convert_loop(p, n, step, out, [](const std::byte* q) { return *q != std::byte{0} ? 1 : 0; });
        case DType::C64:
        case DType::C128:
            throw FormatError(name_of(file), "complex tensors are not supported for reading values");
    }
    throw FormatError(name_of(file), "unknown tensor element type");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// TensorEntry
// ---------------------------------------------------------------------------------------------

std::int64_t TensorEntry::numel() const {
    auto n = checked_numel(shape);
    if (!n) throw FormatError("", "tensor '" + name + "' has an invalid shape " + shape_text(shape));
    return *n;
}

std::uint64_t TensorEntry::nbytes() const {
    std::int64_t bytes;
    if (!mul_ok(numel(), static_cast<std::int64_t>(dtype_size(dtype)), bytes))
        throw FormatError("", "tensor '" + name + "' of shape " + shape_text(shape) + " is too large");
    return static_cast<std::uint64_t>(bytes);
}

std::uint64_t TensorEntry::stored_nbytes() const {
    return encoding == TensorEncoding::Plain ? nbytes() : packed.nbytes;
}

bool TensorEntry::is_broadcast_view() const {
    if (encoding != TensorEncoding::Plain) return false;
    const std::uint64_t elements = static_cast<std::uint64_t>(numel());
    const std::uint64_t stored = storage_nbytes / std::max<std::size_t>(dtype_size(dtype), 1);
    return elements > (std::uint64_t(1) << 26) && elements > 64 * std::max<std::uint64_t>(stored, 1);
}

bool TensorEntry::is_contiguous() const {
    // An empty stride list stands for the row-major layout (what safetensors implies).
    if (stride.empty()) return true;
    if (stride.size() != shape.size()) return false;
    auto n = checked_numel(shape);
    if (!n) return false;
    if (*n == 0) return true;
    std::int64_t expected = 1;
    for (std::size_t i = shape.size(); i-- > 0;) {
        if (shape[i] == 1) continue;  // torch ignores the stride of a size-1 dimension
        if (stride[i] != expected) return false;
        if (!mul_ok(expected, shape[i], expected)) return false;
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// TensorData
// ---------------------------------------------------------------------------------------------

TensorData::TensorData(const MappedFile& file, const TensorEntry& entry)
    : file_(&file), dtype_(entry.dtype), shape_(entry.shape), stride_(entry.stride),
      storage_offset_(entry.storage_offset) {
    const std::string where = file.display_name();
    const std::string tensor = "tensor '" + entry.name + "'";
    if (entry.encoding != TensorEncoding::Plain) {
        init_packed(file, entry);
        return;
    }
    if (stride_.empty()) stride_ = row_major_strides(shape_);
    if (stride_.size() != shape_.size())
        throw FormatError(where, tensor + " has " + std::to_string(shape_.size()) + " dimensions but " +
                                     std::to_string(stride_.size()) + " strides");
    auto n = checked_numel(shape_);
    if (!n) throw FormatError(where, tensor + " has an invalid shape " + shape_text(shape_));
    numel_ = *n;
    if (std::any_of(stride_.begin(), stride_.end(), [](std::int64_t s) { return s < 0; }))
        throw FormatError(where, tensor + " has a negative stride " + shape_text(stride_));
    if (storage_offset_ < 0)
        throw FormatError(where, tensor + " has a negative storage offset " + std::to_string(storage_offset_));
    contiguous_ = entry.is_contiguous();

    // The storage itself must lie in the file; this also makes every address below representable.
    auto storage = file.bytes(entry.storage_file_offset, entry.storage_nbytes, "tensor storage");
    base_ = storage.data();

    const auto elem = static_cast<std::int64_t>(dtype_size(dtype_));
    const std::string too_big = tensor + " needs more bytes than its storage '" + entry.storage_key +
                                "' holds (" + std::to_string(entry.storage_nbytes) + ")";
    std::int64_t first_byte = 0, end_byte = 0;
    if (numel_ > 0) {
        // Strides are non-negative, so the last element reached is at the sum of the far corners.
        std::int64_t last = storage_offset_;
        for (std::size_t i = 0; i < shape_.size(); ++i) {
            std::int64_t reach;
            if (!mul_ok(shape_[i] - 1, stride_[i], reach) || !add_ok(last, reach, last))
                throw FormatError(where, too_big);
        }
        if (!mul_ok(storage_offset_, elem, first_byte) || !add_ok(last, 1, end_byte) || !mul_ok(end_byte, elem, end_byte))
            throw FormatError(where, too_big);
    }
    if (static_cast<std::uint64_t>(end_byte) > entry.storage_nbytes)
        throw FormatError(where, tensor + " needs " + std::to_string(end_byte) + " bytes but its storage '" +
                                     entry.storage_key + "' holds " + std::to_string(entry.storage_nbytes));
    span_begin_ = entry.storage_file_offset + static_cast<std::uint64_t>(first_byte);
    span_bytes_ = static_cast<std::uint64_t>(end_byte - first_byte);
}

TensorData::TensorData(std::span<const std::byte> bytes, DType dtype, std::vector<std::int64_t> shape)
    : base_(bytes.data()), span_begin_(0), span_bytes_(bytes.size()), dtype_(dtype), shape_(std::move(shape)) {
    auto n = checked_numel(shape_);
    if (!n) throw FormatError("", "in-memory tensor has an invalid shape " + shape_text(shape_));
    numel_ = *n;
    std::int64_t needed;
    if (!mul_ok(numel_, static_cast<std::int64_t>(dtype_size(dtype_)), needed) ||
        static_cast<std::uint64_t>(needed) > bytes.size())
        throw FormatError("", "in-memory tensor of shape " + shape_text(shape_) + " and type " +
                                  std::string(dtype_name(dtype_)) + " needs more than the " +
                                  std::to_string(bytes.size()) + " bytes given");
    stride_ = row_major_strides(shape_);
    contiguous_ = true;
}

std::int64_t TensorData::rows() const { return shape_.empty() ? 1 : shape_[0]; }

std::int64_t TensorData::cols() const {
    std::int64_t c = 1;
    // numel() is checked, so the product of a subset of the dims cannot overflow unless a
    // leading zero dim hides it; then the answer does not matter beyond being non-negative.
    for (std::size_t i = 1; i < shape_.size(); ++i)
        if (!mul_ok(c, shape_[i], c)) return std::numeric_limits<std::int64_t>::max();
    return c;
}

namespace {

struct Layout {
    const std::byte* base;
    DType dtype;
    const std::vector<std::int64_t>& shape;
    const std::vector<std::int64_t>& stride;
    std::int64_t storage_offset;
    bool contiguous;
};

template <typename Out>
void read_elements(const Layout& t, std::int64_t first, std::int64_t count, Out* out, const MappedFile* file) {
    const auto elem = static_cast<std::int64_t>(dtype_size(t.dtype));
    if (t.contiguous || t.shape.empty()) {
        convert_run(t.dtype, t.base + (t.storage_offset + first) * elem, count, elem, out, file);
        return;
    }
    // Walk runs along the innermost dimension, carrying like an odometer into the outer ones.
    const std::size_t nd = t.shape.size();
    std::vector<std::int64_t> index(nd);
    for (std::size_t d = nd; d-- > 0;) {
        index[d] = first % t.shape[d];
        first /= t.shape[d];
    }
    const std::int64_t inner = t.shape[nd - 1];
    const std::ptrdiff_t inner_step = t.stride[nd - 1] * elem;
    while (count > 0) {
        const std::int64_t run = std::min(inner - index[nd - 1], count);
        std::int64_t at = t.storage_offset;
        for (std::size_t d = 0; d < nd; ++d) at += index[d] * t.stride[d];
        convert_run(t.dtype, t.base + at * elem, run, inner_step, out, file);
        out += run;
        count -= run;
        index[nd - 1] += run;
        for (std::size_t d = nd - 1; d > 0 && index[d] == t.shape[d]; --d) {
            index[d] = 0;
            ++index[d - 1];
        }
    }
}

void check_range(std::int64_t first, std::int64_t count, std::int64_t numel, const MappedFile* file) {
    std::int64_t end;
    if (first < 0 || count < 0 || !add_ok(first, count, end) || end > numel)
        throw FormatError(name_of(file), "cannot read " + std::to_string(count) + " elements from element " +
                                    std::to_string(first) + " of a tensor of " + std::to_string(numel) + " elements");
}

}  // namespace

void TensorData::init_packed(const MappedFile& file, const TensorEntry& entry) {
    const std::string where = file.display_name() + ": tensor '" + entry.name + "'";
    encoding_ = entry.encoding;
    name_ = where;
    stride_ = row_major_strides(shape_);
    auto n = checked_numel(shape_);
    if (!n) throw FormatError(where, "invalid shape " + shape_text(shape_));
    numel_ = *n;
    if (encoding_ == TensorEncoding::Opaque)
        throw FormatError(where, "cannot be decoded: " + (entry.packed.note.empty() ? std::string("unsupported encoding") : entry.packed.note));
    // Sizes must match the shape exactly: a packed tensor has no strides to explain a surplus.
    i2s_layout_ = entry.packed.i2s_layout;
    const std::uint64_t expected = packed_size(encoding_, shape_, entry.packed.packed_rows, where, i2s_layout_);
    if (entry.packed.nbytes != expected)
        throw FormatError(where, "holds " + std::to_string(entry.packed.nbytes) + " packed bytes but its shape " +
                                     shape_text(shape_) + " needs " + std::to_string(expected) + " as " +
                                     std::string(encoding_name(encoding_)));
    base_ = file.bytes(entry.packed.offset, entry.packed.nbytes, "packed tensor data").data();
    span_begin_ = entry.packed.offset;
    span_bytes_ = entry.packed.nbytes;
    packed_nbytes_ = entry.packed.nbytes;
    packed_rows_ = entry.packed.packed_rows;
    scales_ = entry.packed.scales;
    scale_group_ = entry.packed.scale_group;
    reciprocal_ = entry.packed.reciprocal_scale;
    if (!encoding_has_block_scales(encoding_)) {
        if (scale_group_ <= 0 || scales_.empty() ||
            static_cast<std::int64_t>(scales_.size()) != (numel_ + scale_group_ - 1) / scale_group_)
            if (!(numel_ == 0 && !scales_.empty()))
                throw FormatError(where, "has " + std::to_string(scales_.size()) + " scales for " + std::to_string(numel_) +
                                             " elements in groups of " + std::to_string(scale_group_));
        if (reciprocal_)
            for (float& s : scales_) s = 1.0f / s;  // value = code / stored, as the HF forward pass divides
    }
}

namespace {

PackedSource packed_source(const std::byte* base, std::uint64_t nbytes, TensorEncoding e, std::int64_t numel,
                           std::int64_t cols, std::int64_t packed_rows, const std::string& where, I2sLayout i2s_layout) {
    PackedSource s;
    s.i2s_layout = i2s_layout;
    s.encoding = e;
    s.data = base;
    s.nbytes = nbytes;
    s.numel = numel;
    s.cols = std::max<std::int64_t>(cols, 1);
    s.packed_rows = packed_rows;
    s.where = where;
    return s;
}

}  // namespace

template <typename Out>
void TensorData::read_packed(std::int64_t first, std::int64_t count, Out* out) const {
    const PackedSource src = packed_source(base_, packed_nbytes_, encoding_, numel_, cols(), packed_rows_, name_, i2s_layout_);
    constexpr std::int64_t kChunk = 4096;
    std::int8_t codes[kChunk];
    float scales[kChunk];
    while (count > 0) {
        const std::int64_t n = std::min(count, kChunk);
        decode_codes(src, first, n, codes);
        read_scales(first, n, scales);
        for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(static_cast<float>(codes[i]) * scales[i]);
        out += n;
        first += n;
        count -= n;
    }
}

void TensorData::read_codes(std::int64_t first, std::int64_t count, std::int8_t* out) const {
    check_range(first, count, numel_, file_);
    if (!is_ternary())
        throw FormatError(name_of(file_), (name_.empty() ? std::string("tensor") : name_) + " is not ternary-encoded (" +
                                              std::string(encoding_name(encoding_)) + ")");
    if (count > 0)
        decode_codes(packed_source(base_, packed_nbytes_, encoding_, numel_, cols(), packed_rows_, name_, i2s_layout_), first, count, out);
}

void TensorData::check_codes() const {
    if (encoding_ == TensorEncoding::Plain) return;
    io::check_codes(packed_source(base_, packed_nbytes_, encoding_, numel_, cols(), packed_rows_, name_, i2s_layout_));
}

void TensorData::read_scales(std::int64_t first, std::int64_t count, float* out) const {
    check_range(first, count, numel_, file_);
    if (encoding_ == TensorEncoding::Plain) throw FormatError(name_of(file_), "a plain tensor has no scales");
    if (encoding_has_block_scales(encoding_)) {
        const PackedSource src = packed_source(base_, packed_nbytes_, encoding_, numel_, cols(), packed_rows_, name_, i2s_layout_);
        for (std::int64_t i = 0; i < count; ++i) out[i] = block_scale(src, first + i);
        return;
    }
    for (std::int64_t i = 0; i < count; ++i) out[i] = scales_[static_cast<std::size_t>((first + i) / scale_group_)];
}

void TensorData::read(std::int64_t first, std::int64_t count, double* out) const {
    check_range(first, count, numel_, file_);
    if (encoding_ != TensorEncoding::Plain) return read_packed(first, count, out);
    if (count > 0)
        read_elements(Layout{base_, dtype_, shape_, stride_, storage_offset_, contiguous_}, first, count, out, file_);
}

void TensorData::read(std::int64_t first, std::int64_t count, float* out) const {
    check_range(first, count, numel_, file_);
    if (encoding_ != TensorEncoding::Plain) return read_packed(first, count, out);
    if (count > 0)
        read_elements(Layout{base_, dtype_, shape_, stride_, storage_offset_, contiguous_}, first, count, out, file_);
}

void TensorData::release() const {
    if (file_ && span_bytes_ > 0) file_->release(span_begin_, span_bytes_);
}

void TensorData::release(std::int64_t first, std::int64_t count) const {
    if (!file_ || encoding_ != TensorEncoding::Plain || !contiguous_ || first < 0 || count <= 0 || first >= numel_) return;
    const auto elem = static_cast<std::uint64_t>(dtype_size(dtype_));
    const auto n = static_cast<std::uint64_t>(std::min(count, numel_ - first));
    // Only the pages wholly inside the range go (MappedFile::release): neighbours' bytes stay.
    file_->release(span_begin_ + static_cast<std::uint64_t>(first) * elem, n * elem);
}

std::uint64_t TensorData::span_end_after(std::int64_t first, std::int64_t count) const {
    if (encoding_ != TensorEncoding::Plain || !contiguous_ || first < 0 || count < 0) return span_begin_ + span_bytes_;
    const auto elem = static_cast<std::uint64_t>(dtype_size(dtype_));
    const auto end = static_cast<std::uint64_t>(std::min(first + count, numel_));
    return span_begin_ + std::min(end * elem, span_bytes_);
}

}  // namespace bitfsck::io
