#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "bitfsck/io/dtype.hpp"

using namespace bitfsck::io;

namespace {
const std::vector<DType> kAll = {
    DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32,  DType::I16,     DType::I8,      DType::U8,
    DType::Bool, DType::U16, DType::U32, DType::U64, DType::C64, DType::C128, DType::F8_E4M3, DType::F8_E5M2,
};
}

TEST_CASE("dtype sizes and floating flags") {
    CHECK(dtype_size(DType::F64) == 8);
    CHECK(dtype_size(DType::F32) == 4);
    CHECK(dtype_size(DType::F16) == 2);
    CHECK(dtype_size(DType::BF16) == 2);
    CHECK(dtype_size(DType::I64) == 8);
    CHECK(dtype_size(DType::I32) == 4);
    CHECK(dtype_size(DType::I16) == 2);
    CHECK(dtype_size(DType::I8) == 1);
    CHECK(dtype_size(DType::U8) == 1);
    CHECK(dtype_size(DType::Bool) == 1);
    CHECK(dtype_size(DType::U16) == 2);
    CHECK(dtype_size(DType::U32) == 4);
    CHECK(dtype_size(DType::U64) == 8);
    CHECK(dtype_size(DType::C64) == 8);
    CHECK(dtype_size(DType::C128) == 16);
    CHECK(dtype_size(DType::F8_E4M3) == 1);
    CHECK(dtype_size(DType::F8_E5M2) == 1);

    for (auto t : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::F8_E5M2})
        CHECK(dtype_is_floating(t));
    for (auto t : {DType::I64, DType::I32, DType::I16, DType::I8, DType::U8, DType::Bool, DType::U16, DType::U32,
                   DType::U64, DType::C64, DType::C128})
        CHECK_FALSE(dtype_is_floating(t));
}

TEST_CASE("dtype torch names") {
    CHECK(dtype_name(DType::F32) == "float32");
    CHECK(dtype_name(DType::BF16) == "bfloat16");
    CHECK(dtype_name(DType::I64) == "int64");
    CHECK(dtype_name(DType::Bool) == "bool");
    CHECK(dtype_name(DType::C64) == "complex64");
    CHECK(dtype_name(DType::F8_E4M3) == "float8_e4m3fn");
    CHECK(dtype_name(DType::F8_E5M2) == "float8_e5m2");
    for (auto t : kAll) {
        INFO(dtype_name(t));
        CHECK(dtype_from_torch_name(dtype_name(t)) == t);
    }
    CHECK(dtype_from_torch_name("float") == DType::F32);
    CHECK(dtype_from_torch_name("double") == DType::F64);
    CHECK(dtype_from_torch_name("half") == DType::F16);
    CHECK(dtype_from_torch_name("long") == DType::I64);
    CHECK(dtype_from_torch_name("int") == DType::I32);
    CHECK(dtype_from_torch_name("short") == DType::I16);
    CHECK(dtype_from_torch_name("cfloat") == DType::C64);
    CHECK_FALSE(dtype_from_torch_name("Float32").has_value());
    CHECK_FALSE(dtype_from_torch_name("").has_value());
    CHECK_FALSE(dtype_from_torch_name("qint8").has_value());
}

TEST_CASE("dtype storage classes") {
    CHECK(dtype_from_storage_class("DoubleStorage") == DType::F64);
    CHECK(dtype_from_storage_class("FloatStorage") == DType::F32);
    CHECK(dtype_from_storage_class("HalfStorage") == DType::F16);
    CHECK(dtype_from_storage_class("BFloat16Storage") == DType::BF16);
    CHECK(dtype_from_storage_class("LongStorage") == DType::I64);
    CHECK(dtype_from_storage_class("IntStorage") == DType::I32);
    CHECK(dtype_from_storage_class("ShortStorage") == DType::I16);
    CHECK(dtype_from_storage_class("CharStorage") == DType::I8);
    CHECK(dtype_from_storage_class("ByteStorage") == DType::U8);
    CHECK(dtype_from_storage_class("BoolStorage") == DType::Bool);
    CHECK(dtype_from_storage_class("ComplexFloatStorage") == DType::C64);
    CHECK(dtype_from_storage_class("ComplexDoubleStorage") == DType::C128);
    CHECK(dtype_from_storage_class("Float8_e4m3fnStorage") == DType::F8_E4M3);
    CHECK(dtype_from_storage_class("Float8_e5m2Storage") == DType::F8_E5M2);
    CHECK(dtype_from_storage_class("UInt16Storage") == DType::U16);
    CHECK(dtype_from_storage_class("UntypedStorage") == DType::U8);
    CHECK_FALSE(dtype_from_storage_class("QInt8Storage").has_value());
    CHECK_FALSE(dtype_from_storage_class("Storage").has_value());
    for (auto t : kAll) {
        INFO(dtype_name(t));
        CHECK(dtype_from_storage_class(dtype_storage_class(t)) == t);
    }
}

TEST_CASE("dtype safetensors names") {
    CHECK(dtype_from_safetensors("F32") == DType::F32);
    CHECK(dtype_from_safetensors("BF16") == DType::BF16);
    CHECK(dtype_from_safetensors("BOOL") == DType::Bool);
    CHECK(dtype_from_safetensors("F8_E4M3") == DType::F8_E4M3);
    CHECK(dtype_from_safetensors("U64") == DType::U64);
    CHECK_FALSE(dtype_from_safetensors("f32").has_value());
    CHECK_FALSE(dtype_from_safetensors("float32").has_value());
    for (auto t : kAll) {
        INFO(dtype_name(t));
        CHECK(dtype_from_safetensors(dtype_safetensors_name(t)) == t);
    }
}
