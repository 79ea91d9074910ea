// GGUF v2/v3 (ggml's gguf.md): "GGUF", u32 version, u64 tensor count, u64 key/value count, the
// key/values, the tensor infos (name, n_dims, dims innermost-first, ggml type, offset), padding to
// general.alignment (default 32), then the tensor data. Every count and length is bounded by the
// file size before anything is allocated.
#include "gguf_reader.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_set>

#include "bitfsck/io/checkpoint.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/gguf.hpp"
#include "bitfsck/io/packed.hpp"
#include "checkpoint_builder.hpp"

namespace bitfsck::io {

std::string ggml_type_name(std::uint32_t type) {
    static const std::map<std::uint32_t, const char*> names = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {6, "Q5_0"}, {7, "Q5_1"}, {8, "Q8_0"}, {9, "Q8_1"},
        {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"}, {16, "IQ2_XXS"},
        {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"}, {22, "IQ2_S"}, {23, "IQ4_XS"},
        {24, "I8"}, {25, "I16"}, {26, "I32"}, {27, "I64"}, {28, "F64"}, {29, "IQ1_M"}, {30, "BF16"},
        {34, "TQ1_0"}, {35, "TQ2_0"}, {36, "I2_S/IQ4_NL_4_4"}, {37, "I8_S"}, {38, "TL1/IQ4_NL_8_8"}, {39, "MXFP4/TL2"},
        {40, "NVFP4"}, {41, "Q1_0"},
    };
    auto it = names.find(type);
    return it == names.end() ? "type " + std::to_string(type) : it->second;
}

namespace {

constexpr int kMaxArrayDepth = 8;
constexpr std::uint32_t kMaxDims = 8;

class Cursor {
public:
    Cursor(const MappedFile& f) : f_(f) {}
    std::uint64_t pos = 0;
    template <typename T>
    T get(const char* what) {
        T v;
        std::memcpy(&v, f_.bytes(pos, sizeof v, what).data(), sizeof v);
        pos += sizeof v;
        return v;
    }
    std::string str(const char* what) {
        auto n = get<std::uint64_t>(what);
        if (n > f_.size() - std::min(pos, f_.size()))
            throw FormatError(f_.display_name(), std::string(what) + " claims " + std::to_string(n) + " bytes, past the end of the file");
        auto b = f_.bytes(pos, n, what);
        pos += n;
        return std::string(reinterpret_cast<const char*>(b.data()), b.size());
    }
    void skip(std::uint64_t n, const char* what) {
        f_.bytes(pos, n, what);
        pos += n;
    }

private:
    const MappedFile& f_;
};

std::size_t scalar_size(std::uint32_t t) {
    switch (static_cast<GgufValueType>(t)) {
        case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
        case GgufValueType::U16: case GgufValueType::I16: return 2;
        case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
        case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
        default: return 0;
    }
}

const char* value_type_name(std::uint32_t t) {
    static const char* n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
    return t < 13 ? n[t] : "?";
}

std::string scalar_text(Cursor& c, std::uint32_t t, const std::string& where) {
    switch (static_cast<GgufValueType>(t)) {
        case GgufValueType::U8: return std::to_string(c.get<std::uint8_t>("value"));
        case GgufValueType::I8: return std::to_string(c.get<std::int8_t>("value"));
        case GgufValueType::U16: return std::to_string(c.get<std::uint16_t>("value"));
        case GgufValueType::I16: return std::to_string(c.get<std::int16_t>("value"));
        case GgufValueType::U32: return std::to_string(c.get<std::uint32_t>("value"));
        case GgufValueType::I32: return std::to_string(c.get<std::int32_t>("value"));
        case GgufValueType::U64: return std::to_string(c.get<std::uint64_t>("value"));
        case GgufValueType::I64: return std::to_string(c.get<std::int64_t>("value"));
        case GgufValueType::F32: {
            char b[32];
            std::snprintf(b, sizeof b, "%.9g", c.get<float>("value"));
            return b;
        }
        case GgufValueType::F64: {
            char b[32];
            std::snprintf(b, sizeof b, "%.17g", c.get<double>("value"));
            return b;
        }
        case GgufValueType::Bool: {
            auto v = c.get<std::uint8_t>("value");
            if (v > 1) throw FormatError(where, "bool value " + std::to_string(v));
            return v ? "true" : "false";
        }
        case GgufValueType::String: return c.str("string value");
        default: break;
    }
    throw FormatError(where, "unknown value type " + std::to_string(t));
}

// The value as text (arrays: up to 8 items then the count) and, for u32/u64 scalars, its number.
std::string value_text(Cursor& c, std::uint32_t t, const std::string& where, int depth, const MappedFile& f) {
    if (t != static_cast<std::uint32_t>(GgufValueType::Array)) return scalar_text(c, t, where);
    if (depth > kMaxArrayDepth) throw FormatError(where, "arrays nested deeper than " + std::to_string(kMaxArrayDepth));
    const auto et = c.get<std::uint32_t>("array type");
    const auto n = c.get<std::uint64_t>("array length");
    if (et > 12) throw FormatError(where, "array of unknown value type " + std::to_string(et));
    // Every element takes at least one byte (strings: 8), so a count past the file is a lie.
    if (n > f.size()) throw FormatError(where, "array claims " + std::to_string(n) + " elements, more than the file holds");
    std::string out = "[";
    const std::uint64_t shown = std::min<std::uint64_t>(n, 8);
    for (std::uint64_t i = 0; i < n; ++i) {
        if (i < shown) {
            std::string v = value_text(c, et, where, depth + 1, f);
            if (et == static_cast<std::uint32_t>(GgufValueType::String)) v = "'" + v.substr(0, 40) + "'";
            out += (i ? ", " : "") + v;
        } else if (const std::size_t sz = scalar_size(et)) {
            c.skip((n - i) * sz, "array data");
            break;
        } else {
            value_text(c, et, where, depth + 1, f);
        }
    }
    if (n > shown) out += ", … (" + std::to_string(n) + " " + value_type_name(et) + ")";
    return out + "]";
}

DType plain_dtype(std::uint32_t t, bool& ok) {
    ok = true;
    switch (static_cast<GgmlType>(t)) {
        case GgmlType::F32: return DType::F32;
        case GgmlType::F16: return DType::F16;
        case GgmlType::BF16: return DType::BF16;
        case GgmlType::F64: return DType::F64;
        case GgmlType::I8: return DType::I8;
        case GgmlType::I16: return DType::I16;
        case GgmlType::I32: return DType::I32;
        case GgmlType::I64: return DType::I64;
        default: ok = false; return DType::U8;
    }
}

struct Info {
    std::string name;
    std::vector<std::int64_t> shape;  // PyTorch order
    std::uint32_t type = 0;
    std::uint64_t offset = 0;         // relative to the data section
};

}  // namespace

// bitnet.cpp's ggml fork numbers its own types 36-39 (ggml.h: I2_S, I8_S, TL1, TL2), which
// upstream ggml reserved (36-38, removed types) or reuses (39 = MXFP4): the architecture and the
// byte span the offsets allow say which one a file means.
std::string ggml_type_name_in(std::uint32_t type, bool bitnet_fork) {
    if (bitnet_fork) {
        switch (type) {
            case 36: return "I2_S";
            case 37: return "I8_S";
            case 38: return "TL1";
            case 39: return "TL2";
            default: break;
        }
    }
    return ggml_type_name(type);
}

void read_gguf(CheckpointBuilder& b, const OpenOptions& options) {
    const MappedFile& file = *b.file;
    const std::string fname = file.display_name();
    Cursor c(file);
    c.skip(4, "GGUF magic");
    const auto version = c.get<std::uint32_t>("GGUF version");
    if (version == 1) throw FormatError(fname, "GGUF version 1 (2023, 32-bit counts) is not supported; only v2 and v3");
    if (version != 2 && version != 3)
        throw FormatError(fname, "GGUF version " + std::to_string(version) + " is not supported (v2 and v3 are)");
    const auto n_tensors = c.get<std::uint64_t>("tensor count");
    const auto n_kv = c.get<std::uint64_t>("key/value count");
    // A key/value takes at least 12 bytes, a tensor info at least 24.
    if (n_kv > file.size() / 12 || n_tensors > file.size() / 24)
        throw FormatError(fname, "GGUF header claims " + std::to_string(n_kv) + " key/values and " + std::to_string(n_tensors) +
                                     " tensors, more than the file can hold");

    std::uint64_t alignment = 32;
    std::string architecture;
    for (std::uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.str("metadata key");
        const auto t = c.get<std::uint32_t>("metadata value type");
        const std::string where = fname + ": metadata '" + key + "'";
        const std::uint64_t at = c.pos;
        std::string text = value_text(c, t, where, 0, file);
        if (key == "general.alignment") {
            if (t != static_cast<std::uint32_t>(GgufValueType::U32))
                throw FormatError(where, "must be a u32, is " + std::string(value_type_name(t)));
            std::uint32_t a;
            std::memcpy(&a, file.data() + at, 4);
            if (a == 0 || (a & (a - 1)) != 0) throw FormatError(where, "alignment " + std::to_string(a) + " is not a power of two");
            alignment = a;
        }
        if (key == "general.architecture") architecture = text;
        b.metadata.emplace_back(std::move(key), std::move(text));
    }

    std::vector<Info> infos;
    infos.reserve(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
        Info info;
        info.name = c.str("tensor name");
        const std::string where = fname + ": tensor '" + info.name + "'";
        const auto nd = c.get<std::uint32_t>("tensor dimension count");
        if (nd > kMaxDims) throw FormatError(where, "has " + std::to_string(nd) + " dimensions");
        std::int64_t numel = 1;
        for (std::uint32_t d = 0; d < nd; ++d) {
            const auto dim = c.get<std::uint64_t>("tensor dimension");
            if (dim > (std::uint64_t(1) << 62) || __builtin_mul_overflow(numel, static_cast<std::int64_t>(dim), &numel))
                throw FormatError(where, "has an absurd dimension " + std::to_string(dim));
            info.shape.insert(info.shape.begin(), static_cast<std::int64_t>(dim));  // innermost-first → PyTorch
        }
        info.type = c.get<std::uint32_t>("tensor type");
        info.offset = c.get<std::uint64_t>("tensor offset");
        if (info.offset % alignment != 0)
            throw FormatError(where, "offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
                                         std::to_string(alignment));
        infos.push_back(std::move(info));
    }
    const std::uint64_t data_start = (c.pos + alignment - 1) / alignment * alignment;
    if (data_start > file.size() && n_tensors > 0) throw FormatError(fname, "truncated: the tensor data section is missing");
    const std::uint64_t data_size = file.size() > data_start ? file.size() - data_start : 0;

    // Room each tensor has up to the next tensor (or the end): what tells I2_S from IQ4_NL_4_4.
    std::vector<std::uint64_t> starts;
    for (const auto& info : infos) starts.push_back(info.offset);
    std::sort(starts.begin(), starts.end());
    auto room = [&](std::uint64_t off) {
        auto it = std::upper_bound(starts.begin(), starts.end(), off);
        const std::uint64_t end = it == starts.end() ? data_size : *it;
        return end >= off ? end - off : 0;
    };
    // "bitnet" (1bitLLM, upstream's converter), "bitnet-25" and "bitnet-b1.58" (microsoft's 2B-4T
    // files); bitnet.cpp also writes "llama" for Llama3-8B-1.58 and Falcon3, where the types decide.
    const bool bitnet_arch = architecture.find("bitnet") != std::string::npos;
    std::unordered_set<std::string> names;
    for (const auto& info : infos) names.insert(info.name);
    // bitnet.cpp's TL writer puts a float32 <name>_scale tensor after each TL1/TL2 weight.
    auto has_tl_scale = [&](const std::string& n) { return names.count(n + "_scale") > 0; };
    std::size_t i2s = 0, ambiguous = 0, tl = 0;

    for (const auto& info : infos) {
        const std::string where = fname + ": tensor '" + info.name + "'";
        TensorEntry e;
        e.name = info.name;
        e.path = info.name;
        e.in_state_dict = true;
        e.shape = info.shape;
        e.storage_key = info.name;
        e.storage_file_offset = data_start + info.offset;
        bool plain;
        const DType dt = plain_dtype(info.type, plain);
        const std::int64_t numel = e.numel();
        if (plain) {
            e.dtype = dt;
            e.storage_nbytes = e.nbytes();
            if (info.offset > data_size || e.storage_nbytes > data_size - info.offset)
                throw FormatError(where, "its " + std::to_string(e.storage_nbytes) + " bytes at data offset " +
                                             std::to_string(info.offset) + " run past the end of the file");
            TensorData check(file, e);
            b.tensors.push_back(std::move(e));
            continue;
        }
        e.dtype = DType::F32;
        e.packed.offset = data_start + info.offset;
        e.packed.parts = {info.name};
        switch (static_cast<GgmlType>(info.type)) {
            case GgmlType::TQ1_0: e.encoding = TensorEncoding::TQ1_0; break;
            case GgmlType::TQ2_0: e.encoding = TensorEncoding::TQ2_0; break;
            case GgmlType::Q8_0: e.encoding = TensorEncoding::Q8_0; break;
            case GgmlType::I2_S: {
                const std::uint64_t r = room(info.offset);
                const std::uint64_t i2s_size = static_cast<std::uint64_t>(numel / 4 + kI2sGgufTail);
                const std::uint64_t iq4_size = static_cast<std::uint64_t>(numel / 32 * 18);
                const bool fits_i2s = numel % kI2sGgufBlock == 0 && r >= i2s_size && r < i2s_size + alignment;
                const bool fits_iq4 = numel % 32 == 0 && r >= iq4_size && r < iq4_size + alignment;
                if (fits_i2s && (!fits_iq4 || bitnet_arch)) {
                    e.encoding = TensorEncoding::I2S_GGUF;
                    e.packed.i2s_layout = options.i2s_layout;
                    e.packed.note = std::string("type 36 read as bitnet.cpp I2_S (") +
                                    (fits_iq4 ? "size fits both it and IQ4_NL_4_4; architecture '" + architecture + "' decides"
                                              : "only its size fits") + ")";
                    ++i2s;
                } else {
                    e.encoding = TensorEncoding::Opaque;
                    e.dtype = DType::U8;
                    e.packed.nbytes = std::min(r, fits_iq4 ? iq4_size : r);
                    e.packed.note = fits_iq4 ? (fits_i2s ? "type 36 is ambiguous: I2_S (bitnet.cpp) and IQ4_NL_4_4 (upstream ggml) both fit its " +
                                                               std::to_string(r) + " bytes and the architecture does not say"
                                                         : std::string("type 36 with IQ4_NL_4_4's size: upstream ggml's interleaved 4-bit type, not decoded"))
                                             : "type 36 is ambiguous: its " + std::to_string(r) + " bytes fit neither I2_S (" +
                                                   std::to_string(i2s_size) + ") nor IQ4_NL_4_4 (" + std::to_string(iq4_size) + ")";
                    ++ambiguous;
                    b.notes.push_back(info.name + ": " + e.packed.note);
                    b.tensors.push_back(std::move(e));
                    continue;
                }
                break;
            }
            case GgmlType::TL1:
            case GgmlType::TL2: {
                // MXFP4 (upstream 39) needs 17 bytes per 32 elements; TL2 about 0.21 bytes per
                // element and a <name>_scale beside it.
                const bool mxfp4 = info.type == 39 && !bitnet_arch && !has_tl_scale(info.name) && numel % 32 == 0 &&
                                   room(info.offset) >= static_cast<std::uint64_t>(numel / 32 * 17);
                const bool fork = !mxfp4 && (bitnet_arch || has_tl_scale(info.name) || info.type == 39);
                e.encoding = TensorEncoding::Opaque;
                e.dtype = DType::U8;
                e.packed.nbytes = room(info.offset);
                if (fork) {
                    e.packed.note = "bitnet.cpp " + ggml_type_name_in(info.type, true) + " (type " + std::to_string(info.type) +
                                    "): its byte order depends on the kernel tiling (BM/BK/bm) chosen when the file was built, "
                                    "which the GGUF does not store; it cannot be decoded without the producer's kernel_config.ini";
                    ++tl;
                } else {
                    e.packed.note = info.type == 39 ? "ggml type MXFP4 (39) is not decoded by bitfsck"
                                                    : "type 38 is neither bitnet.cpp TL1 (no " + info.name +
                                                          "_scale beside it, architecture '" + architecture +
                                                          "') nor a type upstream ggml still writes";
                }
                b.tensors.push_back(std::move(e));
                continue;
            }
            default:
                e.encoding = TensorEncoding::Opaque;
                e.dtype = DType::U8;
                e.packed.note = "ggml type " + ggml_type_name(info.type) + " (" + std::to_string(info.type) + ") is not decoded by bitfsck";
                b.tensors.push_back(std::move(e));
                continue;
        }
        e.packed.nbytes = packed_size(e.encoding, e.shape, 0, where, e.packed.i2s_layout);
        if (info.offset > data_size || e.packed.nbytes > data_size - info.offset)
            throw FormatError(where, "its " + std::to_string(e.packed.nbytes) + " bytes of " + ggml_type_name(info.type) +
                                         " at data offset " + std::to_string(info.offset) + " run past the end of the file (" +
                                         std::to_string(data_size) + " data bytes)");
        TensorData check(file, e);
        check.check_codes();
        b.tensors.push_back(std::move(e));
    }
    // Each tensor's bytes end before the next tensor's begin, as ggml lays them out (and its own
    // loader requires): a size that runs into a neighbour is a size the file does not hold.
    std::vector<const TensorEntry*> by_offset;
    for (const auto& t : b.tensors)
        if (t.stored_nbytes() > 0) by_offset.push_back(&t);
    auto start_of = [](const TensorEntry* t) { return t->encoding == TensorEncoding::Plain ? t->storage_file_offset : t->packed.offset; };
    std::sort(by_offset.begin(), by_offset.end(), [&](auto* x, auto* y) { return start_of(x) < start_of(y); });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
        const TensorEntry& prev = *by_offset[i - 1];
        if (start_of(&prev) + prev.stored_nbytes() > start_of(by_offset[i]))
            throw FormatError(fname + ": tensor '" + prev.name + "'", "its " + std::to_string(prev.stored_nbytes()) +
                                                                        " bytes at file offset " + std::to_string(start_of(&prev)) +
                                                                        " run into tensor '" + by_offset[i]->name + "' at " +
                                                                        std::to_string(start_of(by_offset[i])));
    }
    std::string note = "GGUF v" + std::to_string(version) + ", " + std::to_string(n_kv) + " key/values, alignment " +
                       std::to_string(alignment) + (architecture.empty() ? "" : ", architecture '" + architecture + "'");
    if (i2s) note += "; " + std::to_string(i2s) + " tensor(s) of type 36 read as bitnet.cpp I2_S";
    if (ambiguous) note += "; " + std::to_string(ambiguous) + " tensor(s) of type 36 left undecoded (see below)";
    if (tl) note += "; " + std::to_string(tl) + " bitnet.cpp TL1/TL2 tensor(s) not decodable";
    b.notes.insert(b.notes.begin(), note);
    if (i2s) {
        const std::string assumed(i2s_layout_name(options.i2s_layout));
        b.notes.push_back("I2_S layout not recorded in the file; assumed " + assumed +
                          (options.i2s_layout == I2sLayout::ActParallel
                               ? " (bitnet.cpp's x86 default and every Python writer's; --i2s-layout interleaved|arm for files "
                                 "quantized by an x86 build without ACT_PARALLEL or an ARM build since 2025-11)"
                               : " (as asked); the data cannot tell the layouts apart"));
    }
    b.state_dict_path = "";
}

}  // namespace bitfsck::io
