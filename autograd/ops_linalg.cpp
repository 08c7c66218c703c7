// Matrix products: matmul and linear (a product plus bias in one GEMM).
#include "autograd/mixed_precision.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/ops.h"

namespace pg {

Tensor matmul(const Tensor& a, const Tensor& b) {
  bool na = a.requires_grad(), nb = b.requires_grad();
  bool bf16 = keeps_bf16(na || nb);
  Tensor as = as_bf16_operand(a, bf16), bs = as_bf16_operand(b, bf16);
  Tensor out = kernels::matmul(as, bs);
  bool rounded = as.dtype() != a.dtype() || bs.dtype() != b.dtype();
  Shape sa = a.shape(), sb = b.shape();
  return record("matmul", out, {a, b}, [as, bs, na, nb, sa, sb, rounded](const Tensor& g) {
    forbid_bf16_double_backward("matmul", rounded);
    // Transposes are views: BLAS reads them through its transpose flags.
    return TensorList{na ? sum_to(matmul(g, transpose(bs, -1, -2)), sa) : Tensor(),
                      nb ? sum_to(matmul(transpose(as, -1, -2), g), sb) : Tensor()};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  PG_CHECK(x.defined() && weight.defined() && weight.dim() == 2, "linear",
           "expected an input and a weight [out, in], got ",
           weight.defined() ? shape_str(weight.shape()) : "an undefined weight");
  int64_t in = weight.size(1), out_features = weight.size(0);
  PG_CHECK(x.dim() >= 1 && x.size(-1) == in, "linear", "expected input [..., ", in, "] for weight ",
           shape_str(weight.shape()), ", got ", shape_str(x.shape()));
  PG_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == out_features), "linear",
           "expected bias [", out_features, "] for weight ", shape_str(weight.shape()), ", got ",
           bias.defined() ? shape_str(bias.shape()) : "");
  bool nx = x.requires_grad(), nw = weight.requires_grad();
  bool nb = bias.defined() && bias.requires_grad();
  bool bf16 = keeps_bf16(nx || nw);
  Shape lead(x.shape().begin(), x.shape().end() - 1), out_shape = lead;
  out_shape.push_back(out_features);
  int64_t rows = shape_numel(lead);
  Tensor xs = as_bf16_operand(x, bf16), ws = as_bf16_operand(weight, bf16);
  // The forward's views are of detached handles: the op's own node is the only one recorded.
  Tensor y = kernels::matmul(reshape(xs.detach(), {rows, in}), transpose(ws.detach(), 0, 1), bias);
  y = y.as_strided(out_shape, contiguous_strides(out_shape), 0);
  bool rounded = xs.dtype() != x.dtype() || ws.dtype() != weight.dtype();
  // The backward keeps the bf16 copy, else x itself: a double backward differentiates through it.
  Tensor xb = rounded ? xs : x;
  Shape x_shape = x.shape();
  return record("linear", y, {x, weight, bias},
                [xb, ws, nx, nw, nb, rows, in, out_features, x_shape, rounded](const Tensor& g) {
                  forbid_bf16_double_backward("linear", rounded);
                  Tensor g2 = reshape(g, {rows, out_features});
                  // dW = g^T x is [out, in] like the weight: no transposed gradient to copy.
                  return TensorList{
                      nx ? reshape(matmul(g2, ws), x_shape) : Tensor(),
                      nw ? matmul(transpose(g2, 0, 1), reshape(xb, {rows, in})) : Tensor(),
                      nb ? sum(g2, {0}) : Tensor()};
                });
}

}  // namespace pg
