// Multi-head self-attention and the pre-norm transformer block, with the activation policy.
#pragma once
#include <memory>

#include "nn/attention_op.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace pg {

/// Options of MultiHeadAttention.
struct AttentionConfig {
  int64_t dim = 64;
  int64_t heads = 4;
  AttentionActivation activation;  ///< default softmax
  bool causal = false;
  bool qk_norm = false;  ///< LayerNorm on queries and keys (per head)
  bool rope = false;     ///< rotary position embeddings on queries and keys (nn/rope.h)
  /// Which implementation forward() runs (Linear: poly:p only, no key padding mask); cached
  /// decoding runs Auto (or Composite when this is Composite).
  AttentionPath path = AttentionPath::Auto;
  bool record_stats = true;  ///< keep ||A||_F diagnostics of the last forward/backward
};

/// What a MultiHeadAttention keeps of the tokens it has seen, for incremental decoding: their
/// keys and values, or for causal poly:p the linear path's running state, whose size does not
/// grow with the tokens (recurrent_attention).
struct KvCache {
  Tensor k, v;         ///< [B, H, capacity, head dim], allocated by the first forward_cached
  Tensor state;        ///< poly:p instead of k and v: [B, H, D features, head dim]
  int64_t length = 0;  ///< positions filled
};

/// Self-attention: qkv projection, per-head attention with the policy, output projection.
class MultiHeadAttention : public Module {
 public:
  explicit MultiHeadAttention(const AttentionConfig& config);
  /// x [B, T, dim] -> [B, T, dim]; key_padding_mask [B, T] (non-zero = visible) optional.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  /// Incremental decoding: x [B, t, dim] holds the tokens at positions cache.length ...; their
  /// keys and values are appended to `cache` (of `capacity` positions) and their queries attend
  /// to every cached position up to their own. N is what forward() uses on a full window of
  /// `capacity` tokens (a training window): `capacity`, or with n=visible the keys the row
  /// sees. Either the cache is empty (a prompt, t >= 1) or t == 1 (one new token). Causal
  /// poly:p on CPU tensors keeps the running state instead (constant memory and time per token;
  /// the composite path and GPU tensors keep keys and values).
  Tensor forward_cached(const Tensor& x, KvCache& cache, int64_t capacity);
  std::string type_name() const override { return "MultiHeadAttention"; }
  const AttentionConfig& config() const { return config_; }
  /// Switches the implementation: the composite path alone records AttentionStats' per-row
  /// diagnostics; the linear path runs poly:p in time linear in T.
  void set_path(AttentionPath path) { config_.path = path; }
  /// Diagnostics of the last forward (and of the backward through it, once run).
  const AttentionStats& stats() const { return *stats_; }

  std::shared_ptr<Linear> qkv, proj;
  std::shared_ptr<LayerNorm> q_norm, k_norm;

 private:
  AttentionConfig config_;
  std::shared_ptr<AttentionStats> stats_ = std::make_shared<AttentionStats>();
};

/// Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(x)), GELU MLP.
class TransformerBlock : public Module {
 public:
  TransformerBlock(const AttentionConfig& attention, int64_t mlp_hidden, double dropout = 0.0);
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  /// forward() for incremental decoding (see MultiHeadAttention::forward_cached; eval mode).
  Tensor forward_cached(const Tensor& x, KvCache& cache, int64_t capacity);
  std::string type_name() const override { return "TransformerBlock"; }

  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<MultiHeadAttention> attn;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<Dropout> drop;
};

}  // namespace pg
