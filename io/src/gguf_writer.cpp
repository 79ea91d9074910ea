// Writes GGUF v3: header, key/values, tensor infos (dims innermost-first), padding, data with
// every tensor at a multiple of the alignment.
#include <cstring>
#include <fstream>

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/error.hpp"
#include "bitfsck/io/gguf.hpp"

namespace bitfsck::io {
namespace {

struct Out {
    std::string bytes;
    template <typename T>
    void put(T v) {
        bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    void str(const std::string& s) {
        put<std::uint64_t>(s.size());
        bytes += s;
    }
    void pad(std::uint64_t alignment) {
        while (bytes.size() % alignment) bytes.push_back('\0');
    }
};

void put_value(Out& o, const GgufMeta& v) {
    std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string>) {
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::String));
                o.str(x);
            } else if constexpr (std::is_same_v<T, std::uint32_t>) {
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::U32));
                o.put(x);
            } else if constexpr (std::is_same_v<T, std::int32_t>) {
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::I32));
                o.put(x);
            } else if constexpr (std::is_same_v<T, std::uint64_t>) {
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::U64));
                o.put(x);
            } else if constexpr (std::is_same_v<T, float>) {
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::F32));
                o.put(x);
            } else if constexpr (std::is_same_v<T, bool>) {
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::Bool));
                o.put<std::uint8_t>(x ? 1 : 0);
            } else {
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::Array));
                o.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::String));
                o.put<std::uint64_t>(x.size());
                for (const auto& s : x) o.str(s);
            }
        },
        v);
}

}  // namespace

void write_gguf(const std::filesystem::path& path, const std::vector<std::pair<std::string, GgufMeta>>& metadata,
                const std::vector<GgufTensorOut>& tensors, std::uint32_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw Error(path.string() + ": GGUF alignment " + std::to_string(alignment) + " is not a power of two");
    Out o;
    o.bytes = "GGUF";
    o.put<std::uint32_t>(3);
    o.put<std::uint64_t>(tensors.size());
    const bool write_alignment = alignment != 32;
    o.put<std::uint64_t>(metadata.size() + (write_alignment ? 1 : 0));
    for (const auto& [k, v] : metadata) {
        o.str(k);
        put_value(o, v);
    }
    if (write_alignment) {
        o.str("general.alignment");
        put_value(o, alignment);
    }
    std::uint64_t offset = 0;
    for (const auto& t : tensors) {
        if (t.name.size() >= 64)
            throw Error(path.string() + ": tensor name '" + t.name + "' is longer than ggml's 63 characters");
        o.str(t.name);
        o.put<std::uint32_t>(static_cast<std::uint32_t>(t.shape.size()));
        for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) o.put<std::uint64_t>(static_cast<std::uint64_t>(*it));
        o.put<std::uint32_t>(static_cast<std::uint32_t>(t.type));
        o.put<std::uint64_t>(offset);
        offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    o.pad(alignment);
    for (const auto& t : tensors) {
        o.bytes.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
        o.pad(alignment);
    }
    write_file_atomically(path, o.bytes);
}

}  // namespace bitfsck::io
