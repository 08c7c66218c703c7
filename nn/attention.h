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
  bool qk_norm = false;      ///< LayerNorm on queries and keys (per head)
  bool use_fused = true;     ///< fused kernel when the activation has one
  bool record_stats = true;  ///< keep ||A||_F diagnostics of the last forward/backward
};

/// Self-attention: qkv projection, per-head attention with the policy, output projection.
class MultiHeadAttention : public Module {
 public:
  explicit MultiHeadAttention(const AttentionConfig& config);
  /// x [B, T, dim] -> [B, T, dim]; key_padding_mask [B, T] (non-zero = visible) optional.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask);
  Tensor forward(const Tensor& x) override { return forward(x, Tensor()); }
  std::string type_name() const override { return "MultiHeadAttention"; }
  const AttentionConfig& config() const { return config_; }
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
  std::string type_name() const override { return "TransformerBlock"; }

  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<MultiHeadAttention> attn;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<Dropout> drop;
};

}  // namespace pg
