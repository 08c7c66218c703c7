// Shared machinery of the CUDA kernels: strided element addressing on the device.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "kernels/cuda/context.h"
#include "kernels/kernel_common.h"

namespace pg::cuda {

/// The shape of an iteration and the element strides of N operands over it, with adjacent dims
/// merged wherever every operand allows; passed to kernels by value.
template <int N>
struct StridedIter {
  int rank = 0;
  int64_t size[kMaxRank];
  int64_t stride[N][kMaxRank];

  /// Element offsets of linear index i (row-major over size) in each operand.
  __device__ std::array<int64_t, N> offsets(int64_t i) const {
    std::array<int64_t, N> off{};
    if (rank == 1) {  // contiguous or evenly strided operands: no 64-bit division per element
      for (int k = 0; k < N; ++k) off[k] = i * stride[k][0];
      return off;
    }
    for (int d = rank - 1; d >= 0; --d) {
      int64_t c = i % size[d];
      i /= size[d];
      for (int k = 0; k < N; ++k) off[k] += c * stride[k][d];
    }
    return off;
  }
};

/// Builds the iteration over `shape` for operands with the given strides (same rank).
template <int N>
StridedIter<N> make_iter(const Shape& shape, const std::array<const Shape*, N>& strides) {
  Layout<N> l = coalesce<N>(shape, strides);
  StridedIter<N> it;
  it.rank = static_cast<int>(l.shape.size());
  for (int d = 0; d < it.rank; ++d) {
    it.size[d] = l.shape[d];
    for (int k = 0; k < N; ++k) it.stride[k][d] = l.strides[k][d];
  }
  return it;
}

/// NaN test that also compiles for integer element types.
template <typename T>
__device__ bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return isnan(v);
  else
    return false;
}

/// Typed device pointer to a tensor's first element.
template <typename T>
T* dptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

/// Accumulation type: sums of f32 and f64 run in f64, as on the CPU.
template <typename T>
using AccT = std::conditional_t<std::is_integral_v<T>, int64_t, double>;

}  // namespace pg::cuda

/// Grid-stride loop over [0, n).
#define PG_KERNEL_LOOP(i, n)                                                             \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
