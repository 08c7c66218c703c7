// Element types a tensor can hold.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/bfloat16.h"

namespace pg {

/// Element type of a tensor. BF16 only stores values (copies, conversions, views, matmul
/// operands and safetensors files); arithmetic on it is a pg::Error: convert to F32 first.
enum class DType : uint8_t { F32, F64, I64, I32, BF16 };

/// Bytes per element.
size_t dtype_size(DType dt);
/// Short name: "f32", "f64", "i64", "i32", "bf16".
const char* dtype_name(DType dt);
/// True for the floating dtypes that ops compute in: f32 and f64 (not the storage-only bf16).
bool is_floating(DType dt);

/// Maps a C++ type to its DType.
template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::F64;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::I64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<BFloat16>() {
  return DType::BF16;
}

}  // namespace pg
