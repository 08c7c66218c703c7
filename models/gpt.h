// GPT: a decoder-only character language model built from nn modules.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace pg {

/// Size and policy of a GPT; saved in checkpoints so that a checkpoint rebuilds the model.
struct GptConfig {
  int64_t vocab_size = 0;
  int64_t context = 128;
  int64_t dim = 128;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t mlp_ratio = 4;
  double dropout = 0.0;
  std::string attn = "softmax";  ///< attention-activation spec
  bool tie_weights = false;      ///< share the token embedding with the output head
  /// Positions: "learned" (a table of `context` rows added to the tokens) or "rope" (rotary,
  /// applied to queries and keys in every attention). Configs without the field are "learned".
  std::string pos = "learned";

  /// Largest sizes a config may have (see also kMaxConfigParameters in models/config_json.h).
  static constexpr int64_t kMaxVocab = int64_t{1} << 24, kMaxContext = int64_t{1} << 20,
                           kMaxDim = int64_t{1} << 16, kMaxLayers = 1024, kMaxMlpRatio = 64;

  /// JSON text of the config.
  std::string to_json() const;
  /// Parses to_json()'s text and check()s it; throws pg::Error naming `who` (the file, in
  /// checkpoints) and the bad field.
  static GptConfig from_json(const std::string& text, const std::string& who = "GptConfig");
  /// Throws pg::Error naming `who` and the field unless every size is in range (positive, at
  /// most the limits above, heads dividing dim), dropout is in [0, 1), attn is a valid spec and
  /// the model has at most kMaxConfigParameters parameters.
  void check(const std::string& who) const;
  /// Parameters of a Gpt built from this config (a tied head counted once); INT64_MAX when
  /// that does not fit, 0 for negative sizes.
  int64_t parameter_count() const;
};

/// Token embeddings (+ learned positions, or rotary ones in the attention), pre-norm causal
/// blocks, final LayerNorm, linear head.
class Gpt : public Module {
 public:
  explicit Gpt(const GptConfig& config);
  /// Token ids [B, T] (i64, T <= context) -> logits [B, T, vocab].
  Tensor forward(const Tensor& tokens) override;
  /// Logits [R, vocab] at `rows` (i64 [R], indices into the B*T positions of tokens [B, T]):
  /// those rows of forward(tokens), without the output head's cost for the others.
  Tensor forward(const Tensor& tokens, const Tensor& rows);
  std::string type_name() const override { return "Gpt"; }
  const GptConfig& config() const { return config_; }
  /// Logits [B, t, vocab] of tokens [B, t] at positions caches[0].length ... (eval mode),
  /// appending their keys and values to `caches` (one per block, sized by the first call):
  /// incremental decoding, equal to forward() on a context-long window that starts with the
  /// sequence (the activation's N is that of training: see MultiHeadAttention::forward_cached).
  Tensor forward_cached(const Tensor& tokens, std::vector<KvCache>& caches);
  /// Continues `prompt` by `count` tokens sampled at `temperature` from the top_k most likely
  /// (top_k <= 0: all); temperature 0 picks the most likely token. Each token costs one cached
  /// step (forward_cached); when the sequence fills the context, the last context / 2 tokens
  /// are read again as a new prompt (learned positions cannot slide), so a token sees between
  /// context / 2 and context tokens before it.
  std::vector<int32_t> generate(std::vector<int32_t> prompt, int64_t count, double temperature,
                                int64_t top_k, Generator& gen);
  /// The attention blocks, for diagnostics.
  const std::vector<std::shared_ptr<TransformerBlock>>& blocks() const { return blocks_; }

 private:
  Tensor trunk(const Tensor& tokens);  // the blocks' output [B, T, dim], before ln_f
  GptConfig config_;
  std::shared_ptr<Embedding> tok_, pos_;
  std::vector<std::shared_ptr<TransformerBlock>> blocks_;
  std::shared_ptr<LayerNorm> ln_f_;
  std::shared_ptr<Linear> head_;
};

}  // namespace pg
