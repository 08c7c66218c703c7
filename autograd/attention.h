// The fused attention op: forward and backward kernels of every built-in activation.
#pragma once
#include <memory>

#include "autograd/node.h"
#include "kernels/backend.h"

namespace pg {

/// Diagnostics the fused kernels accumulate at negligible cost (the paper's quantities).
struct AttentionStats {
  double a_frob = 0;         ///< ||A||_F, mean over batch and heads (last forward)
  double a_frob_sqrt_n = 0;  ///< a_frob / sqrt(N), N = number of keys
  double grad_frob = 0;      ///< ||dL/dA||_F, mean over batch and heads (last backward)
  bool has_grad = false;     ///< grad_frob was written by a backward
};

/// out = act(scale * q k^T) v for q [B,H,T,d], k [B,H,S,d], v [B,H,S,e]; returns [B,H,T,e].
/// key_padding_mask [B,S] (non-zero = visible) may be undefined; `stats` may be null.
Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                       const AttentionParams& params, const Tensor& key_padding_mask = Tensor(),
                       std::shared_ptr<AttentionStats> stats = nullptr);

}  // namespace pg
