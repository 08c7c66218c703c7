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

  /// Largest sizes a config may have (see also kMaxConfigParameters in models/config_json.h).
  static constexpr int64_t kMaxImageSize = int64_t{1} << 14, kMaxChannels = 1024,
                           kMaxClasses = int64_t{1} << 24, kMaxPatches = int64_t{1} << 20,
                           kMaxDim = int64_t{1} << 16, kMaxLayers = 1024, kMaxMlpRatio = 64;

  /// JSON text of the config.
  std::string to_json() const;
  /// Parses to_json()'s text and check()s it; throws pg::Error naming `who` (the file, in
  /// checkpoints) and the bad field.
  static VitConfig from_json(const std::string& text, const std::string& who = "VitConfig");
  /// Throws pg::Error naming `who` and the field unless every size is in range (positive, at
  /// most the limits above, patch dividing image_size, heads dividing dim), dropout is in
  /// [0, 1), attn is a valid spec, pool is "cls" or "mean", input_std is positive, both input
  /// statistics are finite and the model has at most kMaxConfigParameters parameters.
  void check(const std::string& who) const;
  /// Parameters of a Vit built from this config; INT64_MAX when that does not fit, 0 for
  /// negative sizes or a patch of 0.
  int64_t parameter_count() const;
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
