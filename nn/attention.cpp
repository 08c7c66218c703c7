#include "nn/attention.h"

#include <cmath>

#include "autograd/ops.h"

namespace pg {

MultiHeadAttention::MultiHeadAttention(const AttentionConfig& config) : config_(config) {
  PG_CHECK(config.dim > 0 && config.heads > 0 && config.dim % config.heads == 0,
           "MultiHeadAttention", "dim ", config.dim, " must be a positive multiple of heads ",
           config.heads);
  qkv = register_module("qkv", std::make_shared<Linear>(config.dim, 3 * config.dim));
  proj = register_module("proj", std::make_shared<Linear>(config.dim, config.dim));
  if (config.qk_norm) {
    int64_t hd = config.dim / config.heads;
    q_norm = register_module("q_norm", std::make_shared<LayerNorm>(hd));
    k_norm = register_module("k_norm", std::make_shared<LayerNorm>(hd));
  }
}

Tensor MultiHeadAttention::forward(const Tensor& x, const Tensor& key_padding_mask) {
  PG_CHECK(x.dim() == 3 && x.size(2) == config_.dim, "MultiHeadAttention", "expected input [B, T, ",
           config_.dim, "], got ", shape_str(x.shape()));
  int64_t B = x.size(0), T = x.size(1), H = config_.heads, hd = config_.dim / H;
  Tensor packed = (*qkv)(x);
  double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto& act = config_.activation;
  const auto path = config_.use_fused ? AttentionPath::Auto : AttentionPath::Composite;
  auto stats = config_.record_stats ? stats_ : nullptr;
  Tensor out;
  if (!q_norm) {  // the fused kernel reads the projection in place and writes one gradient
    out = attention_packed(packed, H, act, config_.causal, scale, key_padding_mask, stats, path);
  } else {
    // [B, T, 3, H, hd] -> [3, B, H, T, hd]: views, no copies; the fused kernel reads them
    // with BLAS leading dimensions.
    Tensor heads = permute(reshape(packed, {B, T, 3, H, hd}), {2, 0, 3, 1, 4});
    Tensor q = (*q_norm)(heads.select(0, 0)), k = (*k_norm)(heads.select(0, 1));
    out = attention(q, k, heads.select(0, 2), act, config_.causal, scale, key_padding_mask, stats,
                    path);
  }
  // [B, H, T, hd] -> [B, T, H*hd]; free when the kernel wrote heads-last.
  return (*proj)(reshape(transpose(out, 1, 2), {B, T, config_.dim}));
}

TransformerBlock::TransformerBlock(const AttentionConfig& attention, int64_t mlp_hidden,
                                   double dropout) {
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(attention.dim));
  attn = register_module("attn", std::make_shared<MultiHeadAttention>(attention));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(attention.dim));
  mlp = register_module("mlp", std::make_shared<MLP>(attention.dim, mlp_hidden, dropout));
  drop = register_module("drop", std::make_shared<Dropout>(dropout));
}

Tensor TransformerBlock::forward(const Tensor& x, const Tensor& key_padding_mask) {
  Tensor h = add(x, (*drop)(attn->forward((*ln1)(x), key_padding_mask)));
  return add(h, (*mlp)((*ln2)(h)));
}

}  // namespace pg
