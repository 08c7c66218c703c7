// The fused attention op: forward and backward kernels of every built-in activation.
#pragma once
#include <memory>

#include "autograd/node.h"
#include "kernels/backend.h"

namespace pg {

/// Diagnostics the fused kernels accumulate at negligible cost (the paper's quantities). The
/// sums stay on the attention's device until a getter reads them, so recording them never
/// stalls a GPU in the middle of a step.
struct AttentionStats {
  Tensor a_frob_sq;     ///< sum(A^2) per (batch, head) of the last forward: f64 [B*H]
  Tensor grad_frob_sq;  ///< sum((dL/dA)^2) per (batch, head) of the last backward, if any
  int64_t keys = 0;     ///< N, the number of keys of the last forward
  /// Per query row i, summed over batch and heads: sum_j A_ij^2 and sum_j A_ij, f64 [T]. Only
  /// the composite path records them (it holds A); the fused kernels leave them undefined.
  Tensor row_sq, row_sum;
  /// False after a forward on the linear path, which never forms A: a_frob() and grad_frob()
  /// are then NaN (unavailable), not zero.
  bool formed_a = true;

  /// ||A||_F, mean over batch and heads (0 before any forward; NaN after the linear path).
  double a_frob() const;
  /// a_frob() / sqrt(N).
  double a_frob_sqrt_n() const;
  /// ||dL/dA||_F, mean over batch and heads (0 until a backward through the last forward).
  double grad_frob() const;
  /// True when a backward has run through the last forward.
  bool has_grad() const { return grad_frob_sq.defined(); }
};

/// Checks q [B,H,T,d], k [B,H,S,d], v [B,H,S,e] and key_padding_mask [B,S] (if defined) for
/// rank, shape, dtype and device; throws pg::Error naming the shapes.
void check_attention_operands(const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& key_padding_mask);

/// The fused attention op (nn/attention_op.h's `attention` is the entry point that picks it).
/// out = act(scale * q k^T) v for q [B,H,T,d], k [B,H,S,d], v [B,H,S,e]; returns [B,H,T,e].
/// key_padding_mask [B,S] (non-zero = visible) may be undefined; `stats` may be null.
Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionParams& params, const Tensor& key_padding_mask = Tensor(),
                       std::shared_ptr<AttentionStats> stats = nullptr);

/// fused_attention of heads packed the way a fused q/k/v projection writes them: qkv
/// [B, T, 3 * heads * d] holds q, k, v in that order, each as `heads` heads of width d; returns
/// [B, heads, T, d]. The same values and gradients as fused_attention on the three views, but
/// the backward writes one gradient buffer for qkv, where the views' adjoints would zero-pad,
/// add and copy three.
/// Polynomial attention (params.act Poly) on the linear path: the function fused_attention
/// computes, in time linear in the sequence length, with a D x e state per (batch, head)
/// (D = C(d + p - 1, p)) instead of the [T, S] weights. CPU tensors; no key padding mask;
/// causal needs T == S; computes in the operands' dtype (bf16 matmul precision does not apply).
/// `stats` records the key count and that ||A|| is unavailable.
Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const AttentionParams& params,
                        std::shared_ptr<AttentionStats> stats = nullptr);

/// linear_attention's recurrent form for decoding (no gradient): the t tokens of q, k, v
/// ([B,H,t,d], [B,H,t,d], [B,H,t,e]) at positions first_position ... each add their key to
/// `state` (the running D x e sum per (batch, head), made [B,H,D,e] when undefined) and read it
/// with their query; N is `keys` (the training context) or, with n_visible, the position + 1.
/// Causal poly:p only; returns [B,H,t,e], what linear_attention gives those rows.
Tensor recurrent_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionParams& params, Tensor& state, int64_t first_position,
                           int64_t keys);

Tensor fused_attention_packed(const Tensor& qkv, int64_t heads, const AttentionParams& params,
                              const Tensor& key_padding_mask = Tensor(),
                              std::shared_ptr<AttentionStats> stats = nullptr);

}  // namespace pg
