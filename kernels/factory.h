// Factory functions that create and fill tensors.
#pragma once
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace pg {

/// Filled with 0.
Tensor zeros(const Shape& shape, TensorOptions opts = {});
/// Filled with 1.
Tensor ones(const Shape& shape, TensorOptions opts = {});
/// Filled with value.
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
/// Same shape, dtype and device as t.
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
/// 0-d tensor holding `value`.
Tensor scalar_tensor(double value, TensorOptions opts = {});
/// start, start+step, ... below end (1-D).
Tensor arange(double start, double end, double step = 1, TensorOptions opts = {});
/// 0, 1, ..., end-1 (i64 unless another dtype is asked for).
Tensor arange(int64_t end, TensorOptions opts = {});
/// Uniform in [0, 1).
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
/// Standard normal.
Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
/// Uniform integers in [low, high); dtype defaults to i64.
Tensor randint(int64_t low, int64_t high, const Shape& shape,
               TensorOptions opts = TensorOptions{DType::I64}, Generator* gen = nullptr);

/// Tensor of `shape` holding a copy of `values` (row-major); the dtype follows T.
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu(),
                   bool requires_grad = false);
/// Copies `numel(shape)` values of type T from `data`.
template <typename T>
Tensor from_data(const T* data, const Shape& shape, Device device = Device::cpu(),
                 bool requires_grad = false);

}  // namespace pg
