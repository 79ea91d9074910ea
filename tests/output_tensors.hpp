#pragma once
// Building io::OutputTensor values for the writer tests (pt, safetensors, and their PyTorch
// cross-checks), so that every writer is fed the same edge cases.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bitfsck/io/pt_writer.hpp"

namespace bitfsck::test {

template <class T>
std::vector<std::byte> to_bytes(const std::vector<T>& v) {
    std::vector<std::byte> out(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
    return out;
}

inline io::OutputTensor output_tensor(std::string name, io::DType dtype, std::vector<std::int64_t> shape, std::vector<std::byte> data) {
    io::OutputTensor t;
    t.name = std::move(name);
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data = std::move(data);
    return t;
}

// One small tensor of every dtype but float64 (whose edge values differ per test), with the
// values that break careless writers: -0, subnormals, infinities, extreme integers, a scalar and
// an empty tensor.
inline std::vector<io::OutputTensor> small_tensors_of_every_dtype() {
    std::vector<io::OutputTensor> ts;
    ts.push_back(output_tensor("f32", io::DType::F32, {2, 3}, to_bytes(std::vector<float>{1.f, -0.f, 3.25f, 1e-45f, INFINITY, -7.5f})));
    ts.push_back(output_tensor("f16", io::DType::F16, {4}, to_bytes(std::vector<std::uint16_t>{0x3C00, 0x8000, 0x7BFF, 0x0001})));
    ts.push_back(output_tensor("bf16", io::DType::BF16, {2, 2}, to_bytes(std::vector<std::uint16_t>{0x3F80, 0xBF80, 0x7F80, 0x0001})));
    ts.push_back(output_tensor("i64", io::DType::I64, {3}, to_bytes(std::vector<std::int64_t>{INT64_MIN, -1, INT64_MAX})));
    ts.push_back(output_tensor("i32", io::DType::I32, {2}, to_bytes(std::vector<std::int32_t>{INT32_MIN, 12345})));
    ts.push_back(output_tensor("i16", io::DType::I16, {2}, to_bytes(std::vector<std::int16_t>{-32768, 32767})));
    ts.push_back(output_tensor("i8", io::DType::I8, {3}, to_bytes(std::vector<std::int8_t>{-128, 0, 127})));
    ts.push_back(output_tensor("u8", io::DType::U8, {3}, to_bytes(std::vector<std::uint8_t>{0, 128, 255})));
    ts.push_back(output_tensor("bool", io::DType::Bool, {5}, to_bytes(std::vector<std::uint8_t>{1, 0, 0, 1, 1})));
    ts.push_back(output_tensor("scalar", io::DType::F32, {}, to_bytes(std::vector<float>{2.5f})));
    ts.push_back(output_tensor("empty", io::DType::F32, {0, 3}, {}));
    return ts;
}

}  // namespace bitfsck::test
