// Element-wise differentiable ops.
#include "autograd/grad_mode.h"
#include "autograd/mixed_precision.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "kernels/ops.h"

namespace pg {

namespace {

// Gradient for an input that was broadcast: sum back to its shape (undefined if not needed).
Tensor reduce_grad(const Tensor& g, const Shape& shape, bool needed) {
  return needed ? sum_to(g, shape) : Tensor();
}

// What a backward keeps of an operand: the tensor only when `needed`, so that an activation
// nothing else uses is freed after the forward (a residual or bias add keeps only shapes).
Tensor keep_if(bool needed, const Tensor& t) { return needed ? t : Tensor(); }

void check_float_pair(const char* op, const Tensor& a, const Tensor& b) {
  kernels::check_same_device(op, {&a, &b});
  kernels::check_same_dtype(op, {&a, &b});
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  check_float_pair("add", a, b);
  Tensor out = kernels::binary(BinaryOp::Add, a, b, "add");
  bool na = a.requires_grad(), nb = b.requires_grad();
  Shape sa = a.shape(), sb = b.shape();
  return record("add", out, {a, b}, [sa, sb, na, nb](const Tensor& g) -> TensorList {
    return {reduce_grad(g, sa, na), reduce_grad(g, sb, nb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  check_float_pair("sub", a, b);
  Tensor out = kernels::binary(BinaryOp::Sub, a, b, "sub");
  bool na = a.requires_grad(), nb = b.requires_grad();
  Shape sa = a.shape(), sb = b.shape();
  return record("sub", out, {a, b}, [sa, sb, na, nb](const Tensor& g) -> TensorList {
    return {reduce_grad(g, sa, na), nb ? sum_to(neg(g), sb) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  check_float_pair("mul", a, b);
  Tensor out = kernels::binary(BinaryOp::Mul, a, b, "mul");
  bool na = a.requires_grad(), nb = b.requires_grad();
  Shape sa = a.shape(), sb = b.shape();
  Tensor ka = keep_if(nb, a), kb = keep_if(na, b);
  return record("mul", out, {a, b}, [ka, kb, sa, sb, na, nb](const Tensor& g) -> TensorList {
    return {na ? sum_to(mul(g, kb), sa) : Tensor(), nb ? sum_to(mul(g, ka), sb) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  check_float_pair("div", a, b);
  Tensor out = kernels::binary(BinaryOp::Div, a, b, "div");
  bool na = a.requires_grad(), nb = b.requires_grad();
  Shape sa = a.shape(), sb = b.shape();
  Tensor ka = keep_if(nb, a);
  return record("div", out, {a, b}, [ka, b, sa, sb, na, nb](const Tensor& g) -> TensorList {
    return {na ? sum_to(div(g, b), sa) : Tensor(),
            nb ? sum_to(neg(div(mul(g, ka), mul(b, b))), sb) : Tensor()};
  });
}

Tensor add(const Tensor& a, double s) {
  kernels::check_floating("add", a);
  Tensor out = kernels::unary(UnaryOp::AddScalar, a, s);
  return record("add_scalar", out, {a}, [](const Tensor& g) -> TensorList { return {g}; });
}

Tensor mul(const Tensor& a, double s) {
  kernels::check_floating("mul", a);
  Tensor out = kernels::unary(UnaryOp::MulScalar, a, s);
  return record("mul_scalar", out, {a}, [s](const Tensor& g) -> TensorList { return {mul(g, s)}; });
}

Tensor rsub(const Tensor& a, double s) {
  kernels::check_floating("rsub", a);
  Tensor out = kernels::unary(UnaryOp::RsubScalar, a, s);
  return record("rsub", out, {a}, [](const Tensor& g) -> TensorList { return {neg(g)}; });
}

Tensor neg(const Tensor& x) {
  kernels::check_floating("neg", x);
  Tensor out = kernels::unary(UnaryOp::Neg, x);
  return record("neg", out, {x}, [](const Tensor& g) -> TensorList { return {neg(g)}; });
}

Tensor pow(const Tensor& x, double p) {
  kernels::check_floating("pow", x);
  Tensor out = kernels::unary(UnaryOp::PowScalar, x, p);
  return record("pow", out, {x}, [x, p](const Tensor& g) -> TensorList {
    if (p == 0) return {zeros_like(g)};
    return {mul(g, mul(pow(x, p - 1), p))};
  });
}

// Ops whose derivative is a function of their output: in create_graph mode the output is
// recomputed with the graph attached, otherwise the saved (detached) output is used.
Tensor exp(const Tensor& x) {
  kernels::check_floating("exp", x);
  Tensor out = kernels::unary(UnaryOp::Exp, x);
  return record_with_output(
      "exp", out, {x}, [](const Tensor& g, const Tensor& y) -> TensorList { return {mul(g, y)}; });
}

Tensor log(const Tensor& x) {
  kernels::check_floating("log", x);
  Tensor out = kernels::unary(UnaryOp::Log, x);
  return record("log", out, {x}, [x](const Tensor& g) -> TensorList { return {div(g, x)}; });
}

Tensor sqrt(const Tensor& x) {
  kernels::check_floating("sqrt", x);
  Tensor out = kernels::unary(UnaryOp::Sqrt, x);
  return record_with_output("sqrt", out, {x}, [](const Tensor& g, const Tensor& y) -> TensorList {
    return {div(g, mul(y, 2.0))};
  });
}

Tensor abs(const Tensor& x) {
  kernels::check_floating("abs", x);
  Tensor out = kernels::unary(UnaryOp::Abs, x);
  return record("abs", out, {x}, [x](const Tensor& g) -> TensorList {
    return {mul(g, kernels::unary(UnaryOp::Sign, x))};
  });
}

Tensor tanh(const Tensor& x) {
  kernels::check_floating("tanh", x);
  Tensor out = kernels::unary(UnaryOp::Tanh, x);
  return record_with_output("tanh", out, {x}, [](const Tensor& g, const Tensor& y) -> TensorList {
    return {mul(g, rsub(mul(y, y), 1.0))};
  });
}

Tensor sigmoid(const Tensor& x) {
  kernels::check_floating("sigmoid", x);
  Tensor out = kernels::unary(UnaryOp::Sigmoid, x);
  return record_with_output("sigmoid", out, {x},
                            [](const Tensor& g, const Tensor& y) -> TensorList {
                              return {mul(g, mul(y, rsub(y, 1.0)))};
                            });
}

Tensor relu(const Tensor& x) {
  kernels::check_floating("relu", x);
  Tensor out = kernels::unary(UnaryOp::Relu, x);
  // The mask is piecewise constant, so using it raw keeps second derivatives exact.
  return record("relu", out, {x}, [x](const Tensor& g) -> TensorList {
    return {mul(g, kernels::unary(UnaryOp::ReluMask, x))};
  });
}

Tensor gelu(const Tensor& x, GeluApprox approx) {
  kernels::check_floating("gelu", x);
  bool t = approx == GeluApprox::Tanh;
  Tensor out = kernels::unary(t ? UnaryOp::GeluTanh : UnaryOp::GeluErf, x);
  // Mixed precision keeps the input as bf16, as torch.autocast does where a linear layer feeds
  // GELU: in an MLP this is the widest activation, and the f32 one can then be freed.
  Tensor kept = as_bf16_operand(x, keeps_bf16(x.requires_grad()));
  return record("gelu", out, {x}, [kept, t](const Tensor& g) -> TensorList {
    forbid_double_backward("gelu");
    return {kernels::binary(t ? BinaryOp::GeluTanhBackward : BinaryOp::GeluErfBackward, g,
                            widened(kept, g.dtype()), "gelu")};
  });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = kernels::where(cond, a, b);
  bool na = a.requires_grad(), nb = b.requires_grad();
  Tensor c = cond.detach();
  Shape sa = a.shape(), sb = b.shape();
  return record("where", out, {a, b}, [c, sa, sb, na, nb](const Tensor& g) -> TensorList {
    Tensor z = zeros({}, {g.dtype(), g.device()});
    return {na ? sum_to(where(c, g, z), sa) : Tensor(), nb ? sum_to(where(c, z, g), sb) : Tensor()};
  });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, full({}, value, {x.dtype(), x.device()}), x);
}

Tensor eq(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Eq, a, b, "eq"); }
Tensor ne(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Ne, a, b, "ne"); }
Tensor gt(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Gt, a, b, "gt"); }
Tensor lt(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Lt, a, b, "lt"); }
Tensor ge(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Ge, a, b, "ge"); }
Tensor le(const Tensor& a, const Tensor& b) { return kernels::binary(BinaryOp::Le, a, b, "le"); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(double s, const Tensor& a) { return rsub(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator-(const Tensor& x) { return neg(x); }

}  // namespace pg
