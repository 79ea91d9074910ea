#pragma once
// .bit2: bitfsck's own container for 1-bit and ternary weights (docs/bit2-format.md). A magic
// and version, a JSON tensor table like safetensors', then per tensor plain bytes, a 1-bit sign
// plane with one float alpha per output channel, or 2-bit ternary codes with a per-tensor or
// per-channel float scale. Read through Checkpoint::open (Format::Bit2).
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bitfsck/io/dtype.hpp"
#include "bitfsck/io/packed.hpp"

namespace bitfsck::io {

// PNG-style: a non-ASCII first byte, the name, CR LF and ^Z catch text-mode mangling.
inline constexpr std::array<unsigned char, 8> kBit2Magic = {0x89, 'B', 'I', 'T', '2', '\r', '\n', 0x1a};
inline constexpr std::uint32_t kBit2Version = 1;
inline constexpr std::uint64_t kBit2HeaderAlign = 64;  // data starts at a multiple of 64

struct Bit2Tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::optional<TernaryTensor> ternary;  // set: a packed tensor; else `plain` bytes of `dtype`
    DType dtype = DType::F32;
    std::vector<std::byte> plain;
};

// Packed tensors whose codes are all ±1 are written as sign planes (scales per output channel),
// the others as 2-bit codes; scales must be per tensor or per channel (FormatError otherwise).
// Written atomically. Throws bitfsck::Error.
void write_bit2(const std::filesystem::path& path, const std::vector<Bit2Tensor>& tensors,
                const std::vector<std::pair<std::string, std::string>>& metadata = {});

}  // namespace bitfsck::io
