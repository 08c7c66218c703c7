// Differentiable ops. Each is defined once, its forward and backward side by side, in
// autograd/ops_*.cpp. Element-wise ops broadcast like NumPy.
#pragma once
#include <vector>

#include "autograd/node.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace pg {

// --- element-wise ----------------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
/// s - a.
Tensor rsub(const Tensor& a, double s);
Tensor neg(const Tensor& x);
/// x^p for a scalar exponent p.
Tensor pow(const Tensor& x, double p);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
/// GELU approximations: exact (erf) or PyTorch's tanh formula.
enum class GeluApprox { None, Tanh };
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::Tanh);
/// cond != 0 ? a : b, broadcast; differentiable in a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// x with `value` wherever mask != 0.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// Comparisons return 0/1 in the inputs' dtype and are not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator-(const Tensor& x);

// --- linear algebra --------------------------------------------------------------------
/// Matrix product of rank >= 2 operands with broadcast batch dims: [..., M, K] @ [..., K, N].
Tensor matmul(const Tensor& a, const Tensor& b);
/// x [..., in] @ weight[out, in]^T + bias [out] (optional), as torch.nn.functional.linear: one
/// GEMM with the bias inside it; the weight's gradient comes out in the weight's own layout.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// --- reductions ------------------------------------------------------------------------
/// Sum over `dims` (empty: all).
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
/// Mean over `dims` (empty: all).
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
/// Largest element (ties share the gradient equally).
Tensor max(const Tensor& x);
/// Largest values along `dim` (the gradient goes to the first maximal index).
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
/// Index of the largest value along `dim` (i64; not differentiable).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
/// Sums broadcast dims so the result has `shape` (the adjoint of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

// --- shape -----------------------------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor permute(const Tensor& x, const Shape& dims);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor expand(const Tensor& x, const Shape& shape);
/// Joins tensors along an existing dim.
Tensor cat(const TensorList& xs, int64_t dim);
/// Joins tensors along a new dim.
Tensor stack(const TensorList& xs, int64_t dim);

// --- neural-network ops ----------------------------------------------------------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
/// Normalises over the last dim; weight and bias ([C]) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
/// Rows of weight [V, D] picked by integer `index` of any shape: result [..., D].
Tensor embedding(const Tensor& weight, const Tensor& index);
/// Mean cross-entropy of logits [..., C] against integer targets [...].
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);
/// Zeroes elements with probability p and scales the rest by 1/(1-p) when training.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);

}  // namespace pg
