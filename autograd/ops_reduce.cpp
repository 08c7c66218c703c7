// Differentiable reductions.
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "kernels/ops.h"

namespace pg {

namespace {

std::vector<int64_t> normalized_dims(const std::vector<int64_t>& dims, int64_t rank,
                                     const char* op) {
  std::vector<int64_t> out;
  if (dims.empty())
    for (int64_t d = 0; d < rank; ++d) out.push_back(d);
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, rank, op);
    if (rank > 0) out.push_back(w);  // a 0-d tensor accepts dim 0 / -1 but has no dim to reduce
  }
  return out;
}

// Shape of a reduction's output with the reduced dims kept as size 1.
Shape keepdim_shape(const Shape& in, const std::vector<int64_t>& dims) {
  Shape s = in;
  for (int64_t d : dims) s[d] = 1;
  return s;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  auto nd = normalized_dims(dims, x.dim(), "sum");
  Tensor out = kernels::reduce(ReduceOp::Sum, x, nd, keepdim);
  Shape in_shape = x.shape(), kd = keepdim_shape(x.shape(), nd);
  return record("sum", out, {x}, [in_shape, kd](const Tensor& g) -> TensorList {
    return {expand(reshape(g, kd), in_shape)};
  });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  kernels::check_floating("mean", x);
  auto nd = normalized_dims(dims, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t d : nd) count *= x.shape()[d];
  return mul(sum(x, nd, keepdim), 1.0 / static_cast<double>(count));
}

Tensor max(const Tensor& x) {
  PG_CHECK(x.numel() > 0, "max", "cannot take the max of an empty tensor of shape ",
           shape_str(x.shape()));
  Tensor out = kernels::reduce(ReduceOp::Max, x, {}, false);
  Tensor y = out.detach();
  return record("max", out, {x}, [x, y](const Tensor& g) -> TensorList {
    Tensor mask = eq(x.detach(), y);
    return {mul(div(mask, sum(mask)), g)};
  });
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  int64_t d = wrap_dim(dim, x.dim(), "max");
  if (x.dim() == 0) return max(x.reshape({1}), 0, false);  // like PyTorch: the element itself
  Tensor out = kernels::reduce(ReduceOp::Max, x, {d}, keepdim);
  Tensor idx = kernels::reduce(ReduceOp::ArgMax, x, {d}, true);
  Shape in_shape = x.shape(), kd = keepdim_shape(x.shape(), {d});
  return record("max", out, {x}, [idx, in_shape, kd, d](const Tensor& g) -> TensorList {
    // One-hot of the argmax along dim: positions along dim compared with the index.
    Shape pos_shape(in_shape.size(), 1);
    pos_shape[d] = in_shape[d];
    Tensor pos = reshape(arange(in_shape[d], {DType::I64, g.device()}), pos_shape);
    Tensor onehot = kernels::convert(eq(pos, idx), g.dtype());
    return {mul(onehot, reshape(g, kd))};
  });
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return kernels::reduce(ReduceOp::ArgMax, x, {wrap_dim(dim, x.dim(), "argmax")}, keepdim);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  PG_CHECK(lead >= 0, "sum_to", "cannot sum shape ", shape_str(x.shape()), " to ",
           shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead)
      dims.push_back(i);
    else if (shape[i - lead] == 1 && x.shape()[i] != 1)
      dims.push_back(i);
    else
      PG_CHECK(shape[i - lead] == x.shape()[i], "sum_to", "cannot sum shape ", shape_str(x.shape()),
               " to ", shape_str(shape));
  }
  Tensor s = dims.empty() ? x : sum(x, dims, true);
  return reshape(s, shape);
}

}  // namespace pg
