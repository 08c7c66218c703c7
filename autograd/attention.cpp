#include "autograd/attention.h"

#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "autograd/mixed_precision.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "kernels/matmul_precision.h"
#include "kernels/ops.h"
#include "kernels/symmetric_power.h"

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

double AttentionStats::a_frob() const {
  return formed_a ? mean_sqrt(a_frob_sq) : std::numeric_limits<double>::quiet_NaN();
}

double AttentionStats::a_frob_sqrt_n() const {
  return a_frob() / std::sqrt(static_cast<double>(std::max<int64_t>(keys, 1)));
}

double AttentionStats::grad_frob() const {
  return formed_a ? mean_sqrt(grad_frob_sq) : std::numeric_limits<double>::quiet_NaN();
}

void check_attention_operands(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_padding_mask) {
  kernels::check_floating("attention", q);
  kernels::check_same_device("attention", {&q, &k, &v, &key_padding_mask});
  kernels::check_same_dtype("attention", {&q, &k, &v});
  PG_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention",
           "expected q, k, v of rank 4 [B, H, T, d], got ", shape_str(q.shape()), ", ",
           shape_str(k.shape()), ", ", shape_str(v.shape()));
  int64_t B = q.size(0), H = q.size(1), S = k.size(2);
  PG_CHECK(k.size(0) == B && v.size(0) == B && k.size(1) == H && v.size(1) == H &&
               k.size(3) == q.size(3) && v.size(2) == S,
           "attention", "incompatible shapes q ", shape_str(q.shape()), ", k ",
           shape_str(k.shape()), ", v ", shape_str(v.shape()),
           " (expected q [B,H,T,d], k [B,H,S,d], v [B,H,S,e])");
  if (key_padding_mask.defined())
    PG_CHECK(key_padding_mask.shape() == Shape({B, S}), "attention",
             "expected a key padding mask of shape ", shape_str({B, S}), ", got ",
             shape_str(key_padding_mask.shape()));
}

namespace {

// What a fused attention call's backward needs from its forward.
struct Saved {
  Tensor q, k, v, mask, lse;  // kernel operands
  AttentionParams params;
  std::shared_ptr<AttentionStats> stats;
};

// Checks the operands, runs the forward kernel into a heads-last output, fills `stats`.
Tensor attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionParams& params, const Tensor& key_padding_mask,
                         std::shared_ptr<AttentionStats> stats, Saved& saved) {
  check_attention_operands(q, k, v, key_padding_mask);
  PG_CHECK(params.act != AttnActivation::Custom, "attention",
           "a custom activation has no fused kernel");
  PG_CHECK(params.act != AttnActivation::Poly || (params.power >= 1 && params.power <= 8),
           "attention", "poly power must be in 1..8, got ", params.power);
  int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2);
  if (key_padding_mask.defined()) {
    saved.mask = kernels::convert(
        kernels::binary(BinaryOp::Ne, key_padding_mask,
                        zeros({}, {key_padding_mask.dtype(), key_padding_mask.device()}),
                        "attention"),
        DType::I64);
  }
  saved.q = kernel_operand(q);
  saved.k = kernel_operand(k);
  saved.v = kernel_operand(v);
  saved.params = params;
  // As matmuls: f32 products from bf16 operands under bf16 precision; f64 is never lowered.
  saved.params.bf16 =
      q.dtype() == DType::F32 && (params.bf16 || matmul_precision() == MatmulPrecision::BF16);
  saved.stats = stats;
  TensorOptions opts{q.dtype(), q.device()};
  Tensor out = empty_heads_last(B, H, T, v.size(3), opts);
  if (params.act == AttnActivation::Softmax) saved.lse = empty({B, H, T}, opts);
  Tensor frob = stats ? zeros({B * H}, {DType::F64, q.device()}) : Tensor();
  if (out.numel())
    backend_for(q.device())
        .attention_forward(saved.q, saved.k, saved.v, saved.mask, saved.params, out, saved.lse,
                           frob);
  if (saved.params.bf16) {
    // The backward rounds q, k, v to bf16 anyway: keep them as bf16 (half the bytes; the f32
    // projection they were read from can go), widened back exactly when the backward runs.
    saved.q = kernels::convert(saved.q, DType::BF16);
    saved.k = kernels::convert(saved.k, DType::BF16);
    saved.v = kernels::convert(saved.v, DType::BF16);
  }
  if (stats) {
    stats->a_frob_sq = frob;
    stats->keys = S;
    stats->row_sq = stats->row_sum = Tensor();  // only the composite path has A to count rows
    stats->grad_frob_sq = Tensor();             // a new A: no backward through it yet
    stats->formed_a = true;
  }
  return out;
}

// Runs the backward kernels into dq, dk, dv ([B,H,R,C] of any strides with unit rows; dk and
// dv zero on entry).
void attention_backward(const Tensor& g, const Saved& s, Tensor& dq, Tensor& dk, Tensor& dv) {
  forbid_double_backward("attention");
  const Tensor q = widened(s.q, g.dtype()), k = widened(s.k, g.dtype()),
               v = widened(s.v, g.dtype());
  Tensor gd = kernel_operand(g);
  Tensor gsq = s.stats ? zeros({s.q.size(0) * s.q.size(1)}, {DType::F64, s.q.device()}) : Tensor();
  // Zero-width values: the output is empty, so every gradient is zero (and the softmax lse
  // was never written; the kernels must not read it).
  if (v.size(3) == 0)
    dq.fill_(0);
  else if (dq.numel() || dk.numel())
    backend_for(q.device())
        .attention_backward(gd, q, k, v, s.mask, s.lse, s.params, dq, dk, dv, gsq);
  if (s.stats) s.stats->grad_frob_sq = gsq;
}

}  // namespace

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionParams& params, const Tensor& key_padding_mask,
                       std::shared_ptr<AttentionStats> stats) {
  Saved saved;
  Tensor out = attention_forward(q, k, v, params, key_padding_mask, std::move(stats), saved);
  return record("attention", out, {q, k, v}, [saved](const Tensor& g) -> TensorList {
    int64_t B = saved.q.size(0), H = saved.q.size(1), T = saved.q.size(2), S = saved.k.size(2);
    TensorOptions opts{g.dtype(), g.device()};
    Tensor dq = empty_heads_last(B, H, T, saved.q.size(3), opts);
    Tensor dk = zeros({B, S, H, saved.k.size(3)}, opts).permute({0, 2, 1, 3});
    Tensor dv = zeros({B, S, H, saved.v.size(3)}, opts).permute({0, 2, 1, 3});
    attention_backward(g, saved, dq, dk, dv);
    return {dq, dk, dv};
  });
}

Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const AttentionParams& params, std::shared_ptr<AttentionStats> stats) {
  check_attention_operands(q, k, v, Tensor());
  PG_CHECK(params.act == AttnActivation::Poly, "attention", "activation '",
           attn::activation_name(params.act),
           "' has no linear form: only a polynomial factors into features ((q.k)^p = "
           "phi(q).phi(k)); use the quadratic path");
  PG_CHECK(params.power >= 1 && params.power <= 8, "attention", "poly power must be in 1..8, got ",
           params.power);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), S = k.size(2), d = q.size(3);
  PG_CHECK(!params.causal || T == S, "attention",
           "the causal linear path needs as many queries as ", "keys, got q ", shape_str(q.shape()),
           " and k ", shape_str(k.shape()));
  PG_CHECK(d >= 1, "attention", "the linear path needs a head size of at least 1, got q ",
           shape_str(q.shape()));
  const Tensor qd = kernel_operand(q), kd = kernel_operand(k), vd = kernel_operand(v);
  AttentionParams p = params;
  p.bf16 = false;
  Tensor out = empty_heads_last(B, H, T, v.size(3), {q.dtype(), q.device()});
  if (out.numel()) backend_for(q.device()).attention_linear_forward(qd, kd, vd, p, out);
  if (stats) {
    stats->a_frob_sq = stats->grad_frob_sq = stats->row_sq = stats->row_sum = Tensor();
    stats->keys = S;
    stats->formed_a = false;
  }
  return record("attention_linear", out, {q, k, v}, [qd, kd, vd, p](const Tensor& g) -> TensorList {
    forbid_double_backward("attention");
    const int64_t B = qd.size(0), H = qd.size(1), T = qd.size(2), S = kd.size(2);
    TensorOptions opts{g.dtype(), g.device()};
    Tensor dq = empty_heads_last(B, H, T, qd.size(3), opts);
    Tensor dk = zeros({B, S, H, kd.size(3)}, opts).permute({0, 2, 1, 3});
    Tensor dv = zeros({B, S, H, vd.size(3)}, opts).permute({0, 2, 1, 3});
    if (vd.size(3) == 0)
      dq.fill_(0);
    else if (dq.numel() || dk.numel())
      backend_for(qd.device())
          .attention_linear_backward(kernel_operand(g), qd, kd, vd, p, dq, dk, dv);
    return {dq, dk, dv};
  });
}

Tensor recurrent_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionParams& params, Tensor& state, int64_t first_position,
                           int64_t keys) {
  check_attention_operands(q, k, v, Tensor());
  PG_CHECK(params.act == AttnActivation::Poly && params.causal, "attention",
           "the recurrent form exists for causal poly:p only, got ",
           attn::activation_name(params.act), params.causal ? "" : " (not causal)");
  PG_CHECK(q.size(2) == k.size(2) && first_position >= 0 && keys >= 1, "attention",
           "the recurrent form takes as many keys as queries, got q ", shape_str(q.shape()),
           " and k ", shape_str(k.shape()));
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3), e = v.size(3);
  PG_CHECK(d >= 1, "attention", "the recurrent form needs a head size of at least 1");
  const Shape shape{B, H, SymmetricPower::feature_count(d, params.power), e};
  if (!state.defined()) state = zeros(shape, {q.dtype(), q.device()});
  PG_CHECK(state.shape() == shape && state.dtype() == q.dtype() && state.is_contiguous(),
           "attention", "the recurrent state must be a contiguous ", dtype_name(q.dtype()), " ",
           shape_str(shape), ", got ", state.dtype() == q.dtype() ? "" : dtype_name(state.dtype()),
           " ", shape_str(state.shape()));
  NoGradGuard no_grad;
  Tensor out = empty_heads_last(B, H, T, e, {q.dtype(), q.device()});
  AttentionParams p = params;
  p.bf16 = false;
  if (out.numel())
    backend_for(q.device())
        .attention_recurrent(kernel_operand(q), kernel_operand(k), kernel_operand(v), p,
                             first_position, keys, state, out);
  return out;
}

Tensor fused_attention_packed(const Tensor& qkv, int64_t heads, const AttentionParams& params,
                              const Tensor& key_padding_mask,
                              std::shared_ptr<AttentionStats> stats) {
  PG_CHECK(qkv.dim() == 3 && heads > 0 && qkv.size(2) % (3 * heads) == 0, "attention",
           "expected packed q, k, v of shape [B, T, 3 * heads * d] with ", heads, " heads, got ",
           shape_str(qkv.shape()));
  const int64_t B = qkv.size(0), T = qkv.size(1), d = qkv.size(2) / (3 * heads);
  // [B, T, 3, H, d] -> [3, B, H, T, d]: views of the projection, read in place.
  auto split = [B, T, heads, d](const Tensor& t) {
    return reshape(t, {B, T, 3, heads, d}).permute({2, 0, 3, 1, 4});
  };
  Tensor parts = split(qkv.detach());
  Saved saved;
  Tensor out = attention_forward(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), params,
                                 key_padding_mask, std::move(stats), saved);
  return record("attention_packed", out, {qkv}, [saved, split](const Tensor& g) -> TensorList {
    // One buffer for the three gradients, laid out as qkv: the views' adjoints would instead
    // zero-pad each gradient to the whole projection, add the three, then copy the sum.
    const int64_t B = saved.q.size(0), T = saved.q.size(2), H = saved.q.size(1);
    Tensor dqkv = zeros({B, T, 3 * H * saved.q.size(3)}, {g.dtype(), g.device()});
    Tensor parts = split(dqkv);
    Tensor dq = parts.select(0, 0), dk = parts.select(0, 1), dv = parts.select(0, 2);
    attention_backward(g, saved, dq, dk, dv);
    return {dqkv};
  });
}

}  // namespace pg
