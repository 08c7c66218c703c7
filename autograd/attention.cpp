#include "autograd/attention.h"

#include <cmath>

#include "autograd/ops.h"
#include "kernels/factory.h"
#include "kernels/ops.h"

namespace pg {

namespace {

// The kernels read rows with a unit inner stride; anything else is copied once.
Tensor kernel_operand(const Tensor& t) {
  bool ok = t.strides()[3] == 1 || t.size(3) == 1;
  return ok ? t.detach() : kernels::clone(t);
}

// An uninitialised [B,H,R,C] tensor laid out as [B,R,H,C], so that merging heads afterwards
// (transpose(1, 2) + reshape) is free.
Tensor empty_heads_last(int64_t b, int64_t h, int64_t r, int64_t c, TensorOptions opts) {
  return empty({b, r, h, c}, opts).permute({0, 2, 1, 3});
}

// Mean over (batch, head) of sqrt(sum of squares): one read from the device.
double mean_sqrt(const Tensor& sq) {
  if (!sq.defined() || sq.numel() == 0) return 0;
  double s = 0;
  for (double v : sq.to(Device::cpu()).to_vector<double>()) s += std::sqrt(v);
  return s / static_cast<double>(sq.numel());
}

}  // namespace

double AttentionStats::a_frob() const { return mean_sqrt(a_frob_sq); }

double AttentionStats::a_frob_sqrt_n() const {
  return a_frob() / std::sqrt(static_cast<double>(std::max<int64_t>(keys, 1)));
}

double AttentionStats::grad_frob() const { return mean_sqrt(grad_frob_sq); }

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionParams& params, const Tensor& key_padding_mask,
                       std::shared_ptr<AttentionStats> stats) {
  kernels::check_floating("attention", q);
  kernels::check_same_device("attention", {&q, &k, &v, &key_padding_mask});
  kernels::check_same_dtype("attention", {&q, &k, &v});
  PG_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention",
           "expected q, k, v of rank 4 [B, H, T, d], got ", shape_str(q.shape()), ", ",
           shape_str(k.shape()), ", ", shape_str(v.shape()));
  int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2);
  PG_CHECK(k.size(0) == B && v.size(0) == B && k.size(1) == H && v.size(1) == H &&
               k.size(3) == q.size(3) && v.size(2) == S,
           "attention", "incompatible shapes q ", shape_str(q.shape()), ", k ",
           shape_str(k.shape()), ", v ", shape_str(v.shape()),
           " (expected q [B,H,T,d], k [B,H,S,d], v [B,H,S,e])");
  PG_CHECK(params.act != AttnActivation::Poly || (params.power >= 1 && params.power <= 8),
           "attention", "poly power must be in 1..8, got ", params.power);
  Tensor mask;
  if (key_padding_mask.defined()) {
    PG_CHECK(key_padding_mask.shape() == Shape({B, S}), "attention",
             "expected a key padding mask of shape ", shape_str({B, S}), ", got ",
             shape_str(key_padding_mask.shape()));
    mask = kernels::convert(
        kernels::binary(BinaryOp::Ne, key_padding_mask,
                        zeros({}, {key_padding_mask.dtype(), key_padding_mask.device()}),
                        "attention"),
        DType::I64);
  }
  Tensor qd = kernel_operand(q), kd = kernel_operand(k), vd = kernel_operand(v);
  TensorOptions opts{q.dtype(), q.device()};
  Tensor out = empty_heads_last(B, H, T, v.size(3), opts);
  bool softmax = params.act == AttnActivation::Softmax;
  Tensor lse = softmax ? empty({B, H, T}, opts) : Tensor();
  Tensor frob = stats ? zeros({B * H}, {DType::F64, q.device()}) : Tensor();
  if (out.numel())
    backend_for(q.device()).attention_forward(qd, kd, vd, mask, params, out, lse, frob);
  if (stats) {
    stats->a_frob_sq = frob;
    stats->keys = S;
    stats->grad_frob_sq = Tensor();  // a new A: no backward through it yet
  }
  return record("attention", out, {q, k, v},
                [qd, kd, vd, mask, lse, params, stats, opts](const Tensor& g) -> TensorList {
                  forbid_double_backward("attention");
                  int64_t B = qd.size(0), H = qd.size(1), T = qd.size(2), S = kd.size(2);
                  Tensor gd = kernel_operand(g);
                  Tensor dq = empty_heads_last(B, H, T, qd.size(3), opts);
                  Tensor dk = zeros({B, S, H, kd.size(3)}, opts).permute({0, 2, 1, 3});
                  Tensor dv = zeros({B, S, H, vd.size(3)}, opts).permute({0, 2, 1, 3});
                  Tensor gsq = stats ? zeros({B * H}, {DType::F64, qd.device()}) : Tensor();
                  // Zero-width values: the output is empty, so every gradient is zero (and the
                  // softmax lse was never written; the kernels must not read it).
                  if (vd.size(3) == 0)
                    dq = zeros({B, H, T, qd.size(3)}, opts);
                  else if (dq.numel() || dk.numel())
                    backend_for(qd.device())
                        .attention_backward(gd, qd, kd, vd, mask, lse, params, dq, dk, dv, gsq);
                  if (stats) stats->grad_frob_sq = gsq;
                  return {dq, dk, dv};
                });
}

}  // namespace pg
