// safetensors: an 8-byte little-endian header length, a JSON header mapping names to
// {dtype, shape, data_offsets: [begin, end)} relative to the end of the header, then the data.
#include "safetensors_reader.hpp"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "bitfsck/io/error.hpp"
#include "checkpoint_builder.hpp"

namespace bitfsck::io {
namespace {

// The format caps the header at 100 MB; so do we, before allocating anything.
constexpr std::uint64_t kMaxHeader = 100'000'000;

std::uint64_t header_length(const MappedFile& file) {
    std::uint64_t n;
    std::memcpy(&n, file.data(), 8);
    return n;
}

}  // namespace

bool looks_like_safetensors(const MappedFile& file) {
    if (file.size() < 10) return false;
    std::uint64_t n = header_length(file);
    return n >= 2 && n <= kMaxHeader && n <= file.size() - 8 && static_cast<char>(file.data()[8]) == '{';
}

std::string describe_broken_safetensors(const MappedFile& file) {
    if (file.size() < 10) return "a safetensors file needs at least 10 bytes, this one has " + std::to_string(file.size());
    const std::uint64_t n = header_length(file);
    if (n > kMaxHeader || n > file.size() - 8)
        return "a corrupted safetensors header: its length field says " + std::to_string(n) + " bytes, but " +
               (n > kMaxHeader ? std::string("the format allows 100 MB") : "only " + std::to_string(file.size() - 8) + " follow it");
    return "a corrupted safetensors header: it does not start with '{' (byte 8 is " + std::to_string(static_cast<int>(file.data()[8])) + ")";
}

void read_safetensors(CheckpointBuilder& b) {
    const MappedFile& file = *b.file;
    const std::string name = file.display_name();
    std::uint64_t n = header_length(file);
    auto header_bytes = file.bytes(8, n, "safetensors header");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(reinterpret_cast<const char*>(header_bytes.data()),
                                       reinterpret_cast<const char*>(header_bytes.data()) + header_bytes.size());
    } catch (const nlohmann::json::exception& e) {
        throw FormatError(name, std::string("safetensors header is not valid JSON (") + e.what() + ")");
    }
    if (!header.is_object()) throw FormatError(name, "safetensors header is not a JSON object");
    const std::uint64_t data_start = 8 + n;
    const std::uint64_t data_size = file.size() - data_start;

    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& key = it.key();
        const auto& info = it.value();
        // Some i2s exporters store a JSON shape table as a uint8 *tensor* named __metadata__;
        // standard loaders refuse that, we read it as a tensor and packed_detect decodes it.
        const bool metadata_tensor = key == "__metadata__" && info.is_object() && info.contains("dtype") &&
                                     info.contains("data_offsets") && info.contains("shape");
        if (key == "__metadata__" && !metadata_tensor) {
            if (!info.is_object()) throw FormatError(name, "__metadata__ is not an object");
            for (auto m = info.begin(); m != info.end(); ++m)
                b.metadata.emplace_back(m.key(), m.value().is_string() ? m.value().get<std::string>() : m.value().dump());
            continue;
        }
        auto bad = [&](const std::string& what) { return FormatError(name, "tensor '" + key + "': " + what); };
        if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
            throw bad("needs dtype, shape and data_offsets");
        if (!info["dtype"].is_string()) throw bad("dtype is not a string");
        auto dtype = dtype_from_safetensors(info["dtype"].get<std::string>());
        if (!dtype) throw bad("unknown dtype '" + info["dtype"].get<std::string>() + "'");
        const auto& shape = info["shape"];
        const auto& offsets = info["data_offsets"];
        if (!shape.is_array() || !offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
            !offsets[1].is_number_unsigned())
            throw bad("malformed shape or data_offsets");
        TensorEntry e;
        e.name = key;
        e.path = key;
        e.in_state_dict = true;
        e.dtype = *dtype;
        std::uint64_t numel = 1;
        for (const auto& d : shape) {
            if (!d.is_number_unsigned()) throw bad("shape has a negative or non-integer dimension");
            auto dim = d.get<std::uint64_t>();
            if (dim != 0 && numel > (std::uint64_t(1) << 62) / dim) throw bad("shape is absurdly large");
            numel *= dim;
            e.shape.push_back(static_cast<std::int64_t>(dim));
        }
        e.stride.assign(e.shape.size(), 1);
        for (int i = static_cast<int>(e.shape.size()) - 2; i >= 0; --i)
            e.stride[i] = e.stride[i + 1] * std::max<std::int64_t>(e.shape[i + 1], 1);
        std::uint64_t begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
        if (end < begin || end > data_size)
            throw bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + ") run past the data (" +
                      std::to_string(data_size) + " bytes)");
        if (end - begin != numel * dtype_size(*dtype))
            throw bad("holds " + std::to_string(end - begin) + " bytes but its shape needs " +
                      std::to_string(numel * dtype_size(*dtype)));
        e.storage_key = key;
        e.storage_file_offset = data_start + begin;
        e.storage_nbytes = end - begin;
        b.tensors.push_back(std::move(e));
    }
    // File order, as a user reading the file expects, rather than the header's key order.
    std::stable_sort(b.tensors.begin(), b.tensors.end(),
                     [](const TensorEntry& a, const TensorEntry& c) { return a.storage_file_offset < c.storage_file_offset; });
    b.state_dict_path = "";
    b.validate_and_link();
}

}  // namespace bitfsck::io
