// Views, joins and copies; views share storage with their input.
#include <numeric>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "kernels/ops.h"

namespace pg {

namespace {

// A zero tensor of `shape` with g written into the view (dim, start, step) — slice's adjoint.
Tensor slice_backward(const Tensor& g, const Shape& shape, int64_t dim, int64_t start,
                      int64_t step) {
  Tensor out = zeros(shape, {g.dtype(), g.device()});
  Shape st = out.strides();
  int64_t off = start * st[dim];
  st[dim] *= step;
  Tensor view = out.as_strided(g.shape(), st, off);
  view.copy_(g);
  int64_t end = start + g.shape()[dim] * step;
  return record("slice_backward", out, {g},
                [dim, start, end, step](const Tensor& gg) -> TensorList {
                  return {slice(gg, dim, start, end, step)};
                });
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  Shape target = infer_shape(shape, x.numel(), x.shape(), "reshape");
  if (target == x.shape()) return x;
  Tensor out;
  if (auto st = view_strides(x.shape(), x.strides(), target))
    out = x.as_strided(target, *st, x.offset());
  else
    out = kernels::clone(x).as_strided(target, contiguous_strides(target), 0);
  Shape in_shape = x.shape();
  return record("reshape", out, {x},
                [in_shape](const Tensor& g) -> TensorList { return {reshape(g, in_shape)}; });
}

Tensor permute(const Tensor& x, const Shape& dims) {
  PG_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute", "expected ", x.dim(),
           " dims for a tensor of shape ", shape_str(x.shape()), ", got ", shape_str(dims));
  Shape shape(dims.size()), strides(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    PG_CHECK(!seen[d], "permute", "dim ", d, " repeated in ", shape_str(dims));
    seen[d] = true;
    shape[i] = x.shape()[d];
    strides[i] = x.strides()[d];
    inverse[d] = static_cast<int64_t>(i);
  }
  Tensor out = x.as_strided(shape, strides, x.offset());
  return record("permute", out, {x},
                [inverse](const Tensor& g) -> TensorList { return {permute(g, inverse)}; });
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  Shape dims(x.dim());
  std::iota(dims.begin(), dims.end(), 0);
  int64_t w0 = wrap_dim(d0, x.dim(), "transpose"), w1 = wrap_dim(d1, x.dim(), "transpose");
  if (x.dim() > 0) std::swap(dims[w0], dims[w1]);  // 0-d: transpose(0, 0) is the identity
  return permute(x, dims);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  int64_t d = wrap_dim(dim, x.dim(), "slice");
  PG_CHECK(x.dim() > 0, "slice", "cannot slice a 0-d tensor");
  PG_CHECK(step > 0, "slice", "step must be positive, got ", step);
  int64_t n = x.shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  int64_t len = (end - start + step - 1) / step;
  Shape shape = x.shape(), strides = x.strides();
  shape[d] = len;
  strides[d] *= step;
  Tensor out = x.as_strided(shape, strides, x.offset() + start * x.strides()[d]);
  Shape in_shape = x.shape();
  return record("slice", out, {x}, [in_shape, d, start, step](const Tensor& g) -> TensorList {
    return {slice_backward(g, in_shape, d, start, step)};
  });
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Shape target = shape;
  int64_t lead = static_cast<int64_t>(shape.size()) - x.dim();
  PG_CHECK(lead >= 0, "expand", "cannot expand shape ", shape_str(x.shape()), " to ",
           shape_str(shape), " (fewer dims)");
  for (size_t i = 0; i < target.size(); ++i)
    if (target[i] == -1) {
      PG_CHECK(static_cast<int64_t>(i) >= lead, "expand", "-1 is not allowed for new dims in ",
               shape_str(shape));
      target[i] = x.shape()[i - lead];
    }
  check_shape(target, "expand");
  if (target == x.shape()) return x;
  Tensor out =
      x.as_strided(target, broadcast_strides(x.shape(), x.strides(), target, "expand"), x.offset());
  Shape in_shape = x.shape();
  return record("expand", out, {x},
                [in_shape](const Tensor& g) -> TensorList { return {sum_to(g, in_shape)}; });
}

Tensor cat(const TensorList& xs, int64_t dim) {
  PG_CHECK(!xs.empty(), "cat", "expected at least one tensor");
  const Tensor& first = xs[0];
  int64_t d = wrap_dim(dim, first.dim(), "cat");
  PG_CHECK(first.dim() > 0, "cat", "zero-dimensional tensors cannot be concatenated; use stack");
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& t = xs[i];
    kernels::check_same_device("cat", {&first, &t});
    kernels::check_same_dtype("cat", {&first, &t});
    bool ok = t.dim() == first.dim();
    for (int64_t k = 0; ok && k < t.dim(); ++k) ok = k == d || t.shape()[k] == first.shape()[k];
    PG_CHECK(ok, "cat", "tensor ", i, " has shape ", shape_str(t.shape()),
             " but tensor 0 has shape ", shape_str(first.shape()),
             " (expected equal sizes except in dim ", d, ")");
    shape[d] += t.shape()[d];
  }
  Tensor out = empty(shape, {first.dtype(), first.device()});
  std::vector<int64_t> starts;
  int64_t pos = 0;
  for (const Tensor& t : xs) {
    starts.push_back(pos);
    Shape st = out.strides();
    out.as_strided(t.shape(), st, pos * st[d]).copy_(t);
    pos += t.shape()[d];
  }
  std::vector<int64_t> lens;
  for (const Tensor& t : xs) lens.push_back(t.shape()[d]);
  return record("cat", out, xs, [d, starts, lens](const Tensor& g) -> TensorList {
    TensorList grads;
    for (size_t i = 0; i < starts.size(); ++i)
      grads.push_back(slice(g, d, starts[i], starts[i] + lens[i]));
    return grads;
  });
}

Tensor stack(const TensorList& xs, int64_t dim) {
  PG_CHECK(!xs.empty(), "stack", "expected at least one tensor");
  int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  TensorList parts;
  for (size_t i = 0; i < xs.size(); ++i) {
    PG_CHECK(xs[i].shape() == xs[0].shape(), "stack", "tensor ", i, " has shape ",
             shape_str(xs[i].shape()), " but tensor 0 has shape ", shape_str(xs[0].shape()),
             " (expected equal shapes)");
    parts.push_back(xs[i].unsqueeze(d));
  }
  return cat(parts, d);
}

// --- Tensor methods that are differentiable ops ---------------------------------------

Tensor Tensor::reshape(const Shape& shape) const { return pg::reshape(*this, shape); }

Tensor Tensor::view(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), this->shape(), "view");
  PG_CHECK(view_strides(this->shape(), strides(), target).has_value(), "view",
           "cannot view a tensor of shape ", shape_str(this->shape()), " with strides ",
           shape_str(strides()), " as ", shape_str(shape),
           " without copying; use reshape() or contiguous() first");
  return pg::reshape(*this, target);
}

Tensor Tensor::permute(const Shape& dims) const { return pg::permute(*this, dims); }
Tensor Tensor::transpose(int64_t d0, int64_t d1) const { return pg::transpose(*this, d0, d1); }

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  return pg::slice(*this, dim, start, end, step);
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  int64_t d = wrap_dim(dim, this->dim(), "narrow");
  PG_CHECK(this->dim() > 0, "narrow", "cannot narrow a 0-d tensor");
  int64_t n = shape()[d];
  PG_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow", "range [", start, ", ",
           start + length, ") is out of bounds for dim ", d, " of size ", n, " (shape ",
           shape_str(shape()), ")");
  return pg::slice(*this, d, start, start + length);
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  int64_t d = wrap_dim(dim, this->dim(), "select");
  PG_CHECK(this->dim() > 0, "select", "cannot select from a 0-d tensor");
  int64_t n = shape()[d];
  PG_CHECK(index >= -n && index < n, "select", "index ", index, " is out of range for dim ", d,
           " of size ", n, " (shape ", shape_str(shape()), ")");
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& shape) const { return pg::expand(*this, shape); }

Tensor Tensor::squeeze(int64_t dim) const {
  int64_t d = wrap_dim(dim, this->dim(), "squeeze");
  if (this->dim() == 0 || shape()[d] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return pg::reshape(*this, s);
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  int64_t d = wrap_dim(dim, this->dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return pg::reshape(*this, s);
}

Tensor Tensor::flatten() const { return pg::reshape(*this, {numel()}); }

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return record("contiguous", kernels::clone(*this), {*this},
                [](const Tensor& g) -> TensorList { return {g}; });
}

Tensor Tensor::clone() const {
  return record("clone", kernels::clone(*this), {*this},
                [](const Tensor& g) -> TensorList { return {g}; });
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  DType from = this->dtype();
  Tensor out = kernels::convert(*this, dtype);
  if (!is_floating(dtype) || !is_floating(from)) return out;
  return record("to", out, {*this}, [from](const Tensor& g) -> TensorList { return {g.to(from)}; });
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Device from = this->device();
  Tensor out = kernels::to_device(*this, device);
  return record("to", out, {*this}, [from](const Tensor& g) -> TensorList { return {g.to(from)}; });
}

}  // namespace pg
