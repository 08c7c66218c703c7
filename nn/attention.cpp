#include "nn/attention.h"

#include <cmath>

#include "autograd/ops.h"
#include "kernels/factory.h"
#include "nn/rope.h"

namespace pg {

MultiHeadAttention::MultiHeadAttention(const AttentionConfig& config) : config_(config) {
  PG_CHECK(config.dim > 0 && config.heads > 0 && config.dim % config.heads == 0,
           "MultiHeadAttention", "dim ", config.dim, " must be a positive multiple of heads ",
           config.heads);
  qkv = register_module("qkv", std::make_shared<Linear>(config.dim, 3 * config.dim));
  proj = register_module("proj", std::make_shared<Linear>(config.dim, config.dim));
  PG_CHECK(!config.rope || (config.dim / config.heads) % 2 == 0, "MultiHeadAttention",
           "rotary positions need an even head size, got ", config.dim / config.heads);
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
  const AttentionPath path = config_.path;
  auto stats = config_.record_stats ? stats_ : nullptr;
  Tensor out;
  if (!q_norm && !config_.rope) {  // the fused kernel reads the projection in place
    out = attention_packed(packed, H, act, config_.causal, scale, key_padding_mask, stats, path);
  } else {
    // [B, T, 3, H, hd] -> [3, B, H, T, hd]: views, no copies; the fused kernel reads them
    // with BLAS leading dimensions.
    Tensor heads = permute(reshape(packed, {B, T, 3, H, hd}), {2, 0, 3, 1, 4});
    Tensor q = heads.select(0, 0), k = heads.select(0, 1);
    if (q_norm) q = (*q_norm)(q), k = (*k_norm)(k);
    if (config_.rope) q = apply_rope(q, 0), k = apply_rope(k, 0);
    out = attention(q, k, heads.select(0, 2), act, config_.causal, scale, key_padding_mask, stats,
                    path);
  }
  // [B, H, T, hd] -> [B, T, H*hd]; free when the kernel wrote heads-last.
  return (*proj)(reshape(transpose(out, 1, 2), {B, T, config_.dim}));
}

Tensor MultiHeadAttention::forward_cached(const Tensor& x, KvCache& cache, int64_t capacity) {
  PG_CHECK(x.dim() == 3 && x.size(2) == config_.dim, "MultiHeadAttention", "expected input [B, T, ",
           config_.dim, "], got ", shape_str(x.shape()));
  const int64_t B = x.size(0), t = x.size(1), H = config_.heads, hd = config_.dim / H;
  PG_CHECK(cache.length == 0 || t == 1, "MultiHeadAttention",
           "a cache that holds positions takes one new token at a time, got ", t);
  PG_CHECK(cache.length + t <= capacity, "MultiHeadAttention", "the cache holds ", capacity,
           " positions; ", cache.length, " are used and ", t, " more do not fit");
  Tensor heads = permute(reshape((*qkv)(x), {B, t, 3, H, hd}), {2, 0, 3, 1, 4});
  Tensor q = heads.select(0, 0), k = heads.select(0, 1);
  if (q_norm) q = (*q_norm)(q), k = (*k_norm)(k);
  if (config_.rope) q = apply_rope(q, cache.length), k = apply_rope(k, cache.length);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  // The state's kernel is the CPU's; on a GPU poly:p keeps keys and values.
  if (config_.causal && config_.activation.kind() == AttnActivation::Poly &&
      config_.path != AttentionPath::Composite && x.device().is_cpu()) {
    if (cache.length == 0) cache.state = Tensor();  // a prompt starts a new sequence
    PG_CHECK(!cache.state.defined() || cache.state.size(0) == B, "MultiHeadAttention",
             "the state was made for batch ", cache.state.size(0), ", not ", B);
    Tensor out =
        recurrent_attention(q, k, heads.select(0, 2), config_.activation.kernel_params(true, scale),
                            cache.state, cache.length, capacity);
    cache.length += t;
    return (*proj)(reshape(transpose(out, 1, 2), {B, t, config_.dim}));
  }
  if (cache.length == 0) {
    cache.k = zeros({B, H, capacity, hd}, {x.dtype(), x.device()});
    cache.v = zeros({B, H, capacity, hd}, {x.dtype(), x.device()});
  }
  PG_CHECK(cache.k.size(0) == B && cache.k.size(2) == capacity, "MultiHeadAttention",
           "the cache was made for batch ", cache.k.size(0), " and ", cache.k.size(2),
           " positions, not ", B, " and ", capacity);
  cache.k.narrow(2, cache.length, t).copy_(k);
  cache.v.narrow(2, cache.length, t).copy_(heads.select(0, 2));
  cache.length += t;
  // The whole cache, the positions not written yet masked off: a row then has the N of a
  // training window of `capacity` keys (the context), or with n=visible the keys it sees, as
  // in forward() over a full window, where no row depends on the tokens after it.
  Tensor written = lt(arange(0, static_cast<double>(capacity), 1, {x.dtype(), x.device()}),
                      full({}, static_cast<double>(cache.length), {x.dtype(), x.device()}));
  Tensor visible = expand(reshape(written, {1, capacity}), {B, capacity}).contiguous();
  // The cache masks the positions not written yet: no linear path here.
  const auto path =
      config_.path == AttentionPath::Composite ? AttentionPath::Composite : AttentionPath::Auto;
  // A prompt (rows 0 .. t-1) is causal; a new token is the last row and sees every written key.
  Tensor out = attention(q, cache.k, cache.v, config_.activation, config_.causal && t > 1, scale,
                         visible, config_.record_stats ? stats_ : nullptr, path);
  return (*proj)(reshape(transpose(out, 1, 2), {B, t, config_.dim}));
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

Tensor TransformerBlock::forward_cached(const Tensor& x, KvCache& cache, int64_t capacity) {
  Tensor h = add(x, attn->forward_cached((*ln1)(x), cache, capacity));
  return add(h, (*mlp)((*ln2)(h)));
}

}  // namespace pg
