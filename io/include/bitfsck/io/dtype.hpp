#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace bitfsck::io {

// Element types of tensors as PyTorch and safetensors name them.
enum class DType : std::uint8_t {
    F64, F32, F16, BF16,
    I64, I32, I16, I8, U8, Bool,
    U16, U32, U64,
    C64, C128,
    F8_E4M3, F8_E5M2,
};

std::size_t dtype_size(DType t);
bool dtype_is_floating(DType t);     // F64, F32, F16, BF16, F8_*
std::string_view dtype_name(DType t);  // torch spelling: "float32", "bfloat16", "int64", ...

// "FloatStorage" -> F32 (the torch.*Storage class names in pickles).
std::optional<DType> dtype_from_storage_class(std::string_view name);
// "float32" / "bfloat16" / "long" ... (torch dtype attribute names, as in torch.float32).
std::optional<DType> dtype_from_torch_name(std::string_view name);
// "F32", "BF16", "I64", "BOOL" ... (safetensors header spelling).
std::optional<DType> dtype_from_safetensors(std::string_view name);
std::string_view dtype_safetensors_name(DType t);
// The torch.*Storage class that torch.save writes for this dtype ("FloatStorage").
std::string_view dtype_storage_class(DType t);

}  // namespace bitfsck::io
