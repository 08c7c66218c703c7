#include "nn/attention_op.h"

#include <algorithm>
#include <limits>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "kernels/symmetric_power.h"

namespace pg {

namespace {

// Measured crossover / the FLOP model's 2D + C (docs/results.md, long context: d = 32 and 64,
// poly:2, causal, f32, 2 threads).
constexpr double kLinearCrossoverRatio = 1.35;

// Through autograd ops: the reference of the fused kernels and the path of custom activations.
Tensor composite_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionActivation& act, bool causal, double scale,
                           const Tensor& key_padding_mask, AttentionStats* stats) {
  check_attention_operands(q, k, v, key_padding_mask);
  TensorOptions opts{q.dtype(), q.device()};
  int64_t B = q.size(0), T = q.size(2), S = k.size(2);
  Tensor s = mul(matmul(q, transpose(k, -1, -2)), scale);
  // Visible = causal [T, S] and/or key padding [B, 1, 1, S], as a 0/1 tensor.
  Tensor visible;
  if (causal) {
    Tensor i = reshape(arange(0, static_cast<double>(T), 1, opts), {T, 1});
    Tensor j = reshape(arange(0, static_cast<double>(S), 1, opts), {1, S});
    visible = le(expand(j, {T, S}), expand(i, {T, S}));
  }
  if (key_padding_mask.defined()) {
    Tensor kp = ne(key_padding_mask, zeros({}, {key_padding_mask.dtype(), q.device()}))
                    .to(q.dtype())
                    .reshape({B, 1, 1, S});
    visible = visible.defined() ? mul(visible, kp) : kp;
  }
  Tensor a = act.apply(s, visible);
  if (stats) {
    NoGradGuard ng;
    stats->a_frob_sq = reshape(sum(mul(a, a), {2, 3}), {-1}).to(DType::F64);
    stats->row_sq = sum(mul(a, a), {0, 1, 3}).to(DType::F64);
    stats->row_sum = sum(a, {0, 1, 3}).to(DType::F64);
    stats->keys = S;
    stats->grad_frob_sq = Tensor();  // the composite path records no gradient diagnostic
    stats->formed_a = true;
  }
  return matmul(a, v);
}

// The checks of the linear path that need the spec: it says why an activation has no linear form.
void check_linear(const AttentionActivation& act, const Tensor& key_padding_mask) {
  PG_CHECK(act.kind() == AttnActivation::Poly, "attention", "the linear path was asked for, but '",
           act.spec(),
           "' has no linear form: only a polynomial score s^p factors exactly into features "
           "(phi(q).phi(k)), so only poly:p runs in linear time");
  PG_CHECK(!key_padding_mask.defined(), "attention",
           "the linear path takes no key padding mask; use the quadratic path for padded keys");
}

// Auto's choice of the linear path for queries [.., tq, d] against tk keys: where it exists
// (poly:p on the CPU, no padding mask, causal only when square) and the cost model says it is
// faster.
bool auto_linear(const AttentionActivation& act, const Device& device, int64_t tq, int64_t tk,
                 int64_t d, bool causal, const Tensor& key_padding_mask) {
  if (act.kind() != AttnActivation::Poly || key_padding_mask.defined() || !device.is_cpu() ||
      (causal && tq != tk))
    return false;
  return tk >= linear_crossover(d, act.power());
}

bool use_fused(const AttentionActivation& act, AttentionPath path) {
  PG_CHECK(path != AttentionPath::Fused || act.has_fused_kernel(), "attention",
           "the fused path was asked for, but activation '", act.spec(), "' has no fused kernel");
  return path != AttentionPath::Composite && act.has_fused_kernel();
}

}  // namespace

int64_t linear_crossover(int64_t d, int power) {
  const int64_t features = SymmetricPower::feature_count(std::max<int64_t>(d, 1), power);
  if (features < 0 || features > (int64_t(1) << 40)) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(kLinearCrossoverRatio *
                              static_cast<double>(2 * features + kLinearChunk));
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionActivation& act,
                 bool causal, double scale, const Tensor& key_padding_mask,
                 std::shared_ptr<AttentionStats> stats, AttentionPath path) {
  if (k.dim() == 4) act.check_scale(k.size(2), q.dtype());  // other shapes: the op's own error
  if (path == AttentionPath::Auto && q.dim() == 4 && k.dim() == 4 &&
      auto_linear(act, q.device(), q.size(2), k.size(2), q.size(3), causal, key_padding_mask))
    path = AttentionPath::Linear;
  if (path == AttentionPath::Linear) {
    check_linear(act, key_padding_mask);
    return linear_attention(q, k, v, act.kernel_params(causal, scale), std::move(stats));
  }
  if (use_fused(act, path))
    return fused_attention(q, k, v, act.kernel_params(causal, scale), key_padding_mask,
                           std::move(stats));
  return composite_attention(q, k, v, act, causal, scale, key_padding_mask, stats.get());
}

Tensor attention_packed(const Tensor& qkv, int64_t heads, const AttentionActivation& act,
                        bool causal, double scale, const Tensor& key_padding_mask,
                        std::shared_ptr<AttentionStats> stats, AttentionPath path) {
  if (qkv.dim() == 3) act.check_scale(qkv.size(1), qkv.dtype());
  if (path == AttentionPath::Auto && qkv.dim() == 3 && heads > 0 &&
      qkv.size(2) % (3 * heads) == 0 &&
      auto_linear(act, qkv.device(), qkv.size(1), qkv.size(1), qkv.size(2) / (3 * heads), causal,
                  key_padding_mask))
    path = AttentionPath::Linear;
  if (path == AttentionPath::Linear) check_linear(act, key_padding_mask);
  if (path != AttentionPath::Linear && use_fused(act, path))
    return fused_attention_packed(qkv, heads, act.kernel_params(causal, scale), key_padding_mask,
                                  std::move(stats));
  PG_CHECK(qkv.dim() == 3 && heads > 0 && qkv.size(2) % (3 * heads) == 0, "attention",
           "expected packed q, k, v of shape [B, T, 3 * heads * d] with ", heads, " heads, got ",
           shape_str(qkv.shape()));
  const int64_t B = qkv.size(0), T = qkv.size(1), d = qkv.size(2) / (3 * heads);
  // [B, T, 3, H, d] -> [3, B, H, T, d]: views, no copies.
  Tensor parts = permute(reshape(qkv, {B, T, 3, heads, d}), {2, 0, 3, 1, 4});
  if (path == AttentionPath::Linear)  // the views' adjoints gather the three gradients
    return linear_attention(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2),
                            act.kernel_params(causal, scale), std::move(stats));
  return composite_attention(parts.select(0, 0), parts.select(0, 1), parts.select(0, 2), act,
                             causal, scale, key_padding_mask, stats.get());
}

}  // namespace pg
