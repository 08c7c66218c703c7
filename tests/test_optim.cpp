// Optimizers against PyTorch's (fixture) and hand-computed values; state dicts; clipping.
#include <doctest/doctest.h>

#include <cmath>

#include "nn/optim.h"
#include "nn/safetensors.h"
#include "polygrad.h"

using namespace pg;

namespace {

double max_rel(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double d = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i)
    d = std::max(d, std::fabs(x[i] - y[i])), s = std::max(s, std::fabs(y[i]));
  return d / s;
}

}  // namespace

TEST_CASE("AdamW, Adam and SGD match PyTorch step by step") {
  auto fx = load_safetensors(std::string(PG_FIXTURE_DIR) + "/optim_steps.safetensors").tensors;
  for (const char* name : {"adamw", "adam", "sgd"}) {
    CAPTURE(name);
    Tensor p = fx.at("p0").clone().requires_grad_();
    std::string n = name;
    std::unique_ptr<Optimizer> opt;
    if (n == "adamw")
      opt = std::make_unique<AdamW>(std::vector<ParamGroup>{{{p}, 0.01, 0.1}}, 0.9, 0.99, 1e-8);
    if (n == "adam")
      opt = std::make_unique<Adam>(std::vector<ParamGroup>{{{p}, 0.01, 0.1}}, 0.9, 0.99, 1e-8);
    if (n == "sgd")
      opt = std::make_unique<SGD>(std::vector<ParamGroup>{{{p}, 0.1, 0.01}}, 0.9, true);
    for (int i = 0; i < 3; ++i) {
      p.set_grad(fx.at("grad" + std::to_string(i)).clone());
      opt->step();
      CHECK(max_rel(p, fx.at(n + ".step" + std::to_string(i))) < 1e-12);
    }
  }
}

TEST_CASE("plain SGD and momentum against hand-computed values; groups; skipped params") {
  Tensor a = from_vector<double>({1.0, -2.0}, {2}).requires_grad_();
  Tensor b = from_vector<double>({3.0}, {1}).requires_grad_();
  Tensor c = from_vector<double>({5.0}, {1}).requires_grad_();  // never gets a gradient
  SGD opt({{{a}, 0.1, 0.0}, {{b, c}, 0.5, 0.0}}, 0.9);
  a.set_grad(from_vector<double>({1.0, 1.0}, {2}));
  b.set_grad(from_vector<double>({2.0}, {1}));
  opt.step();
  CHECK(a.to_vector<double>() == std::vector<double>{0.9, -2.1});
  CHECK(b.item() == doctest::Approx(3.0 - 0.5 * 2.0));
  opt.step();  // buf = 0.9 * 1 + 1 = 1.9
  CHECK(a.to_vector<double>()[0] == doctest::Approx(0.9 - 0.1 * 1.9));
  CHECK(b.item() == doctest::Approx(2.0 - 0.5 * 3.8));
  CHECK(c.item() == 5.0);
}

TEST_CASE("AdamW's decoupled decay differs from Adam's L2 decay, both by their formulas") {
  double p0 = 2.0, g = 0.5, lr = 0.1, wd = 0.2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  Tensor pa = from_vector<double>({p0}, {1}).requires_grad_(),
         pw = pa.clone().detach().requires_grad_();
  Adam adam({{{pa}, lr, wd}}, b1, b2, eps);
  AdamW adamw({{{pw}, lr, wd}}, b1, b2, eps);
  pa.set_grad(from_vector<double>({g}, {1}));
  pw.set_grad(from_vector<double>({g}, {1}));
  adam.step();
  adamw.step();
  double ga = g + wd * p0;  // first step: m_hat = g, v_hat = g^2
  CHECK(pa.item() == doctest::Approx(p0 - lr * ga / (std::fabs(ga) + eps)).epsilon(1e-12));
  CHECK(pw.item() ==
        doctest::Approx(p0 * (1 - lr * wd) - lr * g / (std::fabs(g) + eps)).epsilon(1e-12));
}

TEST_CASE("optimizer state dict: resuming gives bit-identical parameters") {
  Generator gen(3);
  auto make = [&](Tensor& p) { return AdamW({{{p}, 0.01, 0.05}}); };
  Tensor p = randn({4, 3}, {}, &gen).requires_grad_();
  std::vector<Tensor> grads;
  for (int i = 0; i < 5; ++i) grads.push_back(randn({4, 3}, {}, &gen));
  AdamW opt = make(p);
  for (int i = 0; i < 3; ++i) p.set_grad(grads[i]), opt.step();
  StateDict saved = opt.state_dict();
  Tensor p_saved = p.clone().detach();
  for (int i = 3; i < 5; ++i) p.set_grad(grads[i]), opt.step();

  Tensor q = p_saved.clone().requires_grad_();
  AdamW opt2 = make(q);
  opt2.load_state_dict(saved);
  CHECK(opt2.steps() == 3);
  for (int i = 3; i < 5; ++i) q.set_grad(grads[i]), opt2.step();
  CHECK(q.to_vector<float>() == p.to_vector<float>());

  StateDict missing = saved;
  missing.erase("group.0.lr");
  CHECK_THROWS_WITH_AS(opt2.load_state_dict(missing), doctest::Contains("group.0.lr"), pg::Error);
  StateDict extra = saved;
  extra["state.7.0.exp_avg"] = zeros({4, 3});
  CHECK_THROWS_WITH_AS(opt2.load_state_dict(extra), doctest::Contains("state.7.0.exp_avg"),
                       pg::Error);
  StateDict wrong = saved;
  wrong["state.0.0.exp_avg"] = zeros({3, 4});
  CHECK_THROWS_WITH_AS(opt2.load_state_dict(wrong), doctest::Contains("[3, 4]"), pg::Error);
}

TEST_CASE("clip_grad_norm returns the norm and scales new gradient tensors") {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({1}).requires_grad_();
  Tensor ga = from_vector<float>({3, 0}, {2}), gb = from_vector<float>({4}, {1});
  a.set_grad(ga);
  b.set_grad(gb);
  CHECK(clip_grad_norm({a, b}, 1.0) == doctest::Approx(5.0));
  CHECK(a.grad().to_vector<float>()[0] == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(b.grad().item() == doctest::Approx(0.8).epsilon(1e-5));
  CHECK(ga.to_vector<float>()[0] == 3.0f);  // the old gradient object is untouched
  CHECK(clip_grad_norm({a, b}, 10.0) == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(a.grad().to_vector<float>()[0] == doctest::Approx(0.6).epsilon(1e-5));
}

TEST_CASE("learning-rate schedules") {
  WarmupCosineLR s(1.0, 10, 110, 0.1);
  CHECK(s.lr_at(0) == doctest::Approx(0.1));
  CHECK(s.lr_at(9) == doctest::Approx(1.0));
  CHECK(s.lr_at(10) == doctest::Approx(1.0));
  CHECK(s.lr_at(60) == doctest::Approx(0.55));
  CHECK(s.lr_at(110) == doctest::Approx(0.1));
  CHECK(s.lr_at(500) == doctest::Approx(0.1));
  CHECK(ConstantLR(0.3).lr_at(77) == 0.3);
  CHECK_THROWS_AS(WarmupCosineLR(1.0, -1, 10), pg::Error);
}
