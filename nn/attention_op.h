// The attention op: one entry point that runs a fused kernel where the activation has one and
// the composite path (matmul -> activation -> matmul through autograd ops) otherwise, in the
// manner of MLX's fast:: ops with their fallbacks.
#pragma once
#include <memory>

#include "autograd/attention.h"
#include "nn/attention_activation.h"

namespace pg {

/// Which implementation `attention` runs.
enum class AttentionPath {
  Auto,       ///< the fused kernel where the activation has one, else the composite path; poly:p
              ///< on CPU tensors without a key padding mask from linear_crossover() keys on
              ///< goes the linear path
  Fused,      ///< the fused kernel; an error for a custom activation
  Composite,  ///< through autograd ops: the reference every fused kernel is tested against
  Linear,     ///< poly:p in time linear in the sequence length (linear_attention); an error for
              ///< other activations, a key padding mask or CUDA tensors
};

/// The key count from which AttentionPath::Auto runs poly:p with head size d on the linear path:
/// the FLOP model's crossover 2D + C (D = C(d + p - 1, p) features, C = kLinearChunk) times the
/// ratio measured on the development machine (docs/results.md, long context).
int64_t linear_crossover(int64_t d, int power);

/// out = act(scale * q k^T) v for q [B,H,T,d], k [B,H,S,d], v [B,H,S,e]; returns [B,H,T,e].
/// `causal`: query i sees keys j <= i. key_padding_mask [B,S] (non-zero = visible) may be
/// undefined. `stats` (may be null) receives ||A||_F of the forward and, on the fused path,
/// ||dL/dA||_F of the backward through it.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionActivation& act,
                 bool causal, double scale, const Tensor& key_padding_mask = Tensor(),
                 std::shared_ptr<AttentionStats> stats = nullptr,
                 AttentionPath path = AttentionPath::Auto);

/// attention of heads packed the way a fused q/k/v projection writes them: qkv
/// [B, T, 3 * heads * d] holds q, k, v in that order, each as `heads` heads of width d; returns
/// [B, heads, T, d]. The fused path reads the projection in place and writes one gradient.
Tensor attention_packed(const Tensor& qkv, int64_t heads, const AttentionActivation& act,
                        bool causal, double scale, const Tensor& key_padding_mask = Tensor(),
                        std::shared_ptr<AttentionStats> stats = nullptr,
                        AttentionPath path = AttentionPath::Auto);

}  // namespace pg
