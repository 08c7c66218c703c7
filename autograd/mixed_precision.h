// What a backward keeps under bf16 precision (MatmulPrecision::BF16): bf16 copies of f32
// operands, rounded once in the forward and widened back exactly when the backward runs.
#pragma once
#include "autograd/grad_mode.h"
#include "core/error.h"
#include "kernels/matmul_precision.h"
#include "kernels/ops.h"

namespace pg {

/// Whether an op recording now keeps bf16 copies: bf16 precision, grad mode on, and an input
/// that needs a gradient.
inline bool keeps_bf16(bool needs_grad) {
  return needs_grad && GradMode::is_enabled() && matmul_precision() == MatmulPrecision::BF16;
}

/// x rounded to a bf16 copy when `keep` and x is f32 (f64 is never lowered), else x itself.
inline Tensor as_bf16_operand(const Tensor& x, bool keep) {
  return keep && x.dtype() == DType::F32 ? kernels::convert(x, DType::BF16) : x;
}

/// A saved tensor back in `dtype` where it was kept as a bf16 copy (exact), else itself.
inline Tensor widened(const Tensor& saved, DType dtype) {
  return saved.dtype() == DType::BF16 ? kernels::convert(saved, dtype) : saved;
}

/// Refuses a second derivative through a product whose backward reads bf16 copies: the copies
/// carry no graph back to the operands, so it would silently be wrong.
inline void forbid_bf16_double_backward(const char* op, bool rounded) {
  PG_CHECK(!(rounded && GradMode::is_enabled()), op,
           "double backward through a product taken in bf16 precision is not supported "
           "(its backward keeps bf16 copies of the operands); use MatmulPrecision::F32");
}

}  // namespace pg
