// Matrix product.
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/matmul_precision.h"
#include "kernels/ops.h"

namespace pg {

namespace {

// In bf16 precision an f32 operand is rounded to bf16 once, here: the product reads the copy and
// the backward keeps it instead of the f32 activation (half the memory, no second rounding).
Tensor as_bf16_operand(const Tensor& x, bool keep) {
  return keep && x.dtype() == DType::F32 ? kernels::convert(x, DType::BF16) : x;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  bool na = a.requires_grad(), nb = b.requires_grad();
  bool bf16 = matmul_precision() == MatmulPrecision::BF16 && GradMode::is_enabled() && (na || nb);
  Tensor as = as_bf16_operand(a, bf16), bs = as_bf16_operand(b, bf16);
  Tensor out = kernels::matmul(as, bs);
  bool rounded = as.dtype() != a.dtype() || bs.dtype() != b.dtype();
  Shape sa = a.shape(), sb = b.shape();
  return record("matmul", out, {a, b}, [as, bs, na, nb, sa, sb, rounded](const Tensor& g) {
    // The bf16 copies carry no graph back to a and b: a second derivative through them would
    // silently be wrong.
    PG_CHECK(!(rounded && GradMode::is_enabled()), "matmul",
             "double backward through a product taken in bf16 precision is not supported "
             "(its backward keeps bf16 copies of the operands); use MatmulPrecision::F32");
    // Transposes are views: BLAS reads them through its transpose flags.
    return TensorList{na ? sum_to(matmul(g, transpose(bs, -1, -2)), sa) : Tensor(),
                      nb ? sum_to(matmul(transpose(as, -1, -2), g), sb) : Tensor()};
  });
}

}  // namespace pg
