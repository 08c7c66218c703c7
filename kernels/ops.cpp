#include "kernels/ops.h"

#include <algorithm>

#include "kernels/factory.h"
#include "kernels/kernel_common.h"
#include "kernels/matmul_precision.h"

namespace pg::kernels {

void check_same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
      continue;
    }
    PG_CHECK(t->device() == first->device(), op, "expected all tensors on the same device, got ",
             first->device().str(), " and ", t->device().str(),
             " (move them with .to(device) first)");
  }
}

void check_same_dtype(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
      continue;
    }
    PG_CHECK(t->dtype() == first->dtype(), op, "expected tensors of the same dtype, got ",
             dtype_name(first->dtype()), " ", shape_str(first->shape()), " and ",
             dtype_name(t->dtype()), " ", shape_str(t->shape()), " (convert with .to(dtype))");
  }
}

void check_computable(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && t->dtype() == DType::BF16) throw bf16_unsupported(op);
}

void check_floating(const char* op, const Tensor& t) {
  check_computable(op, {&t});
  PG_CHECK(is_floating(t.dtype()), op, "expected a floating-point tensor (f32 or f64), got ",
           dtype_name(t.dtype()), " of shape ", shape_str(t.shape()));
}

namespace {

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg:
      return "neg";
    case UnaryOp::Exp:
      return "exp";
    case UnaryOp::Log:
      return "log";
    case UnaryOp::Sqrt:
      return "sqrt";
    case UnaryOp::Abs:
      return "abs";
    case UnaryOp::Sign:
      return "sign";
    case UnaryOp::Tanh:
      return "tanh";
    case UnaryOp::Sigmoid:
      return "sigmoid";
    case UnaryOp::Relu:
    case UnaryOp::ReluMask:
      return "relu";
    case UnaryOp::GeluTanh:
    case UnaryOp::GeluErf:
      return "gelu";
    case UnaryOp::PowScalar:
      return "pow";
    case UnaryOp::AddScalar:
      return "add";
    case UnaryOp::MulScalar:
      return "mul";
    case UnaryOp::RsubScalar:
      return "sub";
    case UnaryOp::RoundBf16:
      return "round_to_bf16";
  }
  return "unary op";
}

Tensor expand_to(const Tensor& t, const Shape& shape, const char* op) {
  return t.as_strided(shape, broadcast_strides(t.shape(), t.strides(), shape, op), t.offset());
}

TensorOptions like(const Tensor& t) { return TensorOptions{t.dtype(), t.device(), false}; }

// Views x as `shape` if its strides allow it, else copies it contiguous first.
Tensor reshape_raw(const Tensor& x, const Shape& shape) {
  if (auto st = view_strides(x.shape(), x.strides(), shape))
    return x.as_strided(shape, *st, x.offset());
  Tensor c = clone(x);
  return c.as_strided(shape, contiguous_strides(shape), 0);
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, double scalar) {
  check_computable(unary_name(op), {&x});
  Tensor out = empty(x.shape(), like(x));
  if (out.numel()) backend_for(x.device()).unary(op, x, out, scalar);
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  check_same_device(name, {&a, &b});
  check_same_dtype(name, {&a, &b});
  check_computable(name, {&a});
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(shape, like(a));
  if (out.numel())
    backend_for(a.device()).binary(op, expand_to(a, shape, name), expand_to(b, shape, name), out);
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device("where", {&cond, &a, &b});
  check_same_dtype("where", {&a, &b});
  check_computable("where", {&cond, &a});
  Shape shape =
      broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = empty(shape, like(a));
  if (out.numel())
    backend_for(a.device())
        .where(expand_to(cond, shape, "where"), expand_to(a, shape, "where"),
               expand_to(b, shape, "where"), out);
  return out;
}

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const char* name = op == ReduceOp::Sum   ? "sum"
                     : op == ReduceOp::Max ? "max"
                     : op == ReduceOp::Min ? "min"
                                           : "argmax";
  check_computable(name, {&x});
  std::vector<bool> reduced(x.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.dim(), name);
    if (x.dim() == 0) continue;  // dim 0 / -1 of a 0-d tensor: nothing to reduce
    PG_CHECK(!reduced[w] || dims.empty(), name, "dim ", d, " given twice");
    reduced[w] = true;
  }
  Shape keep_shape = x.shape();
  for (int64_t i = 0; i < x.dim(); ++i)
    if (reduced[i]) keep_shape[i] = 1;
  if (op != ReduceOp::Sum)
    for (int64_t i = 0; i < x.dim(); ++i)
      PG_CHECK(!reduced[i] || x.shape()[i] > 0, name, "cannot reduce over dim ", i,
               " of size 0 (shape ", shape_str(x.shape()), ")");
  TensorOptions opts = like(x);
  if (op == ReduceOp::ArgMax) opts.dtype = DType::I64;
  Tensor out = empty(keep_shape, opts);
  if (op == ReduceOp::Sum && x.numel() == 0)
    out.fill_(0);
  else if (out.numel())
    backend_for(x.device()).reduce(op, x, out);
  if (keepdim) return out;
  Shape squeezed;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (!reduced[i]) squeezed.push_back(x.shape()[i]);
  return out.as_strided(squeezed, contiguous_strides(squeezed), 0);
}

Tensor matmul(const Tensor& a_in, const Tensor& b_in, const Tensor& bias) {
  check_same_device("matmul", {&a_in, &b_in});
  bool a16 = a_in.dtype() == DType::BF16, b16 = b_in.dtype() == DType::BF16;
  if (a16 || b16) {
    PG_CHECK((a16 || a_in.dtype() == DType::F32) && (b16 || b_in.dtype() == DType::F32), "matmul",
             "a bf16 operand pairs with an f32 or bf16 one, got ", dtype_name(a_in.dtype()), " ",
             shape_str(a_in.shape()), " and ", dtype_name(b_in.dtype()), " ",
             shape_str(b_in.shape()));
  } else {
    check_same_dtype("matmul", {&a_in, &b_in});
    check_floating("matmul", a_in);
  }
  // bf16 operands give an f32 product. Backends see them only in bf16 precision; in f32
  // precision they are widened first (exactly), so the product is the f32 one of their values.
  bool widen = matmul_precision() == MatmulPrecision::F32;
  const Tensor& a = a16 && widen ? convert(a_in, DType::F32) : a_in;
  const Tensor& b = b16 && widen ? convert(b_in, DType::F32) : b_in;
  PG_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul", "expected operands of rank >= 2, got ",
           shape_str(a.shape()), " and ", shape_str(b.shape()), " (unsqueeze vectors first)");
  int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  PG_CHECK(b.size(-2) == k, "matmul", "shapes ", shape_str(a.shape()), " and ",
           shape_str(b.shape()), " cannot be multiplied: expected a.size(-1) == b.size(-2) (", k,
           " vs ", b.size(-2), ")");
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(batch_a, batch_b, "matmul");
  } catch (const Error&) {
    // The batch shapes alone do not tell the user which operands were meant.
    throw Error("matmul", detail::concat("batch dims of ", shape_str(a.shape()), " and ",
                                         shape_str(b.shape()), " cannot be broadcast together"));
  }
  int64_t nb = shape_numel(batch);
  Shape full_a = batch, full_b = batch, out_shape = batch;
  full_a.insert(full_a.end(), {m, k});
  full_b.insert(full_b.end(), {k, n});
  out_shape.insert(out_shape.end(), {m, n});
  Tensor a3 = reshape_raw(expand_to(a, full_a, "matmul"), {nb, m, k});
  Tensor b3 = reshape_raw(expand_to(b, full_b, "matmul"), {nb, k, n});
  Tensor out = empty({nb, m, n}, {a16 || b16 ? DType::F32 : a.dtype(), a.device()});
  if (bias.defined())
    PG_CHECK(bias.dim() == 1 && bias.size(0) == n && bias.dtype() == out.dtype() &&
                 bias.device() == out.device(),
             "matmul", "expected a bias [", n, "] of dtype ", dtype_name(out.dtype()), " on ",
             out.device().str(), " for the product of ", shape_str(a.shape()), " and ",
             shape_str(b.shape()), ", got ", dtype_name(bias.dtype()), " ", shape_str(bias.shape()),
             " on ", bias.device().str());
  if (out.numel()) {
    if (bias.defined())
      backend_for(a.device()).copy(bias.expand({nb, m, n}), out);
    else if (k == 0)
      out.fill_(0);
    if (k > 0) backend_for(a.device()).matmul(a3, b3, out, bias.defined());
  }
  return out.as_strided(out_shape, contiguous_strides(out_shape), 0);
}

Tensor clone(const Tensor& x) {
  Tensor out = empty(x.shape(), like(x));
  if (out.numel()) backend_for(x.device()).copy(x, out);
  return out;
}

Tensor convert(const Tensor& x, DType dtype) {
  Tensor out = empty(x.shape(), TensorOptions{dtype, x.device(), false});
  if (out.numel()) backend_for(x.device()).copy(x, out);
  return out;
}

Tensor to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor out = empty(x.shape(), TensorOptions{x.dtype(), device, false});
  if (!out.numel()) return out;
  if (x.device().is_cpu()) {
    Tensor c = x.is_contiguous() ? x : clone(x);
    backend_for(device).from_host(c.raw_data(), out);
  } else if (device.is_cpu()) {
    Tensor c = x.is_contiguous() ? x : clone(x);
    backend_for(x.device()).to_host(c, out.raw_data());
  } else {
    return to_device(to_device(x, Device::cpu()), device);
  }
  return out;
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
  if (dims.empty()) return reshape_raw(x, shape);
  return reshape_raw(reduce(ReduceOp::Sum, x, dims, true), shape);
}

Tensor index_select_rows(const Tensor& weight, const Tensor& index) {
  check_same_device("embedding", {&weight, &index});
  PG_CHECK(index.dtype() == DType::I64 || index.dtype() == DType::I32, "embedding",
           "expected an i64 or i32 index tensor, got ", dtype_name(index.dtype()));
  PG_CHECK(weight.dim() == 2, "embedding", "expected a 2-D weight [num, dim], got ",
           shape_str(weight.shape()));
  Shape out_shape = index.shape();
  out_shape.push_back(weight.size(1));
  Tensor out = empty({index.numel(), weight.size(1)}, like(weight));
  if (out.numel())
    backend_for(weight.device()).index_select_rows(weight.contiguous(), index.contiguous(), out);
  return out.as_strided(out_shape, contiguous_strides(out_shape), 0);
}

Tensor index_add_rows(const Tensor& index, const Tensor& src, int64_t rows) {
  int64_t d = src.size(-1);
  Tensor out = zeros({rows, d}, like(src));
  Tensor flat = reshape_raw(src.contiguous(), {index.numel(), d});
  if (flat.numel()) backend_for(src.device()).index_add_rows(index.contiguous(), flat, out);
  return out;
}

Tensor softmax_lastdim(const Tensor& x, bool log) {
  check_floating(log ? "log_softmax" : "softmax", x);
  Tensor xc = x.contiguous();
  Tensor out = empty(x.shape(), like(x));
  if (out.numel()) {
    int64_t c = x.dim() ? x.size(-1) : 1;
    Shape rc{out.numel() / c, c};
    Tensor o2 = out.as_strided(rc, contiguous_strides(rc), 0);
    backend_for(x.device())
        .softmax(xc.as_strided(rc, contiguous_strides(rc), xc.offset()), o2, log);
  }
  return out;
}

Tensor softmax_lastdim_backward(const Tensor& dy, const Tensor& y, bool log) {
  Tensor dyc = dy.contiguous(), yc = y.contiguous();
  Tensor dx = empty(y.shape(), like(y));
  if (dx.numel()) {
    int64_t c = y.dim() ? y.size(-1) : 1;
    Shape rc{dx.numel() / c, c};
    auto as2 = [&](const Tensor& t) {
      return t.as_strided(rc, contiguous_strides(rc), t.offset());
    };
    Tensor d2 = as2(dx);
    backend_for(y.device()).softmax_backward(as2(dyc), as2(yc), d2, log);
  }
  return dx;
}

}  // namespace pg::kernels
