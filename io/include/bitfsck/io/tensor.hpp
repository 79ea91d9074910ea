#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bitfsck/io/dtype.hpp"

namespace bitfsck::io {

class MappedFile;

// How a tensor's bytes encode its values. Plain: `dtype` elements walked by shape/stride/offset.
// The others are packed layouts decoded to code × scale (see docs/formats.md for each layout);
// their TensorEntry has dtype F32 (the float view) and the bytes described by `packed`.
enum class TensorEncoding : std::uint8_t {
    Plain,
    I2S,          // Distillix .pt export: 4 codes per byte, first element in the top bits, code = w+1
    HFPacked,     // Hugging Face BitNet: row block i of R = ceil(out/4) rows in bits 2i..2i+1
    TQ1_0,        // ggml: 256-element blocks, 5 trits per byte (base 3), fp16 scale at the end
    TQ2_0,        // ggml: 256-element blocks, 2 bits per code, fp16 scale at the end
    I2S_GGUF,     // bitnet.cpp I2_S: one of three build-dependent layouts (I2sLayout below), one float scale after the codes
    Q8_0,         // ggml: 32-element blocks, fp16 scale then 32 int8 (not ternary)
    Bit2Sign,     // .bit2: 1-bit sign plane, value = ±alpha
    Bit2Ternary,  // .bit2: 2-bit codes as I2S
    Opaque,       // bytes located but not decodable (an unsupported or ambiguous ggml type)
};
std::string_view encoding_name(TensorEncoding e);

// bitnet.cpp I2_S has three layouts of the same size, chosen by the build that quantized the file
// and recorded nowhere in it (src/ggml-bitnet-mad.cpp quantize_i2_s, include/gemm-config.h):
enum class I2sLayout : std::uint8_t {
    ActParallel,  // x86 with ACT_PARALLEL (the default) and every Python writer: blocks of 128
                  // elements in 32 bytes, element j at byte j%32, bits 6-2·(j/32)
    Interleaved,  // x86 without ACT_PARALLEL: 4 rows per byte, row r%4 at bits 6-2·(r%4)
    Arm,          // ARM NEON builds since 2025-11: blocks of 64 elements in 16 bytes
};
std::string_view i2s_layout_name(I2sLayout l);  // "act-parallel", "interleaved", "arm"
std::optional<I2sLayout> parse_i2s_layout(std::string_view name);
// Encodings whose values are code × scale with codes in {-1, 0, +1}.
bool encoding_is_ternary(TensorEncoding e);

// Where and how a packed tensor's bytes are laid out.
struct PackedLayout {
    std::uint64_t offset = 0;          // absolute file offset of the packed bytes
    std::uint64_t nbytes = 0;          // exactly what the logical shape needs
    // Scales outside the packed bytes (GGUF block types keep theirs inside the blocks: empty).
    // Element i uses scales[i / scale_group]: one per tensor (group = numel) or per output
    // channel (group = the product of the other dimensions).
    std::vector<float> scales;
    std::int64_t scale_group = 0;
    bool reciprocal_scale = false;     // value = code / scale (HF weight_scale holding 1/absmean)
    std::int64_t packed_rows = 0;      // HFPacked: R, the rows of the stored uint8 matrix
    I2sLayout i2s_layout = I2sLayout::ActParallel;  // I2S_GGUF: the layout assumed when it was read
    std::vector<std::string> parts;    // the stored tensors folded into this one, by name
    std::string note;                  // what is known about an Opaque tensor, or the scale convention
};

// One tensor of a checkpoint: where its bytes live and how to walk them. Built by the readers,
// already validated (the storage holds every element the shape and strides reach).
struct TensorEntry {
    std::string name;                 // key in the state dict, or a path like "optimizer.state.0.exp_avg"
    std::string path;                 // path in the object tree ("model_state_dict/layers.0.mlp.up_proj.weight")
    bool in_state_dict = false;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::vector<std::int64_t> stride;  // in elements
    std::int64_t storage_offset = 0;   // in elements
    std::string storage_key;           // the pickle's storage key ("0", "1", ...) or the safetensors name
    std::string record;                // zip record name, or "" for formats without records
    std::uint32_t shard = 0;           // which file of the checkpoint holds the bytes (Checkpoint::shards())
    std::uint64_t storage_file_offset = 0;  // absolute file offset of the storage's first byte
    std::uint64_t storage_nbytes = 0;
    std::optional<std::string> shared_with;  // name of the first tensor that uses the same storage
    bool requires_grad = false;
    bool is_parameter = false;
    TensorEncoding encoding = TensorEncoding::Plain;
    PackedLayout packed;               // meaningful when encoding != Plain

    std::int64_t numel() const;
    std::uint64_t nbytes() const;        // numel * element size (the float view for packed tensors)
    std::uint64_t stored_nbytes() const; // bytes in the file: nbytes(), or the packed bytes
    bool is_contiguous() const;          // row-major with no gaps
    // A view that repeats a much smaller storage (stride 0, torch's expand): it can name 10^12
    // elements from a kilobyte file. Such a tensor is not what a weight is; readers that walk
    // every element leave it out, saying why.
    bool is_broadcast_view() const;
};

// Reads a tensor's elements in logical (row-major) order, honouring strides and offset,
// converting to float64 or float32. Holds no copy of the data.
class TensorData {
public:
    TensorData(const MappedFile& file, const TensorEntry& entry);
    // For tests and in-memory tensors: a contiguous buffer of `dtype` elements.
    TensorData(std::span<const std::byte> bytes, DType dtype, std::vector<std::int64_t> shape);

    DType dtype() const { return dtype_; }
    const std::vector<std::int64_t>& shape() const { return shape_; }
    std::int64_t numel() const { return numel_; }
    std::int64_t rows() const;  // shape[0] (1 for a scalar)
    std::int64_t cols() const;  // product of the remaining dims (1 for vectors)

    // Converts elements [first, first+count) into out. Throws FormatError past numel().
    void read(std::int64_t first, std::int64_t count, double* out) const;
    void read(std::int64_t first, std::int64_t count, float* out) const;

    TensorEncoding encoding() const { return encoding_; }
    bool is_ternary() const { return encoding_is_ternary(encoding_); }
    // Ternary codes (-1, 0, +1) of elements [first, first+count); FormatError for a tensor that is
    // not ternary-encoded, and for an impossible code (its element and byte are named).
    void read_codes(std::int64_t first, std::int64_t count, std::int8_t* out) const;
    // The scale multiplying each element's code (already inverted for reciprocal scales).
    void read_scales(std::int64_t first, std::int64_t count, float* out) const;
    // Checks every code of a packed tensor (no-op for plain ones); FormatError at the first bad one.
    void check_codes() const;

    // Drop the pages of this tensor from resident memory (no-op for in-memory data).
    void release() const;
    // Drop the pages that hold only elements [first, first+count), for a contiguous plain tensor
    // read in order (a no-op for strided, packed and in-memory data, which release() covers):
    // what lets a long tensor be read with a bounded resident footprint.
    void release(std::int64_t first, std::int64_t count) const;
    // The file holding the tensor (null for in-memory data) and the byte range it touches.
    const MappedFile* file() const { return file_; }
    std::uint64_t span_begin() const { return span_begin_; }
    std::uint64_t span_bytes() const { return span_bytes_; }
    // The file bytes past elements [0, first+count): where a reader in file order has got to
    // (the whole span for strided and packed tensors, whose elements are not in byte order).
    std::uint64_t span_end_after(std::int64_t first, std::int64_t count) const;

private:
    const MappedFile* file_ = nullptr;
    const std::byte* base_ = nullptr;   // element 0 of the storage
    std::uint64_t span_begin_ = 0, span_bytes_ = 0;  // file range this tensor touches
    DType dtype_ = DType::F32;
    std::vector<std::int64_t> shape_, stride_;
    std::int64_t storage_offset_ = 0;
    std::int64_t numel_ = 0;
    bool contiguous_ = true;
    // Packed encodings only.
    TensorEncoding encoding_ = TensorEncoding::Plain;
    std::string name_;
    std::uint64_t packed_nbytes_ = 0;
    std::vector<float> scales_;
    std::int64_t scale_group_ = 0;
    bool reciprocal_ = false;
    std::int64_t packed_rows_ = 0;
    I2sLayout i2s_layout_ = I2sLayout::ActParallel;

    void init_packed(const MappedFile& file, const TensorEntry& entry);
    template <typename Out>
    void read_packed(std::int64_t first, std::int64_t count, Out* out) const;
};

// Half and bfloat16 conversions used by readers and writers.
float half_to_float(std::uint16_t h);
float bfloat16_to_float(std::uint16_t b);
std::uint16_t float_to_half(float f);
std::uint16_t float_to_bfloat16(float f);

// Values stored as `dtype` (float64, float32, float16 or bfloat16), little-endian, ready for a
// writer. Throws bitfsck::Error naming `what` for any other dtype.
std::vector<std::byte> encode_float_values(std::span<const double> values, DType dtype, const std::string& what);
std::vector<std::byte> encode_float_values(std::span<const float> values, DType dtype, const std::string& what);

}  // namespace bitfsck::io
