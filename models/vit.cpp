#include "models/vit.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "kernels/factory.h"
#include "models/config_json.h"
#include "nn/init.h"

namespace pg {

std::string VitConfig::to_json() const {
  nlohmann::json j = {{"model", "vit"},
                      {"image_size", image_size},
                      {"channels", channels},
                      {"patch", patch},
                      {"classes", classes},
                      {"dim", dim},
                      {"layers", layers},
                      {"heads", heads},
                      {"mlp_ratio", mlp_ratio},
                      {"dropout", dropout},
                      {"attn", attn},
                      {"pool", pool},
                      {"input_mean", input_mean},
                      {"input_std", input_std}};
  return j.dump();
}

VitConfig VitConfig::from_json(const std::string& text) {
  nlohmann::json j = parse_config(text, "VitConfig");
  VitConfig c;
  config_field(j, "image_size", c.image_size, "VitConfig");
  config_field(j, "channels", c.channels, "VitConfig");
  config_field(j, "patch", c.patch, "VitConfig");
  config_field(j, "classes", c.classes, "VitConfig");
  config_field(j, "dim", c.dim, "VitConfig");
  config_field(j, "layers", c.layers, "VitConfig");
  config_field(j, "heads", c.heads, "VitConfig");
  config_field(j, "mlp_ratio", c.mlp_ratio, "VitConfig");
  config_field(j, "dropout", c.dropout, "VitConfig");
  config_field(j, "attn", c.attn, "VitConfig");
  // Fields older checkpoints lack keep their defaults: class-token pooling, raw pixels.
  if (j.contains("pool")) config_field(j, "pool", c.pool, "VitConfig");
  if (j.contains("input_mean")) config_field(j, "input_mean", c.input_mean, "VitConfig");
  if (j.contains("input_std")) config_field(j, "input_std", c.input_std, "VitConfig");
  return c;
}

Vit::Vit(const VitConfig& c) : config_(c) {
  PG_CHECK(c.patch > 0 && c.image_size % c.patch == 0, "Vit", "image size ", c.image_size,
           " must be a multiple of the patch size ", c.patch);
  PG_CHECK(c.pool == "cls" || c.pool == "mean", "Vit", "pool must be 'cls' or 'mean', got '",
           c.pool, "'");
  PG_CHECK(c.input_std > 0 && std::isfinite(c.input_std) && std::isfinite(c.input_mean), "Vit",
           "input_std must be positive and finite and input_mean finite, got ", c.input_mean,
           " and ", c.input_std);
  patch_embed_ = register_module("patch_embed",
                                 std::make_shared<Linear>(c.channels * c.patch * c.patch, c.dim));
  cls_token = zeros({1, 1, c.dim});
  pos_embed = zeros({1, c.patches() + 1, c.dim});
  normal_(cls_token, 0.0, 0.02);
  normal_(pos_embed, 0.0, 0.02);
  register_parameter("cls_token", &cls_token);
  register_parameter("pos_embed", &pos_embed);
  AttentionConfig ac;
  ac.dim = c.dim;
  ac.heads = c.heads;
  ac.activation = AttentionActivation::parse(c.attn);
  ac.causal = false;
  for (int64_t i = 0; i < c.layers; ++i)
    blocks_.push_back(
        register_module("blocks." + std::to_string(i),
                        std::make_shared<TransformerBlock>(ac, c.mlp_ratio * c.dim, c.dropout)));
  ln_ = register_module("ln", std::make_shared<LayerNorm>(c.dim));
  head_ = register_module("head", std::make_shared<Linear>(c.dim, c.classes));
}

Tensor Vit::forward(const Tensor& images) {
  const auto& c = config_;
  PG_CHECK(images.dim() == 4 && images.size(1) == c.channels && images.size(2) == c.image_size &&
               images.size(3) == c.image_size,
           "Vit", "expected images [B, ", c.channels, ", ", c.image_size, ", ", c.image_size,
           "], got ", shape_str(images.shape()));
  int64_t B = images.size(0), g = c.image_size / c.patch, p = c.patch;
  Tensor x0 = images;
  if (c.input_mean != 0.0 || c.input_std != 1.0)
    x0 = mul(add(images, -c.input_mean), 1.0 / c.input_std);
  // [B, C, g, p, g, p] -> [B, g, g, C, p, p] -> [B, g*g, C*p*p]
  Tensor patches = reshape(permute(reshape(x0, {B, c.channels, g, p, g, p}), {0, 2, 4, 1, 3, 5}),
                           {B, g * g, c.channels * p * p});
  Tensor x = (*patch_embed_)(patches);
  x = cat({expand(cls_token, {B, 1, c.dim}), x}, 1);
  x = add(x, pos_embed);
  for (auto& b : blocks_) x = (*b)(x);
  Tensor h = (*ln_)(x);
  return (*head_)(c.pool == "mean" ? mean(h, {1}) : h.select(1, 0));
}

}  // namespace pg
