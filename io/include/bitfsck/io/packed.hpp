#pragma once
// Packed ternary layouts: sizes, decoding of codes, code checks, packers, and the in-memory
// ternary view (int8 codes + scales) that every packed format is read into and written from.
// The byte layouts are documented in docs/formats.md.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bitfsck/io/tensor.hpp"

namespace bitfsck::io {

constexpr std::int64_t kGgmlBlockK = 256;    // TQ1_0 / TQ2_0 block (QK_K)
constexpr std::int64_t kTq1BlockBytes = 54;  // qs[48], qh[4], fp16 d
constexpr std::int64_t kTq2BlockBytes = 66;  // qs[64], fp16 d
constexpr std::int64_t kQ8Block = 32;        // Q8_0 block (QK8_0)
constexpr std::int64_t kQ8BlockBytes = 34;   // fp16 d, int8 qs[32]
constexpr std::int64_t kI2sGgufBlock = 128;  // bitnet.cpp QK_I2_S on x86
constexpr std::int64_t kI2sGgufTail = 32;    // the float scale and its alignment padding


// Packed bytes of one tensor, for decoding without a file.
struct PackedSource {
    TensorEncoding encoding = TensorEncoding::Plain;
    const std::byte* data = nullptr;
    std::uint64_t nbytes = 0;
    std::int64_t numel = 0;
    std::int64_t cols = 1;          // product of the dimensions after the first
    std::int64_t packed_rows = 0;   // HFPacked: R
    I2sLayout i2s_layout = I2sLayout::ActParallel;  // I2S_GGUF
    std::string where;              // "<file>: tensor 'x'" for error messages
};

// Bytes `encoding` needs for `shape` (PyTorch order); throws FormatError (with `where`) when the
// layout cannot hold that shape (TQ rows not a multiple of 256, HF rows not 4·R, ...).
std::uint64_t packed_size(TensorEncoding encoding, const std::vector<std::int64_t>& shape, std::int64_t packed_rows,
                          const std::string& where, I2sLayout i2s_layout = I2sLayout::ActParallel);

// Codes of elements [first, first+count): -1/0/+1 (Q8_0: its int8 quants). An impossible code
// (2-bit code 3, a TQ1_0 byte no packer writes) throws FormatError naming element and byte.
void decode_codes(const PackedSource& src, std::int64_t first, std::int64_t count, std::int8_t* out);
// The scale stored inside the blocks for element i (TQ1_0, TQ2_0, Q8_0: fp16 d; I2S_GGUF: the
// trailing float). 0 for encodings whose scales live outside the packed bytes.
float block_scale(const PackedSource& src, std::int64_t element);
bool encoding_has_block_scales(TensorEncoding e);
// Checks every code of the tensor, with a table per byte (fast: 2 bits per weight).
void check_codes(const PackedSource& src);

// Packers. Codes are -1/0/+1 in row-major order; the result holds exactly packed_size() bytes.
std::vector<std::uint8_t> pack_i2s(std::span<const std::int8_t> codes);  // I2S and Bit2Ternary
std::vector<std::uint8_t> pack_hf(std::span<const std::int8_t> codes, std::int64_t rows, std::int64_t cols);
std::vector<std::uint8_t> pack_sign_plane(std::span<const std::int8_t> codes);  // codes ±1; bit 1 = +1
// One fp16 scale per 256-element block (already rounded to half by the caller or not).
std::vector<std::uint8_t> pack_tq2_0(std::span<const std::int8_t> codes, std::span<const float> block_scales);
std::vector<std::uint8_t> pack_tq1_0(std::span<const std::int8_t> codes, std::span<const float> block_scales);

// The ternary view of one tensor: value[i] = codes[i] * scales[i / scale_group].
struct TernaryTensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<std::int8_t> codes;
    std::vector<float> scales;
    std::int64_t scale_group = 0;

    std::int64_t numel() const { return static_cast<std::int64_t>(codes.size()); }
    std::int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
    std::int64_t cols() const;
    bool per_tensor() const { return scales.size() == 1; }
    bool per_channel() const { return scale_group == cols() && static_cast<std::int64_t>(scales.size()) == rows() && !per_tensor(); }
    float scale_at(std::int64_t i) const { return scales[static_cast<std::size_t>(i / scale_group)]; }
    // Fractions of -1, 0, +1 codes.
    std::array<double, 3> fractions() const;
};

// Reads a ternary-encoded tensor into the view; block scales collapse to one per tensor or per
// channel where they agree (blocks whose codes are all 0 carry no information and are skipped).
TernaryTensor read_ternary(const TensorData& data, const std::string& name);
// Collapses equal scales: per block → per channel → per tensor.
void collapse_scales(TernaryTensor& t);

// A float tensor holding exactly {-s, 0, +s} (one s per tensor, or one per row) → its view.
// nullopt, with the reason in *why, otherwise.
std::optional<TernaryTensor> exact_ternary(const std::string& name, const std::vector<std::int64_t>& shape,
                                           std::span<const float> values, std::string* why);

// The absmean quantizer of BitNet b1.58: gamma = max(mean|W|, 1e-5) (mean in float64, stored as
// float32), codes = clamp(round_half_even(W / gamma), -1, 1), scale = gamma. The one place that
// rule lives: analysis::effective_scale judges layers by the same gamma.
inline double bitnet_gamma(double absmean) { return absmean < 1e-5 ? 1e-5 : absmean; }  // std::max(absmean, 1e-5)
struct QuantizeLoss {
    double relative_l2 = 0;   // ||W - Q||_2 / ||W||_2
    double changed = 0;       // fraction of elements whose value changed
};
TernaryTensor absmean_quantize(const std::string& name, const std::vector<std::int64_t>& shape,
                               std::span<const float> values, QuantizeLoss* loss);

// Float values of a view, code × scale in float32 (what an unpacked export holds).
std::vector<float> ternary_values(const TernaryTensor& t);

}  // namespace bitfsck::io
