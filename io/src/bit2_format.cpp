// .bit2 reading and writing (docs/bit2-format.md):
//   0   8 bytes  magic 89 'B' 'I' 'T' '2' 0D 0A 1A
//   8   u32 LE   version (1)
//   12  u32 LE   flags (0)
//   16  u64 LE   N, the JSON header's length (spaces pad 24+N to a multiple of 64)
//   24  N bytes  {"__metadata__": {str: str}, name: {...}, ...}
//   24+N         data; every offset in the header is relative to here.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "bit2_reader.hpp"
#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/bit2.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/text.hpp"
#include "checkpoint_builder.hpp"

namespace bitfsck::io {
namespace {

constexpr std::uint64_t kFixedHeader = 24;
constexpr std::uint64_t kMaxJson = 100'000'000;

}  // namespace

bool looks_like_bit2(const MappedFile& file) {
    return file.size() >= kBit2Magic.size() && std::memcmp(file.data(), kBit2Magic.data(), kBit2Magic.size()) == 0;
}

std::string describe_foreign_bit2(const MappedFile& file) {
    // Entropy over (at most) the first 16 MiB: compressed or encrypted data is near 8 bits/byte,
    // packed 2-bit codes lower, text lower still.
    const std::uint64_t n = std::min<std::uint64_t>(file.size(), 16u << 20);
    std::array<std::uint64_t, 256> count{};
    for (std::uint64_t i = 0; i < n; ++i) ++count[std::to_integer<unsigned>(file.data()[i])];
    double h = 0;
    for (auto c : count)
        if (c) {
            const double p = static_cast<double>(c) / static_cast<double>(n);
            h -= p * std::log2(p);
        }
    std::string hex, text;
    for (std::uint64_t i = 0; i < std::min<std::uint64_t>(16, file.size()); ++i) {
        static const char* d = "0123456789abcdef";
        const auto b = std::to_integer<unsigned>(file.data()[i]);
        if (!hex.empty()) hex += ' ';
        hex += d[b >> 4];
        hex += d[b & 15];
    }
    // A readable header: the longest printable run within the first 256 bytes, clipped.
    std::string run, best;
    for (std::uint64_t i = 0; i < std::min<std::uint64_t>(256, file.size()); ++i) {
        const char ch = static_cast<char>(file.data()[i]);
        if (ch >= 32 && ch < 127) run += ch;
        else {
            if (run.size() > best.size()) best = run;
            run.clear();
        }
    }
    if (run.size() > best.size()) best = run;
    char ent[64];
    std::snprintf(ent, sizeof ent, "%.2f bits/byte", h);
    std::string out = "a .bit2 file that is not bitfsck's .bit2 format (no 89 'BIT2' magic); not decoded: " +
                      std::to_string(file.size()) + " bytes, entropy " + ent + ", starts with " + hex;
    if (best.size() >= 4) out += ", readable header text \"" + best.substr(0, 60) + (best.size() > 60 ? "…" : "") + "\"";
    return out;
}

void read_bit2(CheckpointBuilder& b) {
    const MappedFile& file = *b.file;
    const std::string fname = file.display_name();
    auto fixed = file.bytes(0, kFixedHeader, ".bit2 header");
    std::uint32_t version, flags;
    std::uint64_t n;
    std::memcpy(&version, fixed.data() + 8, 4);
    std::memcpy(&flags, fixed.data() + 12, 4);
    std::memcpy(&n, fixed.data() + 16, 8);
    if (version != kBit2Version)
        throw FormatError(fname, ".bit2 version " + std::to_string(version) + " is not supported (this bitfsck reads version " +
                                     std::to_string(kBit2Version) + ")");
    if (flags != 0) throw FormatError(fname, ".bit2 flags " + std::to_string(flags) + " are not supported (must be 0)");
    if (n > kMaxJson || n > file.size() - kFixedHeader)
        throw FormatError(fname, ".bit2 header claims " + std::to_string(n) + " bytes of JSON, past the end of the file");
    auto json_bytes = file.bytes(kFixedHeader, n, ".bit2 JSON header");
    nlohmann::json header = nlohmann::json::parse(reinterpret_cast<const char*>(json_bytes.data()),
                                                  reinterpret_cast<const char*>(json_bytes.data()) + json_bytes.size(), nullptr, false);
    if (header.is_discarded() || !header.is_object()) throw FormatError(fname, ".bit2 JSON header is not a JSON object");
    const std::uint64_t data_start = kFixedHeader + n;
    const std::uint64_t data_size = file.size() - data_start;

    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& key = it.key();
        const auto& info = it.value();
        if (key == "__metadata__") {
            if (!info.is_object()) throw FormatError(fname, ".bit2 __metadata__ is not an object");
            for (auto m = info.begin(); m != info.end(); ++m)
                b.metadata.emplace_back(m.key(), m.value().is_string() ? m.value().get<std::string>() : m.value().dump());
            continue;
        }
        const std::string where = fname + ": tensor '" + key + "'";
        if (!info.is_object() || !info.contains("encoding") || !info["encoding"].is_string() || !info.contains("shape") ||
            !info["shape"].is_array())
            throw FormatError(where, "needs an encoding and a shape");
        auto offsets = [&](const char* field) {
            if (!info.contains(field) || !info[field].is_array() || info[field].size() != 2 || !info[field][0].is_number_unsigned() ||
                !info[field][1].is_number_unsigned())
                throw FormatError(where, std::string("malformed ") + field);
            const auto begin = info[field][0].get<std::uint64_t>(), end = info[field][1].get<std::uint64_t>();
            if (end < begin || end > data_size)
                throw FormatError(where, std::string(field) + " [" + std::to_string(begin) + ", " + std::to_string(end) +
                                             ") run past the data (" + std::to_string(data_size) + " bytes)");
            return std::pair{begin, end};
        };
        TensorEntry e;
        e.name = key;
        e.path = key;
        e.in_state_dict = true;
        e.storage_key = key;
        for (const auto& d : info["shape"]) {
            if (!d.is_number_unsigned() || d.get<std::uint64_t>() > (std::uint64_t(1) << 40))
                throw FormatError(where, "shape has a negative, non-integer or absurd dimension");
            e.shape.push_back(d.get<std::int64_t>());
        }
        const std::string enc = info["encoding"].get<std::string>();
        const auto [begin, end] = offsets("data_offsets");
        e.storage_file_offset = data_start + begin;
        e.storage_nbytes = end - begin;
        if (enc == "plain") {
            if (!info.contains("dtype") || !info["dtype"].is_string()) throw FormatError(where, "a plain tensor needs a dtype");
            auto dt = dtype_from_safetensors(info["dtype"].get<std::string>());
            if (!dt) throw FormatError(where, "unknown dtype '" + info["dtype"].get<std::string>() + "'");
            e.dtype = *dt;
            if (e.storage_nbytes != e.nbytes())
                throw FormatError(where, "holds " + std::to_string(e.storage_nbytes) + " bytes but its shape " + shape_text(e.shape) +
                                             " needs " + std::to_string(e.nbytes()));
            TensorData check(file, e);
            b.tensors.push_back(std::move(e));
            continue;
        }
        if (enc == "ternary2") e.encoding = TensorEncoding::Bit2Ternary;
        else if (enc == "sign1") e.encoding = TensorEncoding::Bit2Sign;
        else throw FormatError(where, "unknown encoding '" + enc + "' (plain, ternary2 and sign1 are defined)");
        e.dtype = DType::F32;
        e.packed.offset = e.storage_file_offset;
        e.packed.nbytes = e.storage_nbytes;
        e.packed.parts = {key};
        const std::string mode = info.contains("scale") && info["scale"].is_string() ? info["scale"].get<std::string>() : "";
        const std::int64_t numel = e.numel();
        const std::int64_t rows = e.shape.empty() ? 1 : e.shape[0];
        std::int64_t count;
        if (mode == "tensor") count = 1, e.packed.scale_group = std::max<std::int64_t>(numel, 1);
        else if (mode == "channel" && rows > 0) count = rows, e.packed.scale_group = numel / rows;
        else throw FormatError(where, "scale must be \"tensor\" or \"channel\" (for a tensor with rows), not '" + mode + "'");
        if (e.encoding == TensorEncoding::Bit2Sign && mode != "channel")
            throw FormatError(where, "a sign plane has one alpha per output channel (scale \"channel\")");
        const auto [sb, se] = offsets("scale_offsets");
        if (se - sb != static_cast<std::uint64_t>(count) * 4)
            throw FormatError(where, "has " + std::to_string(se - sb) + " bytes of scales, expected " + std::to_string(count) +
                                         " float32 values");
        auto sbytes = file.bytes(data_start + sb, se - sb, "scales");
        e.packed.scales.resize(static_cast<std::size_t>(count));
        std::memcpy(e.packed.scales.data(), sbytes.data(), sbytes.size());
        TensorData check(file, e);  // packed size against the shape, exactly
        check.check_codes();
        b.tensors.push_back(std::move(e));
    }
    std::stable_sort(b.tensors.begin(), b.tensors.end(),
                     [](const TensorEntry& a, const TensorEntry& c) { return a.storage_file_offset < c.storage_file_offset; });
    b.state_dict_path = "";
    b.notes.push_back(".bit2 version " + std::to_string(version) + " (bitfsck's packed container)");
}

void write_bit2(const std::filesystem::path& path, const std::vector<Bit2Tensor>& tensors,
                const std::vector<std::pair<std::string, std::string>>& metadata) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        header["__metadata__"] = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) header["__metadata__"][k] = v;
    }
    std::string data;
    auto append = [&](const void* p, std::size_t n) {
        const std::uint64_t begin = data.size();
        data.append(static_cast<const char*>(p), n);
        while (data.size() % 8) data.push_back('\0');  // keeps float scales 4-byte aligned
        return nlohmann::ordered_json::array({begin, begin + n});
    };
    for (const auto& t : tensors) {
        nlohmann::ordered_json j;
        if (!t.ternary) {
            j["encoding"] = "plain";
            j["dtype"] = std::string(dtype_safetensors_name(t.dtype));
            j["shape"] = t.shape;
            j["data_offsets"] = append(t.plain.data(), t.plain.size());
            header[t.name] = j;
            continue;
        }
        const TernaryTensor& v = *t.ternary;
        const bool binary = std::none_of(v.codes.begin(), v.codes.end(), [](std::int8_t c) { return c == 0; }) && !v.codes.empty() &&
                            !v.shape.empty();
        std::vector<float> scales;
        std::string mode;
        if (v.per_tensor() && !binary) scales = v.scales, mode = "tensor";
        else if (v.per_tensor()) scales.assign(static_cast<std::size_t>(v.rows()), v.scales[0]), mode = "channel";
        else if (v.per_channel()) scales = v.scales, mode = "channel";
        else
            throw Error(path.string() + ": tensor '" + t.name + "' has " + std::to_string(v.scales.size()) +
                        " scales (one per block): .bit2 stores one per tensor or per output channel");
        std::vector<std::uint8_t> codes = binary ? pack_sign_plane(v.codes) : pack_i2s(v.codes);
        j["encoding"] = binary ? "sign1" : "ternary2";
        j["shape"] = v.shape;
        j["scale"] = mode;
        j["data_offsets"] = append(codes.data(), codes.size());
        j["scale_offsets"] = append(scales.data(), scales.size() * 4);
        header[t.name] = j;
    }
    std::string json = header.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    while ((kFixedHeader + json.size()) % kBit2HeaderAlign) json.push_back(' ');
    std::string out(reinterpret_cast<const char*>(kBit2Magic.data()), kBit2Magic.size());
    const std::uint32_t version = kBit2Version, flags = 0;
    const std::uint64_t n = json.size();
    out.append(reinterpret_cast<const char*>(&version), 4);
    out.append(reinterpret_cast<const char*>(&flags), 4);
    out.append(reinterpret_cast<const char*>(&n), 8);
    out += json;
    out += data;
    write_file_atomically(path, out);
}

}  // namespace bitfsck::io
