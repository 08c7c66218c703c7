// Element types a tensor can hold.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pg {

/// Element type of a tensor.
enum class DType : uint8_t { F32, F64, I64, I32 };

/// Bytes per element.
size_t dtype_size(DType dt);
/// Short name: "f32", "f64", "i64", "i32".
const char* dtype_name(DType dt);
/// True for f32 and f64.
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

}  // namespace pg
