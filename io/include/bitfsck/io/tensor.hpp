#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bitfsck/io/dtype.hpp"

namespace bitfsck::io {

class MappedFile;

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
    std::uint64_t storage_file_offset = 0;  // absolute file offset of the storage's first byte
    std::uint64_t storage_nbytes = 0;
    std::optional<std::string> shared_with;  // name of the first tensor that uses the same storage
    bool requires_grad = false;
    bool is_parameter = false;

    std::int64_t numel() const;
    std::uint64_t nbytes() const;        // numel * element size
    bool is_contiguous() const;          // row-major with no gaps
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

    // Drop the pages of this tensor from resident memory (no-op for in-memory data).
    void release() const;

private:
    const MappedFile* file_ = nullptr;
    const std::byte* base_ = nullptr;   // element 0 of the storage
    std::uint64_t span_begin_ = 0, span_bytes_ = 0;  // file range this tensor touches
    DType dtype_ = DType::F32;
    std::vector<std::int64_t> shape_, stride_;
    std::int64_t storage_offset_ = 0;
    std::int64_t numel_ = 0;
    bool contiguous_ = true;
};

// Half and bfloat16 conversions used by readers and writers.
float half_to_float(std::uint16_t h);
float bfloat16_to_float(std::uint16_t b);
std::uint16_t float_to_half(float f);
std::uint16_t float_to_bfloat16(float f);

}  // namespace bitfsck::io
