// Matrix product.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/ops.h"

namespace pg {

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = kernels::matmul(a, b);
  bool na = a.requires_grad(), nb = b.requires_grad();
  return record("matmul", out, {a, b}, [a, b, na, nb](const Tensor& g) -> TensorList {
    // Transposes are views: BLAS reads them through its transpose flags.
    return {na ? sum_to(matmul(g, transpose(b, -1, -2)), a.shape()) : Tensor(),
            nb ? sum_to(matmul(transpose(a, -1, -2), g), b.shape()) : Tensor()};
  });
}

}  // namespace pg
