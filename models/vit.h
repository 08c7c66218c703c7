// Vision Transformer for small grey or colour images, built from nn modules.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace pg {

/// Size and policy of a ViT; saved in checkpoints so that a checkpoint rebuilds the model.
struct VitConfig {
  int64_t image_size = 28;
  int64_t channels = 1;
  int64_t patch = 4;
  int64_t classes = 10;
  int64_t dim = 64;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t mlp_ratio = 4;
  double dropout = 0.0;
  std::string attn = "softmax";  ///< attention-activation spec
  std::string pool = "cls";  ///< classify from the class token ("cls") or the token mean ("mean")
  double input_mean = 0.0;   ///< images enter as (x - input_mean) / input_std
  double input_std = 1.0;

  /// JSON text of the config.
  std::string to_json() const;
  /// Parses to_json()'s text; throws pg::Error naming the bad field.
  static VitConfig from_json(const std::string& text);
  /// Number of patches (tokens without the class token).
  int64_t patches() const { return (image_size / patch) * (image_size / patch); }
};

/// Patches -> linear embedding, class token, learned positions, bidirectional blocks,
/// LayerNorm, linear head on the class token.
class Vit : public Module {
 public:
  explicit Vit(const VitConfig& config);
  /// Images [B, C, H, W] -> class logits [B, classes].
  Tensor forward(const Tensor& images) override;
  std::string type_name() const override { return "Vit"; }
  const VitConfig& config() const { return config_; }
  const std::vector<std::shared_ptr<TransformerBlock>>& blocks() const { return blocks_; }

  Tensor cls_token, pos_embed;

 private:
  VitConfig config_;
  std::shared_ptr<Linear> patch_embed_;
  std::vector<std::shared_ptr<TransformerBlock>> blocks_;
  std::shared_ptr<LayerNorm> ln_;
  std::shared_ptr<Linear> head_;
};

}  // namespace pg
