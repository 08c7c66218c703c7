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

VitConfig VitConfig::from_json(const std::string& text, const std::string& who) {
  nlohmann::json j = parse_config(text, who);
  check_config_model(j, "vit", who);
  VitConfig c;
  config_field(j, "image_size", c.image_size, who);
  config_field(j, "channels", c.channels, who);
  config_field(j, "patch", c.patch, who);
  config_field(j, "classes", c.classes, who);
  config_field(j, "dim", c.dim, who);
  config_field(j, "layers", c.layers, who);
  config_field(j, "heads", c.heads, who);
  config_field(j, "mlp_ratio", c.mlp_ratio, who);
  config_field(j, "dropout", c.dropout, who);
  config_field(j, "attn", c.attn, who);
  // Fields older checkpoints lack keep their defaults: class-token pooling, raw pixels.
  if (j.contains("pool")) config_field(j, "pool", c.pool, who);
  if (j.contains("input_mean")) config_field(j, "input_mean", c.input_mean, who);
  if (j.contains("input_std")) config_field(j, "input_std", c.input_std, who);
  c.check(who);
  return c;
}

void VitConfig::check(const std::string& who) const {
  check_config_range(who, "image_size", image_size, 1, kMaxImageSize);
  check_config_range(who, "channels", channels, 1, kMaxChannels);
  check_config_range(who, "patch", patch, 1, image_size);
  PG_CHECK(image_size % patch == 0, who, "config field 'image_size' is ", image_size,
           ", which is not a multiple of 'patch' ", patch);
  PG_CHECK(patches() <= kMaxPatches, who, "config describes ", patches(),
           " patches per image, more than ", kMaxPatches);
  check_config_range(who, "classes", classes, 1, kMaxClasses);
  check_transformer_fields(who, *this);
  PG_CHECK(pool == "cls" || pool == "mean", who, "config field 'pool' is '", pool,
           "', expected 'cls' or 'mean'");
  PG_CHECK(std::isfinite(input_mean), who, "config field 'input_mean' is ", input_mean,
           ", expected a finite number");
  PG_CHECK(std::isfinite(input_std) && input_std > 0, who, "config field 'input_std' is ",
           input_std, ", expected a positive finite number");
  check_config_parameters(who, parameter_count());
}

int64_t VitConfig::parameter_count() const {
  if (image_size < 0 || channels < 0 || patch <= 0 || classes < 0 || dim < 0 || layers < 0 ||
      mlp_ratio < 0)
    return 0;
  // In long double (a 64-bit mantissa: exact for these sums below 2^63), so that absurd sizes
  // saturate instead of overflowing.
  using W = long double;
  const W d = dim, h = W(mlp_ratio) * d, g = W(image_size / patch);
  const W block = 4 * d + 4 * d * d + 4 * d + 2 * d * h + h + d;  // as in GptConfig
  const W n = (W(channels) * W(patch) * W(patch) + 1) * d         // patch embedding
              + d + (g * g + 1) * d                               // class token, positions
              + W(layers) * block + 2 * d + (d + 1) * W(classes);
  return n >= W(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(n);
}

Vit::Vit(const VitConfig& c) : config_(c) {
  c.check("Vit");
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
