#include "bitfsck/io/dtype.hpp"

#include <array>

namespace bitfsck::io {
namespace {

struct DTypeInfo {
    DType type;
    std::size_t size;
    bool floating;
    std::string_view torch_name;
    std::string_view safetensors_name;
    std::string_view storage_class;
};

// Indexed by the enum's value; the static_assert below keeps the two in step.
// Torch itself pickles float8 and unsigned 16/32/64-bit tensors as an UntypedStorage plus a dtype
// (_rebuild_tensor_v3); the *Storage names listed for them are the ones other tools write.
constexpr std::array<DTypeInfo, 17> kTypes{{
    {DType::F64, 8, true, "float64", "F64", "DoubleStorage"},
    {DType::F32, 4, true, "float32", "F32", "FloatStorage"},
    {DType::F16, 2, true, "float16", "F16", "HalfStorage"},
    {DType::BF16, 2, true, "bfloat16", "BF16", "BFloat16Storage"},
    {DType::I64, 8, false, "int64", "I64", "LongStorage"},
    {DType::I32, 4, false, "int32", "I32", "IntStorage"},
    {DType::I16, 2, false, "int16", "I16", "ShortStorage"},
    {DType::I8, 1, false, "int8", "I8", "CharStorage"},
    {DType::U8, 1, false, "uint8", "U8", "ByteStorage"},
    {DType::Bool, 1, false, "bool", "BOOL", "BoolStorage"},
    {DType::U16, 2, false, "uint16", "U16", "UInt16Storage"},
    {DType::U32, 4, false, "uint32", "U32", "UInt32Storage"},
    {DType::U64, 8, false, "uint64", "U64", "UInt64Storage"},
    {DType::C64, 8, false, "complex64", "C64", "ComplexFloatStorage"},
    {DType::C128, 16, false, "complex128", "C128", "ComplexDoubleStorage"},
    {DType::F8_E4M3, 1, true, "float8_e4m3fn", "F8_E4M3", "Float8_e4m3fnStorage"},
    {DType::F8_E5M2, 1, true, "float8_e5m2", "F8_E5M2", "Float8_e5m2Storage"},
}};

constexpr bool table_in_enum_order() {
    for (std::size_t i = 0; i < kTypes.size(); ++i)
        if (static_cast<std::size_t>(kTypes[i].type) != i) return false;
    return true;
}
static_assert(table_in_enum_order());

const DTypeInfo& info(DType t) {
    auto i = static_cast<std::size_t>(t);
    // An out-of-range enum value can only come from a cast of corrupt data; report it as bytes.
    return i < kTypes.size() ? kTypes[i] : kTypes[static_cast<std::size_t>(DType::U8)];
}

template <typename Field>
std::optional<DType> lookup(std::string_view name, Field field) {
    for (const auto& t : kTypes)
        if (t.*field == name) return t.type;
    return std::nullopt;
}

}  // namespace

std::size_t dtype_size(DType t) { return info(t).size; }
bool dtype_is_floating(DType t) { return info(t).floating; }
std::string_view dtype_name(DType t) { return info(t).torch_name; }
std::string_view dtype_safetensors_name(DType t) { return info(t).safetensors_name; }
std::string_view dtype_storage_class(DType t) { return info(t).storage_class; }

std::optional<DType> dtype_from_storage_class(std::string_view name) {
    if (auto t = lookup(name, &DTypeInfo::storage_class)) return t;
    // torch.save of a bare UntypedStorage (and of the new dtypes, which carry their real dtype
    // separately) records bytes: its element count is a byte count.
    if (name == "UntypedStorage") return DType::U8;
    return std::nullopt;
}

std::optional<DType> dtype_from_torch_name(std::string_view name) {
    if (auto t = lookup(name, &DTypeInfo::torch_name)) return t;
    struct Alias {
        std::string_view name;
        DType type;
    };
    // The attribute aliases torch defines (torch.float is torch.float32, ...).
    static constexpr Alias kAliases[] = {
        {"double", DType::F64}, {"float", DType::F32}, {"half", DType::F16},
        {"long", DType::I64},   {"int", DType::I32},   {"short", DType::I16},
        {"cfloat", DType::C64}, {"cdouble", DType::C128},
    };
    for (const auto& a : kAliases)
        if (a.name == name) return a.type;
    return std::nullopt;
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
    return lookup(name, &DTypeInfo::safetensors_name);
}

}  // namespace bitfsck::io
