// What every backend's kernels share: dtype dispatch, coalesced strided layouts, how a strided
// matrix maps onto BLAS arguments, and the split of a reduction into kept and reduced dims.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>

#include "core/tensor.h"
#include "kernels/ops.h"

namespace pg {

/// The error for an op given a bf16 tensor, which only stores values.
inline Error bf16_unsupported(const char* op) {
  return Error(op,
               "does not take bf16 tensors, which only store values (copies, conversions, "
               "views, matmul operands): convert with .to(DType::F32) first");
}

/// Calls f(T{}) with T the C++ type of a floating dtype; other dtypes are a pg::Error.
template <typename F>
void dispatch_floating(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::F64:
      f(double{});
      return;
    case DType::BF16:
      throw bf16_unsupported(op);
    default:
      throw Error(op, detail::concat("expected a floating-point tensor (f32 or f64), got ",
                                     dtype_name(dt)));
  }
}

/// Calls f(T{}) with T the C++ type of any dtype that ops compute in (bf16 is a pg::Error).
template <typename F>
void dispatch_all(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32:
      f(float{});
      return;
    case DType::F64:
      f(double{});
      return;
    case DType::I64:
      f(int64_t{});
      return;
    case DType::I32:
      f(int32_t{});
      return;
    case DType::BF16:
      throw bf16_unsupported(op);
  }
}

/// Calls f(T{}) with T the C++ type of any dtype, bf16 (BFloat16) included: for kernels that only
/// move or convert values.
template <typename F>
void dispatch_stored(DType dt, F&& f) {
  if (dt == DType::BF16)
    f(BFloat16{});
  else
    dispatch_all(dt, "copy", std::forward<F>(f));
}

/// Shape plus one stride vector per operand, with size-1 dims dropped and mergeable dims merged.
template <size_t N>
struct Layout {
  Shape shape;
  std::array<Shape, N> strides;
};

template <size_t N>
Layout<N> coalesce(const Shape& shape, const std::array<const Shape*, N>& strides) {
  Layout<N> l;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !l.shape.empty();
    for (size_t k = 0; k < N && merge; ++k)
      merge = l.strides[k].back() == (*strides[k])[d] * shape[d];
    if (merge) {
      l.shape.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) l.strides[k].back() = (*strides[k])[d];
    } else {
      l.shape.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) l.strides[k].push_back((*strides[k])[d]);
    }
  }
  return l;
}

/// How BLAS reads a row-major rows x cols matrix with strides (rs, cs): as stored (transposed
/// false) or as the transpose of a row-major matrix, with leading dimension ld.
struct MatrixOperand {
  bool transposed;
  int64_t ld;
};

/// The BLAS view of a strided matrix, if there is one (a slice with a step has none).
inline std::optional<MatrixOperand> matrix_operand(int64_t rows, int64_t cols, int64_t rs,
                                                   int64_t cs) {
  if ((cs == 1 || cols == 1) && (rows == 1 || rs >= std::max<int64_t>(cols, 1)))
    return MatrixOperand{false, rows == 1 ? std::max<int64_t>(cols, 1) : rs};
  if ((rs == 1 || rows == 1) && (cols == 1 || cs >= std::max<int64_t>(rows, 1)))
    return MatrixOperand{true, cols == 1 ? std::max<int64_t>(rows, 1) : cs};
  return std::nullopt;
}

/// A batch of matrices [B, R, C] as BLAS reads it: the tensor itself where its strides allow,
/// else a contiguous copy (a slice with a step, say), with the operand that describes it.
struct BlasMatrix {
  Tensor t;
  MatrixOperand op;
};

inline BlasMatrix blas_matrix(const Tensor& x) {
  if (auto op = matrix_operand(x.size(1), x.size(2), x.strides()[1], x.strides()[2]))
    return {x, *op};
  Tensor c = kernels::clone(x);
  return {c, *matrix_operand(c.size(1), c.size(2), c.strides()[1], c.strides()[2])};
}

/// A reduction of x into out (same rank, keepdim): the dims it keeps and the dims it sums.
struct ReduceDims {
  Shape kept_shape, kept_x, kept_out;  ///< kept sizes, their x strides and out strides
  Shape red_shape, red_x;              ///< reduced sizes and their x strides
};

inline ReduceDims split_reduce_dims(const Tensor& x, const Tensor& out) {
  ReduceDims r;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (out.shape()[d] == 1 && x.shape()[d] != 1) {
      r.red_shape.push_back(x.shape()[d]);
      r.red_x.push_back(x.strides()[d]);
    } else {
      r.kept_shape.push_back(x.shape()[d]);
      r.kept_x.push_back(x.strides()[d]);
      r.kept_out.push_back(out.strides()[d]);
    }
  }
  return r;
}

}  // namespace pg
