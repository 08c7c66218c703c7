// How f32 matrix products compute: exactly in f32, or from bfloat16 operands with f32
// accumulation (mixed precision: master weights, activations and gradients stay f32; what the
// backward keeps of products' operands, attention's q, k, v and GELU's input is kept as bf16).
#pragma once
#include <string>

namespace pg {

/// Precision of f32 matrix products (f64 products are never lowered).
enum class MatmulPrecision {
  F32,   ///< f32 operands and products (cuBLAS may use TF32 only if cuda::set_allow_tf32)
  BF16,  ///< operands rounded to bfloat16 (ties to even), products accumulated in f32
};

/// Sets the precision of every later f32 matmul, forward and backward, on every device.
void set_matmul_precision(MatmulPrecision precision);
/// The current precision (F32 unless set).
MatmulPrecision matmul_precision();
/// "f32" or "bf16" as a precision (pg::Error on anything else).
MatmulPrecision parse_matmul_precision(const std::string& name);

/// Sets a precision for a scope and restores the previous one at its end.
class MatmulPrecisionGuard {
 public:
  explicit MatmulPrecisionGuard(MatmulPrecision precision) : saved_(matmul_precision()) {
    set_matmul_precision(precision);
  }
  ~MatmulPrecisionGuard() { set_matmul_precision(saved_); }
  MatmulPrecisionGuard(const MatmulPrecisionGuard&) = delete;
  MatmulPrecisionGuard& operator=(const MatmulPrecisionGuard&) = delete;

 private:
  MatmulPrecision saved_;
};

}  // namespace pg
