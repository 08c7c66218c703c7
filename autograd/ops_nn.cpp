// Neural-network ops with fused kernels and their own backward kernels.
#include "autograd/batch_rows.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "kernels/ops.h"

namespace pg {

namespace {

// Softmax and log-softmax share everything but the formula of their backward.
Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  kernels::check_floating(name, x);
  int64_t d = wrap_dim(dim, x.dim(), name);
  if (x.dim() > 0 && d != x.dim() - 1) {
    // Move dim last, normalise, move it back; the transposes are differentiable views.
    return transpose(softmax_impl(transpose(x, d, -1), -1, log), d, -1);
  }
  Tensor out = kernels::softmax_lastdim(x, log);
  return record_with_output(name, out, {x}, [log](const Tensor& g, const Tensor& y) -> TensorList {
    if (!GradMode::is_enabled()) return {kernels::softmax_lastdim_backward(g, y, log)};
    // Double backward: the same rule written with differentiable ops.
    if (log) return {sub(g, mul(exp(y), sum(g, {-1}, true)))};
    return {mul(y, sub(g, sum(mul(g, y), {-1}, true)))};
  });
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  kernels::check_floating("layer_norm", x);
  PG_CHECK(x.dim() >= 1, "layer_norm", "expected a tensor of rank >= 1, got a scalar");
  kernels::check_same_device("layer_norm", {&x, &weight, &bias});
  kernels::check_same_dtype("layer_norm", {&x, &weight, &bias});
  int64_t c = x.size(-1);
  for (const Tensor* p : {&weight, &bias})
    PG_CHECK(!p->defined() || p->shape() == Shape{c}, "layer_norm",
             "expected weight and bias of shape [", c, "] for input ", shape_str(x.shape()),
             ", got ", shape_str(p->shape()));
  int64_t rows = x.numel() / std::max<int64_t>(c, 1);
  Tensor xc = x.contiguous().detach();
  Tensor x2 = xc.as_strided({rows, c}, {c, 1}, xc.offset());
  Tensor w = weight.defined() ? weight.contiguous().detach() : Tensor();
  Tensor b = bias.defined() ? bias.contiguous().detach() : Tensor();
  TensorOptions opts{x.dtype(), x.device()};
  Tensor out = empty(x.shape(), opts), mu = empty({rows}, opts), rstd = empty({rows}, opts);
  Tensor out2 = out.as_strided({rows, c}, {c, 1}, 0);
  if (rows && c) backend_for(x.device()).layer_norm(x2, w, b, eps, out2, mu, rstd);
  bool nx = x.requires_grad(), nw = weight.defined() && weight.requires_grad(),
       nb = bias.defined() && bias.requires_grad();
  return record(
      "layer_norm", out, {x, weight, bias},
      [x2, w, mu, rstd, nx, nw, nb, opts, shape = x.shape()](const Tensor& g) -> TensorList {
        forbid_double_backward("layer_norm");
        int64_t rows = x2.size(0), c = x2.size(1);
        Tensor gc = g.contiguous();
        Tensor g2 = gc.as_strided({rows, c}, {c, 1}, gc.offset());
        Tensor dx = nx ? empty(shape, opts) : Tensor();
        Tensor dw = nw ? empty({c}, opts) : Tensor();
        Tensor db = nb ? empty({c}, opts) : Tensor();
        Tensor dx2 = nx ? dx.as_strided({rows, c}, {c, 1}, 0) : Tensor();
        if (rows && c)
          backend_for(x2.device()).layer_norm_backward(g2, x2, w, mu, rstd, dx2, dw, db);
        else {
          if (dw.defined()) dw.fill_(0);
          if (db.defined()) db.fill_(0);
        }
        return {dx, dw, db};
      });
}

Tensor embedding(const Tensor& weight, const Tensor& index) {
  kernels::check_floating("embedding", weight);
  Tensor out = kernels::index_select_rows(weight, index);
  Tensor idx = index.detach();
  int64_t rows = weight.size(0);
  return record("embedding", out, {weight}, [idx, rows](const Tensor& g) -> TensorList {
    forbid_double_backward("embedding");
    return {kernels::index_add_rows(idx, g, rows)};
  });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing) {
  kernels::check_floating("cross_entropy", logits);
  kernels::check_same_device("cross_entropy", {&logits, &target});
  PG_CHECK(target.dtype() == DType::I64 || target.dtype() == DType::I32, "cross_entropy",
           "expected integer class targets (i64 or i32), got ", dtype_name(target.dtype()));
  PG_CHECK(logits.dim() >= 1, "cross_entropy", "expected logits of shape [..., C], got a scalar");
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  PG_CHECK(target.shape() == lead, "cross_entropy", "logits of shape ", shape_str(logits.shape()),
           " need targets of shape ", shape_str(lead), ", got ", shape_str(target.shape()));
  PG_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy",
           "label_smoothing must be in [0, 1], got ", label_smoothing);
  int64_t c = logits.size(-1), n = target.numel();
  PG_CHECK(c > 0, "cross_entropy", "expected at least one class, got logits of shape ",
           shape_str(logits.shape()));
  Tensor lc = logits.contiguous().detach();
  Tensor l2 = lc.as_strided({n, c}, {c, 1}, lc.offset());
  Tensor tc = target.contiguous().detach();
  TensorOptions opts{logits.dtype(), logits.device()};
  Tensor loss = empty({}, opts), lse = empty({n}, opts);
  backend_for(logits.device()).cross_entropy(l2, tc, ignore_index, label_smoothing, loss, lse);
  Shape shape = logits.shape();
  return record(
      "cross_entropy", loss, {logits},
      [l2, tc, lse, ignore_index, label_smoothing, opts, shape](const Tensor& g) -> TensorList {
        forbid_double_backward("cross_entropy");
        Tensor d = empty(shape, opts);
        Tensor d2 = d.as_strided(l2.shape(), {l2.size(1), 1}, 0);
        backend_for(l2.device())
            .cross_entropy_backward(g, l2, tc, lse, ignore_index, label_smoothing, d2);
        return {d};
      });
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  PG_CHECK(p >= 0 && p <= 1, "dropout", "probability must be in [0, 1], got ", p);
  if (!training || p == 0) return x;
  kernels::check_floating("dropout", x);
  if (p == 1) return mul(x, 0.0);
  Tensor mask = empty(x.shape(), {x.dtype(), x.device()});
  if (mask.numel() == 0) return mul(x, mask);
  // Inside a BatchRows scope the mask is a function of the global row; else of a fresh key.
  uint64_t key = 0, first = 0;
  if (BatchRows* rows = BatchRows::current(); rows && x.dim() >= 1) {
    key = rows->next_key();
    first = static_cast<uint64_t>(rows->first_row()) * static_cast<uint64_t>(x.numel() / x.size(0));
  } else {
    key = (gen ? *gen : default_generator()).next_u64();
  }
  backend_for(x.device()).dropout_mask(mask, 1 - p, key, first);
  return mul(x, mask);
}

}  // namespace pg
