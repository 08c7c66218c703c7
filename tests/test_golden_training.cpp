// Whole training steps against PyTorch: the tiny GPT and ViT of tools/reference, started from the
// same weights and fed the same batches, follow the same loss, gradient-norm and weight
// trajectory in f64 under the training programs' recipe (AdamW with decay on matrices only,
// warm-up + cosine, global-norm clipping, label smoothing for the ViT). The fixture comes from
// tools/reference/make_fixtures.py. Any difference in a forward, a backward, the optimizer, the
// schedule or the clipping shows up here even when each piece passes its own test.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "device_check.h"
#include "helpers.h"
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/loss.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "polygrad.h"

using namespace pg;

namespace {

const SafetensorsFile& fixture() {
  static SafetensorsFile fx =
      load_safetensors(std::string(PG_FIXTURE_DIR) + "/training_lockstep.safetensors");
  return fx;
}

nlohmann::json config() { return nlohmann::json::parse(fixture().metadata.at("config")); }

StateDict with_prefix(const std::string& prefix) {
  StateDict out;
  for (auto& [name, t] : fixture().tensors)
    if (name.rfind(prefix, 0) == 0) out[name.substr(prefix.size())] = t;
  return out;
}

// Trains `model` (already holding the fixture's initial weights) on the fixture's batches of
// `kind` ("gpt" or "vit") and checks every step's loss and gradient norm and the final weights.
void train_in_lockstep(Module& model, const std::string& kind, const std::string& spec,
                       const std::vector<std::string>& no_decay, double label_smoothing,
                       Device device) {
  auto cfg = config();
  const auto& t = fixture().tensors;
  model.to(device);
  double lr = cfg["lr"];
  AdamW optimizer(decay_groups(model, lr, cfg["weight_decay"], no_decay));
  WarmupCosineLR schedule(lr, cfg["warmup"], cfg["steps"], cfg["min_lr"]);
  Tensor xs = t.at(kind + ".x"), ys = t.at(kind + ".y");
  auto losses = t.at(kind + "." + spec + ".loss").to_vector<double>();
  auto norms = t.at(kind + "." + spec + ".grad_norm").to_vector<double>();
  REQUIRE(losses.size() == static_cast<size_t>(xs.size(0)));
  for (int64_t step = 0; step < xs.size(0); ++step) {
    CAPTURE(step);
    optimizer.set_lr(schedule.lr_at(step));
    Tensor logits = model(xs.select(0, step).to(device));
    Tensor loss = cross_entropy_loss(logits, ys.select(0, step).to(device), -100, label_smoothing);
    optimizer.zero_grad();
    loss.backward();
    double norm = clip_grad_norm(model.parameters(), cfg["clip"]);
    optimizer.step();
    CHECK(loss.item() == doctest::Approx(losses[step]).epsilon(1e-10));
    CHECK(norm == doctest::Approx(norms[step]).epsilon(1e-9));
  }
  StateDict final_weights = with_prefix(kind + "." + spec + ".final.");
  auto params = model.named_parameters();
  REQUIRE(params.size() == final_weights.size());
  for (auto& [name, p] : params) {
    CAPTURE(name);
    CHECK(pgt::max_rel_diff_strict(p, final_weights.at(name)) < 1e-9);
  }
}

void gpt_in_lockstep(const std::string& spec, Device device) {
  GptConfig cfg = GptConfig::from_json(config()["gpt"].dump());
  cfg.attn = spec;
  Gpt model(cfg);
  model.to(DType::F64);
  model.load_state_dict(with_prefix("gpt.init."));
  train_in_lockstep(model, "gpt", spec, {}, 0.0, device);
}

void vit_in_lockstep(const std::string& spec, Device device) {
  VitConfig cfg = VitConfig::from_json(config()["vit"].dump());
  cfg.attn = spec;
  Vit model(cfg);
  model.to(DType::F64);
  model.load_state_dict(with_prefix("vit.init."));
  train_in_lockstep(model, "vit", spec, {"cls_token", "pos_embed"}, config()["label_smoothing"],
                    device);
}

}  // namespace

TEST_CASE("GPT and ViT training steps follow PyTorch's trajectory for every built-in activation") {
  REQUIRE(fixture().metadata.count("generator"));
  for (const std::string& spec : pgt::builtin_specs()) {
    CAPTURE(spec);
    gpt_in_lockstep(spec, Device::cpu());
    vit_in_lockstep(spec, Device::cpu());
    if (pgt::have_cuda()) {
      gpt_in_lockstep(spec, Device::cuda());
      vit_in_lockstep(spec, Device::cuda());
    }
  }
}
