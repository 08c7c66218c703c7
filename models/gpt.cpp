#include "models/gpt.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "models/config_json.h"
#include "nn/init.h"

namespace pg {

std::string GptConfig::to_json() const {
  nlohmann::json j = {{"model", "gpt"},
                      {"vocab_size", vocab_size},
                      {"context", context},
                      {"dim", dim},
                      {"layers", layers},
                      {"heads", heads},
                      {"mlp_ratio", mlp_ratio},
                      {"dropout", dropout},
                      {"attn", attn},
                      {"tie_weights", tie_weights},
                      {"pos", pos}};
  return j.dump();
}

GptConfig GptConfig::from_json(const std::string& text, const std::string& who) {
  nlohmann::json j = parse_config(text, who);
  check_config_model(j, "gpt", who);
  GptConfig c;
  config_field(j, "vocab_size", c.vocab_size, who);
  config_field(j, "context", c.context, who);
  config_field(j, "dim", c.dim, who);
  config_field(j, "layers", c.layers, who);
  config_field(j, "heads", c.heads, who);
  config_field(j, "mlp_ratio", c.mlp_ratio, who);
  config_field(j, "dropout", c.dropout, who);
  config_field(j, "attn", c.attn, who);
  config_field(j, "tie_weights", c.tie_weights, who);
  if (j.contains("pos")) config_field(j, "pos", c.pos, who);  // older checkpoints: learned
  c.check(who);
  return c;
}

void GptConfig::check(const std::string& who) const {
  check_config_range(who, "vocab_size", vocab_size, 1, kMaxVocab);
  check_config_range(who, "context", context, 1, kMaxContext);
  PG_CHECK(pos == "learned" || pos == "rope", who, "config field 'pos' is '", pos,
           "'; expected 'learned' or 'rope'");
  PG_CHECK(pos != "rope" || heads <= 0 || dim % heads != 0 || (dim / heads) % 2 == 0, who,
           "rotary positions need an even head size, got dim ", dim, " / heads ", heads);
  check_transformer_fields(who, *this);
  check_config_parameters(who, parameter_count());
}

int64_t GptConfig::parameter_count() const {
  if (vocab_size < 0 || context < 0 || dim < 0 || layers < 0 || mlp_ratio < 0) return 0;
  // In long double (a 64-bit mantissa: exact for these sums below 2^63), so that absurd sizes
  // saturate instead of overflowing.
  using W = long double;
  const W d = dim, h = W(mlp_ratio) * d, v = vocab_size;
  // ln1 and ln2 (2d each), qkv (3d^2 + 3d), proj (d^2 + d), fc1 (dh + h), fc2 (hd + d).
  const W block = 4 * d + 4 * d * d + 4 * d + 2 * d * h + h + d;
  const W table = pos == "rope" ? 0 : W(context) * d;  // learned positions only
  const W n = v * d + table + W(layers) * block + 2 * d + (tie_weights ? 0 : d * v);
  return n >= W(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(n);
}

Gpt::Gpt(const GptConfig& c) : config_(c) {
  c.check("Gpt");
  tok_ = register_module("tok", std::make_shared<Embedding>(c.vocab_size, c.dim));
  if (c.pos == "learned")
    pos_ = register_module("pos", std::make_shared<Embedding>(c.context, c.dim));
  AttentionConfig ac;
  ac.rope = c.pos == "rope";
  ac.dim = c.dim;
  ac.heads = c.heads;
  ac.activation = AttentionActivation::parse(c.attn);
  ac.causal = true;
  for (int64_t i = 0; i < c.layers; ++i)
    blocks_.push_back(
        register_module("blocks." + std::to_string(i),
                        std::make_shared<TransformerBlock>(ac, c.mlp_ratio * c.dim, c.dropout)));
  ln_f_ = register_module("ln_f", std::make_shared<LayerNorm>(c.dim));
  head_ = register_module("head", std::make_shared<Linear>(c.dim, c.vocab_size, false));
  // GPT-2's initialisation: N(0, 0.02) everywhere, residual projections scaled by depth.
  for (auto& [name, p] : named_parameters()) {
    if (name.ends_with(".bias") || name.find("ln") != std::string::npos) continue;
    double std = name.ends_with("proj.weight") || name.ends_with("fc2.weight")
                     ? 0.02 / std::sqrt(2.0 * static_cast<double>(c.layers))
                     : 0.02;
    normal_(p, 0.0, std);
  }
  if (c.tie_weights) head_->weight = tok_->weight;
}

Tensor Gpt::trunk(const Tensor& tokens) {
  PG_CHECK(tokens.dim() == 2 && tokens.size(1) <= config_.context, "Gpt",
           "expected token ids [B, T] with T <= context ", config_.context, ", got ",
           shape_str(tokens.shape()));
  int64_t T = tokens.size(1);
  Tensor x = (*tok_)(tokens);
  if (pos_) x = add(x, (*pos_)(arange(T, {DType::I64, tokens.device()})));
  for (auto& b : blocks_) x = (*b)(x);
  return x;
}

Tensor Gpt::forward(const Tensor& tokens) { return (*head_)((*ln_f_)(trunk(tokens))); }

Tensor Gpt::forward(const Tensor& tokens, const Tensor& rows) {
  PG_CHECK(rows.dim() == 1 && rows.dtype() == DType::I64, "Gpt",
           "expected rows as i64 indices [R], got ", shape_str(rows.shape()));
  Tensor x = trunk(tokens);
  // The rows' gradient flows back through embedding()'s scatter-add into the blocks' output.
  Tensor picked = embedding(reshape(x, {x.size(0) * x.size(1), x.size(2)}), rows);
  return (*head_)((*ln_f_)(picked));
}

Tensor Gpt::forward_cached(const Tensor& tokens, std::vector<KvCache>& caches) {
  PG_CHECK(tokens.dim() == 2, "Gpt", "expected token ids [B, T], got ", shape_str(tokens.shape()));
  if (caches.empty()) caches.resize(blocks_.size());
  PG_CHECK(caches.size() == blocks_.size(), "Gpt", "expected ", blocks_.size(),
           " caches (one per block), got ", caches.size());
  const int64_t start = caches.front().length, T = tokens.size(1);
  PG_CHECK(start + T <= config_.context, "Gpt", "positions ", start, " to ", start + T - 1,
           " are past the context of ", config_.context);
  Tensor x = (*tok_)(tokens);
  if (pos_)
    x = add(x, (*pos_)(arange(static_cast<double>(start), static_cast<double>(start + T), 1,
                              {DType::I64, tokens.device()})));
  for (size_t i = 0; i < blocks_.size(); ++i)
    x = blocks_[i]->forward_cached(x, caches[i], config_.context);
  return (*head_)((*ln_f_)(x));
}

std::vector<int32_t> Gpt::generate(std::vector<int32_t> ids, int64_t count, double temperature,
                                   int64_t top_k, Generator& gen) {
  PG_CHECK(!ids.empty(), "generate", "the prompt must hold at least one token");
  NoGradGuard no_grad;
  bool was_training = is_training();
  eval();
  const Device device = parameters().front().device();
  std::vector<KvCache> caches;
  // Reads the last `n` tokens as a prompt into fresh caches; the logits of the last one.
  auto prompt = [&](int64_t n) {
    caches.clear();
    std::vector<int64_t> window(ids.end() - n, ids.end());
    return forward_cached(from_vector(window, {1, n}, device), caches);
  };
  Tensor out = prompt(std::min<int64_t>(static_cast<int64_t>(ids.size()), config_.context));
  for (int64_t n = 0; n < count; ++n) {
    std::vector<float> l = out.select(1, -1).select(0, 0).contiguous().to_vector<float>();
    int32_t next;
    if (temperature <= 0) {
      next = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    } else {
      std::vector<int32_t> order(l.size());
      for (size_t i = 0; i < l.size(); ++i) order[i] = static_cast<int32_t>(i);
      // Stable: equal logits keep token order, so a seed always gives the same text.
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return l[a] > l[b]; });
      size_t k = top_k > 0 ? std::min<size_t>(top_k, order.size()) : order.size();
      std::vector<double> p(k);
      double total = 0;
      for (size_t i = 0; i < k; ++i)
        total += p[i] = std::exp((l[order[i]] - l[order[0]]) / temperature);
      double u = gen.uniform() * total;
      size_t i = 0;
      while (i + 1 < k && (u -= p[i]) > 0) ++i;
      next = order[i];
    }
    ids.push_back(next);
    if (n + 1 == count) break;
    out = caches.front().length < config_.context
              ? forward_cached(from_vector(std::vector<int64_t>{next}, {1, 1}, device), caches)
              : prompt(std::max<int64_t>(1, config_.context / 2));
  }
  train(was_training);
  return ids;
}

}  // namespace pg
