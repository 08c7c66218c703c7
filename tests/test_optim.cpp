// Optimizers against PyTorch (fixture) and against their formulas evaluated here in plain
// doubles; groups, skipped parameters, in-place updates, state dicts, clipping, schedules.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <numbers>

#include "helpers.h"
#include "nn/lr_schedule.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

using namespace pg;
using Vec = std::vector<double>;

namespace {

// --- references: the published update rules, written out independently of nn/optim ----------

struct AdamCfg {
  double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.0;
  bool decoupled = false;
};

// Kingma & Ba's Adam with bias-corrected moments; weight decay is added to the gradient (Adam)
// or multiplies the parameter by 1 - lr * wd before the step (AdamW, Loshchilov & Hutter).
Vec adam_ref(Vec p, const std::vector<Vec>& grads, const AdamCfg& c) {
  Vec m(p.size(), 0.0), v(p.size(), 0.0);
  for (size_t t = 1; t <= grads.size(); ++t)
    for (size_t i = 0; i < p.size(); ++i) {
      double g = grads[t - 1][i];
      if (c.decoupled)
        p[i] -= c.lr * c.wd * p[i];
      else
        g += c.wd * p[i];
      m[i] = c.b1 * m[i] + (1 - c.b1) * g;
      v[i] = c.b2 * v[i] + (1 - c.b2) * g * g;
      double m_hat = m[i] / (1 - std::pow(c.b1, static_cast<double>(t)));
      double v_hat = v[i] / (1 - std::pow(c.b2, static_cast<double>(t)));
      p[i] -= c.lr * m_hat / (std::sqrt(v_hat) + c.eps);
    }
  return p;
}

// SGD as documented by torch.optim.SGD (dampening 0): the buffer starts as the first step's
// decayed gradient.
Vec sgd_ref(Vec p, const std::vector<Vec>& grads, double lr, double momentum, bool nesterov,
            double wd) {
  Vec buf(p.size(), 0.0);
  for (size_t t = 0; t < grads.size(); ++t)
    for (size_t i = 0; i < p.size(); ++i) {
      double d = grads[t][i] + wd * p[i];
      if (momentum > 0) {
        buf[i] = t == 0 ? d : momentum * buf[i] + d;
        d = nesterov ? d + momentum * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  return p;
}

Tensor param(const Vec& v, DType dt = DType::F64) {
  return from_vector<double>(v, {static_cast<int64_t>(v.size())}).to(dt).requires_grad_();
}

Tensor grad_of(const Vec& v, DType dt = DType::F64) {
  return from_vector<double>(v, {static_cast<int64_t>(v.size())}).to(dt);
}

const std::vector<Vec> kGrads = {{0.5, -1.0, 0.25}, {0.1, 2.0, -0.75}, {-0.3, 0.4, 1.5}};
const Vec kP0 = {1.0, -2.0, 0.5};

// Runs `opt` over kGrads on p, checking p after every step against ref(first t gradients).
template <typename Ref>
void check_steps(Optimizer& opt, Tensor& p, Ref ref, double rtol, const std::string& what) {
  for (size_t t = 0; t < kGrads.size(); ++t) {
    p.set_grad(grad_of(kGrads[t], p.dtype()));
    opt.step();
    std::vector<Vec> seen(kGrads.begin(), kGrads.begin() + static_cast<int64_t>(t) + 1);
    pgt::check_close(p, ref(seen), 1e-7 * rtol, rtol, what + " step " + std::to_string(t + 1));
  }
}

}  // namespace

TEST_CASE(
    "AdamW, Adam and SGD match PyTorch step by step (fixture from "
    "tools/reference/make_fixtures.py)") {
  auto fx = load_safetensors(std::string(PG_FIXTURE_DIR) + "/optim_steps.safetensors").tensors;
  for (const char* name : {"adamw", "adam", "sgd"}) {
    CAPTURE(name);
    Tensor p = fx.at("p0").clone().requires_grad_();
    REQUIRE(p.dtype() == DType::F64);
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
      CHECK(pgt::max_rel_diff(p, fx.at(n + ".step" + std::to_string(i))) < 1e-12);
    }
  }
  // f32 with PyTorch's defaults: the same roundings, so parameters and state agree to an ulp.
  Tensor p = fx.at("p0").to(DType::F32).requires_grad_();
  AdamW opt(std::vector<ParamGroup>{{{p}, 2e-3, 0.05}});
  for (int i = 0; i < 3; ++i) {
    std::string s = std::to_string(i);
    p.set_grad(fx.at("grad" + s).to(DType::F32));
    opt.step();
    StateDict st = opt.state_dict();
    CHECK(pgt::max_rel_diff(p, fx.at("adamw32.step" + s)) < 2e-7);
    CHECK(pgt::max_rel_diff(st.at("state.0.0.exp_avg"), fx.at("adamw32.exp_avg" + s)) < 2e-7);
    CHECK(pgt::max_rel_diff(st.at("state.0.0.exp_avg_sq"), fx.at("adamw32.exp_avg_sq" + s)) < 2e-7);
  }
}

TEST_CASE("SGD: plain, momentum, Nesterov, weight decay against hand-computed values") {
  // Two steps worked out by hand: lr 0.1, momentum 0.9, p = 1, g = 1 then 1.
  // Step 1: buf = 1, p = 0.9. Step 2: buf = 0.9 * 1 + 1 = 1.9, p = 0.9 - 0.19 = 0.71.
  Tensor a = param({1.0});
  SGD by_hand({{{a}, 0.1, 0.0}}, 0.9);
  a.set_grad(grad_of({1.0}));
  by_hand.step();
  CHECK(a.item() == doctest::Approx(0.9).epsilon(1e-15));
  by_hand.step();  // the same gradient again
  CHECK(a.item() == doctest::Approx(0.71).epsilon(1e-15));

  struct Case {
    double lr, momentum, wd;
    bool nesterov;
  };
  for (Case c : {Case{0.1, 0.0, 0.0, false}, Case{0.1, 0.9, 0.0, false}, Case{0.05, 0.9, 0.0, true},
                 Case{0.1, 0.8, 0.01, true}, Case{0.2, 0.0, 0.1, false}}) {
    for (DType dt : {DType::F64, DType::F32}) {
      std::string what = "SGD lr " + std::to_string(c.lr) + " momentum " +
                         std::to_string(c.momentum) + " wd " + std::to_string(c.wd) +
                         (c.nesterov ? " nesterov " : " ") + dtype_name(dt);
      Tensor p = param(kP0, dt);
      SGD opt({{{p}, c.lr, c.wd}}, c.momentum, c.nesterov);
      check_steps(
          opt, p,
          [&](const std::vector<Vec>& g) {
            return sgd_ref(kP0, g, c.lr, c.momentum, c.nesterov, c.wd);
          },
          dt == DType::F64 ? 1e-14 : 1e-6, what);
    }
  }
}

TEST_CASE("Adam and AdamW against the textbook formulas for three steps, f64 and f32") {
  for (bool decoupled : {false, true})
    for (double wd : {0.0, 0.1})
      for (DType dt : {DType::F64, DType::F32}) {
        AdamCfg c{0.1, 0.9, 0.99, 1e-8, wd, decoupled};
        std::string what = std::string(decoupled ? "AdamW" : "Adam") + " wd " + std::to_string(wd) +
                           " " + dtype_name(dt);
        Tensor p = param(kP0, dt);
        std::unique_ptr<Optimizer> opt;
        if (decoupled)
          opt =
              std::make_unique<AdamW>(std::vector<ParamGroup>{{{p}, c.lr, wd}}, c.b1, c.b2, c.eps);
        else
          opt = std::make_unique<Adam>(std::vector<ParamGroup>{{{p}, c.lr, wd}}, c.b1, c.b2, c.eps);
        check_steps(
            *opt, p, [&](const std::vector<Vec>& g) { return adam_ref(kP0, g, c); },
            dt == DType::F64 ? 1e-13 : 1e-6, what);
      }
}

TEST_CASE("weight decay: L2 in SGD and Adam, decoupled in AdamW, each by its own formula") {
  // One step, worked out by hand. p = 2, g = 0.5, lr = 0.1, wd = 0.2.
  const double p0 = 2.0, g = 0.5, lr = 0.1, wd = 0.2, eps = 1e-8;
  Tensor ps = param({p0}), pa = param({p0}), pw = param({p0});
  SGD sgd({{{ps}, lr, wd}});
  Adam adam({{{pa}, lr, wd}}, 0.9, 0.999, eps);
  AdamW adamw({{{pw}, lr, wd}}, 0.9, 0.999, eps);
  for (Tensor* p : {&ps, &pa, &pw}) p->set_grad(grad_of({g}));
  sgd.step();
  adam.step();
  adamw.step();
  // SGD: p - lr (g + wd p) = 2 - 0.1 * 0.9 = 1.91.
  CHECK(ps.item() == doctest::Approx(1.91).epsilon(1e-15));
  // Adam's first step: m_hat = g', v_hat = g'^2 with g' = g + wd p = 0.9, a step of
  // lr * g' / (|g'| + eps).
  CHECK(pa.item() == doctest::Approx(p0 - lr * 0.9 / (0.9 + eps)).epsilon(1e-14));
  // AdamW: p (1 - lr wd) = 1.96, then the step of the bare gradient.
  CHECK(pw.item() == doctest::Approx(1.96 - lr * g / (g + eps)).epsilon(1e-14));
  CHECK(std::fabs(pa.item() - pw.item()) > 0.03);
  // Without decay Adam and AdamW are the same optimizer, bit for bit.
  Tensor qa = param(kP0), qw = param(kP0);
  Adam adam0({{{qa}, 0.1, 0.0}});
  AdamW adamw0({{{qw}, 0.1, 0.0}});
  for (const Vec& gr : kGrads) {
    qa.set_grad(grad_of(gr));
    qw.set_grad(grad_of(gr));
    adam0.step();
    adamw0.step();
  }
  CHECK(qa.to_vector<double>() == qw.to_vector<double>());
}

TEST_CASE("parameter groups with their own lr and weight decay; params without a gradient") {
  Tensor a = param(kP0), b = param({0.3, -0.7}), c = param({5.0}), late = param({1.5, 2.5});
  AdamW opt({{{a}, 0.1, 0.0}, {{b, c, late}, 0.02, 0.5}}, 0.9, 0.999, 1e-8);
  std::vector<Vec> gb = {{1.0, -2.0}, {0.5, 0.5}, {-1.0, 3.0}};
  for (size_t t = 0; t < 3; ++t) {
    a.set_grad(grad_of(kGrads[t]));
    b.set_grad(grad_of(gb[t]));
    // `late` gets its first gradient at the third step: its bias correction starts there.
    if (t == 2) late.set_grad(grad_of({0.2, -0.4}));
    opt.step();
  }
  CHECK(opt.steps() == 3);
  pgt::check_close(a, adam_ref(kP0, kGrads, {0.1, 0.9, 0.999, 1e-8, 0.0, true}), 0, 1e-13, "a");
  pgt::check_close(b, adam_ref({0.3, -0.7}, gb, {0.02, 0.9, 0.999, 1e-8, 0.5, true}), 0, 1e-13,
                   "b");
  pgt::check_close(late, adam_ref({1.5, 2.5}, {{0.2, -0.4}}, {0.02, 0.9, 0.999, 1e-8, 0.5, true}),
                   0, 1e-13, "late");
  CHECK(c.item() == 5.0);  // never had a gradient: untouched, even by weight decay
  StateDict s = opt.state_dict();
  CHECK(s.count("state.1.0.exp_avg"));
  CHECK_FALSE(s.count("state.1.1.exp_avg"));  // no state for the parameter never updated
  CHECK(s.at("state.1.2.step").item() == 1);
  CHECK(s.at("state.0.0.step").item() == 3);

  // SGD skips a parameter without a gradient too, and zero_grad clears every gradient.
  Tensor x = param({1.0}), y = param({2.0});
  SGD sgd({{{x, y}, 0.5, 0.1}}, 0.9);
  x.set_grad(grad_of({1.0}));
  sgd.step();
  CHECK(x.item() == doctest::Approx(1.0 - 0.5 * 1.1).epsilon(1e-15));
  CHECK(y.item() == 2.0);
  sgd.zero_grad();
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(y.grad().defined());
  sgd.step();  // nothing to do
  CHECK(x.item() == doctest::Approx(0.45).epsilon(1e-15));

  // Learning rates can change between steps, per group or all at once.
  opt.param_groups()[0].lr = 0.5;
  CHECK(opt.param_groups()[1].lr == 0.02);
  opt.set_lr(0.3);
  CHECK(opt.param_groups()[0].lr == 0.3);
  CHECK(opt.param_groups()[1].lr == 0.3);
}

TEST_CASE("updates are in place, unrecorded, and the big-parameter (threaded) loop is exact") {
  Generator gen(5);
  const int64_t n = 40000;  // above the threshold where the loop runs on all threads
  Tensor p = randn({200, 200}, {}, &gen).requires_grad_();
  Tensor alias = p;                    // another handle: sees the update
  Tensor view = p.detach().view({n});  // a view of the same storage: sees the update
  const void* storage = p.raw_data();
  Vec p0 = p.to_vector<double>();
  std::vector<Vec> grads;
  AdamW opt({{{p}, 0.01, 0.1}});
  for (int t = 0; t < 2; ++t) {
    Tensor g = randn({200, 200}, {}, &gen);
    grads.push_back(g.to_vector<double>());
    p.set_grad(g);
    opt.step();
  }
  CHECK(p.raw_data() == storage);
  CHECK(p.is_leaf());
  CHECK(p.requires_grad());
  CHECK(p.grad_fn() == nullptr);
  CHECK(alias.to_vector<float>() == p.to_vector<float>());
  CHECK(view.to_vector<float>() == p.to_vector<float>());
  pgt::check_close(p, adam_ref(p0, grads, {0.01, 0.9, 0.999, 1e-8, 0.1, true}), 1e-6, 1e-5,
                   "AdamW on 40000 f32 elements");

  // A non-contiguous gradient is read in logical order.
  Tensor q = param({1.0, 2.0, 3.0, 4.0}).reshape({2, 2}).detach().requires_grad_();
  SGD sgd({{{q}, 1.0, 0.0}});
  q.set_grad(from_vector<double>({1, 2, 3, 4}, {2, 2}).transpose(0, 1));
  sgd.step();
  CHECK(q.to_vector<double>() == Vec{0.0, -1.0, 1.0, 0.0});
}

TEST_CASE("state dict: resume after 3 of 5 steps is bit-identical (SGD and AdamW, two groups)") {
  Generator gen(3);
  for (const char* kind : {"adamw", "sgd"}) {
    CAPTURE(kind);
    auto make = [&](Tensor& a, Tensor& b) -> std::unique_ptr<Optimizer> {
      std::vector<ParamGroup> groups{{{a}, 0.01, 0.05}, {{b}, 0.03, 0.0}};
      if (std::string(kind) == "sgd") return std::make_unique<SGD>(groups, 0.9, true);
      return std::make_unique<AdamW>(groups, 0.9, 0.95, 1e-6);
    };
    Tensor a = randn({4, 3}, {}, &gen).requires_grad_();
    Tensor b = randn({5}, {DType::F64}, &gen).requires_grad_();
    std::vector<Tensor> ga, gb;
    for (int i = 0; i < 5; ++i) ga.push_back(randn({4, 3}, {}, &gen));
    for (int i = 0; i < 5; ++i) gb.push_back(randn({5}, {DType::F64}, &gen));
    auto opt = make(a, b);
    auto run = [&](Optimizer& o, Tensor& x, Tensor& y, int from, int to) {
      for (int i = from; i < to; ++i) {
        o.set_lr(0.01 / (i + 1));  // as a schedule would; must be restored exactly
        o.param_groups()[1].lr = 0.7 / (i + 3);
        x.set_grad(ga[i]);
        // b misses step 0: its state starts one step later than a's.
        if (i > 0) y.set_grad(gb[i]);
        o.step();
      }
    };
    run(*opt, a, b, 0, 3);
    StateDict saved = opt->state_dict();
    Tensor a_saved = a.detach().clone(), b_saved = b.detach().clone();
    CHECK(saved.at("step").dtype() == DType::I64);
    CHECK(saved.at("step").dim() == 0);
    CHECK(saved.at("step").item() == 3);
    CHECK(saved.at("group.1.lr").dtype() == DType::F64);
    CHECK(saved.at("group.1.lr").dim() == 0);
    CHECK(saved.at("group.1.lr").item() == 0.7 / 5);
    run(*opt, a, b, 3, 5);

    // Through a file, as a checkpoint would.
    std::string path = (std::filesystem::temp_directory_path() /
                        ("pg_test_optim_" + std::string(kind) + ".safetensors"))
                           .string();
    save_safetensors(path, saved);
    StateDict loaded = load_safetensors(path).tensors;
    Tensor a2 = a_saved.clone().requires_grad_(), b2 = b_saved.clone().requires_grad_();
    auto opt2 = make(a2, b2);
    opt2->load_state_dict(loaded);
    CHECK(opt2->steps() == 3);
    CHECK(opt2->param_groups()[1].lr == 0.7 / 5);
    run(*opt2, a2, b2, 3, 5);
    CHECK(a2.to_vector<float>() == a.to_vector<float>());
    CHECK(b2.to_vector<double>() == b.to_vector<double>());
    CHECK(opt2->steps() == 5);
    std::filesystem::remove(path);
  }

  // state_dict() hands out copies: editing them does not touch the optimizer.
  Tensor p = param(kP0);
  Adam opt({{{p}, 0.1, 0.0}});
  p.set_grad(grad_of(kGrads[0]));
  opt.step();
  StateDict s = opt.state_dict();
  s.at("state.0.0.exp_avg").fill_(123.0);
  CHECK(opt.state_dict().at("state.0.0.exp_avg").to_vector<double>() != Vec(3, 123.0));
  CHECK(s.size() == 5);  // step, group.0.lr, exp_avg, exp_avg_sq, step of the parameter
}

TEST_CASE("load_state_dict is strict and leaves the optimizer unchanged on error") {
  Tensor p = param(kP0), q = param({1.0, 2.0});
  AdamW opt({{{p}, 0.1, 0.01}, {{q}, 0.2, 0.0}});
  p.set_grad(grad_of(kGrads[0]));
  q.set_grad(grad_of({0.5, 0.5}));
  opt.step();
  const StateDict good = opt.state_dict();
  auto with = [&](const std::string& key, const Tensor& t) {
    StateDict s = good;
    s[key] = t;
    return s;
  };
  auto without = [&](const std::string& key) {
    StateDict s = good;
    REQUIRE(s.erase(key) == 1);
    return s;
  };
  // Missing entries, named.
  CHECK_PG_ERROR(opt.load_state_dict(without("step")), "missing entry 'step'");
  CHECK_PG_ERROR(opt.load_state_dict(without("group.1.lr")), "missing entry 'group.1.lr'");
  CHECK_PG_ERROR(opt.load_state_dict(without("state.0.0.exp_avg_sq")),
                 "missing entry 'state.0.0.exp_avg_sq'");
  CHECK_PG_ERROR(opt.load_state_dict(without("state.1.0.step")), "missing entry 'state.1.0.step'");
  // Unexpected entries, named.
  for (const char* key :
       {"state.2.0.exp_avg", "state.0.1.exp_avg", "state.0.0.momentum", "state.x.0.exp_avg",
        "state.0.0", "state.+0.0.exp_avg", "group.2.lr", "group.0.weight_decay", "extra"}) {
    const std::string expect = "unexpected entry '" + std::string(key) + "'";
    CHECK_PG_ERROR(opt.load_state_dict(with(key, zeros({3}, {DType::F64}))), expect.c_str());
  }
  // Wrong shapes and values, named.
  CHECK_PG_ERROR(opt.load_state_dict(with("state.0.0.exp_avg", zeros({1, 3}, {DType::F64}))),
                 "'state.0.0.exp_avg'", "[1, 3]", "[3]");
  CHECK_PG_ERROR(opt.load_state_dict(with("state.0.0.step", zeros({2}))), "'state.0.0.step'");
  CHECK_PG_ERROR(opt.load_state_dict(with("step", zeros({2}, {DType::I64}))), "'step'");
  CHECK_PG_ERROR(opt.load_state_dict(with("step", scalar_tensor(2.5, {DType::F64}))), "'step'",
                 "integer");
  CHECK_PG_ERROR(opt.load_state_dict(with("group.0.lr", scalar_tensor(-1.0, {DType::F64}))),
                 "'group.0.lr'");
  CHECK_PG_ERROR(opt.load_state_dict(with("group.0.lr", scalar_tensor(NAN, {DType::F64}))),
                 "'group.0.lr'");
  // Step counters whole, bounded and consistent; buffers of the parameter's dtype.
  CHECK_PG_ERROR(opt.load_state_dict(with("state.0.0.step", scalar_tensor(2, {DType::F64}))),
                 "'state.0.0.step' is 2", "more than the optimizer's 'step' 1");
  CHECK_PG_ERROR(opt.load_state_dict(with("step", scalar_tensor(1e300, {DType::F64}))), "'step'",
                 "2^53");
  CHECK_PG_ERROR(opt.load_state_dict(with("step", scalar_tensor(-1, {DType::I64}))), "'step'",
                 ">= 0");
  CHECK_PG_ERROR(opt.load_state_dict(with("state.0.0.step", scalar_tensor(0.5, {DType::F64}))),
                 "'state.0.0.step'", "integer");
  CHECK_PG_ERROR(opt.load_state_dict(with("state.0.0.exp_avg", zeros({3}, {DType::F32}))),
                 "'state.0.0.exp_avg'", "f32", "f64");
  // An AdamW state is not an SGD state.
  SGD sgd({{{p}, 0.1, 0.0}, {{q}, 0.1, 0.0}}, 0.9);
  CHECK_PG_ERROR(sgd.load_state_dict(good), "unexpected entry", "for SGD");

  // After all the failed loads the optimizer continues exactly like an untouched twin.
  Tensor p2 = param(kP0), q2 = param({1.0, 2.0});
  AdamW twin({{{p2}, 0.1, 0.01}, {{q2}, 0.2, 0.0}});
  p2.set_grad(grad_of(kGrads[0]));
  q2.set_grad(grad_of({0.5, 0.5}));
  twin.step();
  CHECK(opt.steps() == 1);
  for (auto* o : {static_cast<Optimizer*>(&opt), static_cast<Optimizer*>(&twin)}) o->step();
  CHECK(p.to_vector<double>() == p2.to_vector<double>());
  CHECK(q.to_vector<double>() == q2.to_vector<double>());
  // A state with no per-parameter entries (a fresh optimizer's) is valid: it resets.
  AdamW fresh({{{param(kP0)}, 0.1, 0.0}, {{param({1.0, 2.0})}, 0.2, 0.0}});
  opt.load_state_dict(fresh.state_dict());
  CHECK(opt.steps() == 0);
  CHECK(opt.state_dict().size() == 3);
}

TEST_CASE("optimizer misuse raises pg::Error naming the optimizer and the parameter") {
  Tensor p = param(kP0);
  CHECK_PG_ERROR(AdamW({{{p, p}, 0.1, 0.0}}), "AdamW", "more than once");
  CHECK_PG_ERROR(Adam({{{p}, 0.1, 0.0}, {{p}, 0.1, 0.0}}), "Adam", "group 1", "more than once");
  CHECK_PG_ERROR(SGD({{{p * 2.0}, 0.1, 0.0}}), "SGD", "leaf");
  CHECK_PG_ERROR(SGD({{{arange(3)}, 0.1, 0.0}}), "SGD", "floating", "i64");
  CHECK_PG_ERROR(SGD({{{Tensor()}, 0.1, 0.0}}), "SGD", "undefined");
  Tensor nc = zeros({2, 3}).transpose(0, 1).detach().requires_grad_();
  CHECK_PG_ERROR(SGD({{{nc}, 0.1, 0.0}}), "SGD", "contiguous");
  CHECK_PG_ERROR(SGD({{{p}, -0.1, 0.0}}), "SGD", "lr >= 0");
  CHECK_PG_ERROR(AdamW({{{p}, 0.1, -1.0}}), "AdamW", "weight_decay");
  CHECK_PG_ERROR(SGD({{{p}, 0.1, 0.0}}, -0.5), "SGD", "momentum");
  CHECK_PG_ERROR(SGD({{{p}, 0.1, 0.0}}, 0.0, true), "SGD", "Nesterov");
  CHECK_PG_ERROR(Adam({{{p}, 0.1, 0.0}}, 1.0), "Adam", "betas");
  CHECK_PG_ERROR(AdamW({{{p}, 0.1, 0.0}}, 0.9, 0.999, -1.0), "AdamW", "eps");

  // A bad gradient anywhere stops the step before any parameter changes.
  Tensor first = param({1.0});
  AdamW opt({{{first, p}, 0.1, 0.0}});
  CHECK_PG_ERROR(opt.set_lr(-1.0), "AdamW", "learning rate");
  first.set_grad(grad_of({1.0}));
  p.set_grad(grad_of(kGrads[0], DType::F32));  // f32 gradient for an f64 parameter
  CHECK_PG_ERROR(opt.step(), "AdamW", "group 0 parameter 1", "f64", "f32");
  CHECK(first.item() == 1.0);
  CHECK(p.to_vector<double>() == kP0);
  CHECK(opt.steps() == 0);
  // Groups edited after construction are validated when stepping.
  p.set_grad(grad_of(kGrads[0]));
  opt.param_groups()[0].params.push_back(p);
  CHECK_PG_ERROR(opt.step(), "AdamW", "more than once");
  opt.param_groups()[0].params.pop_back();
  Tensor added = param({1.0});
  opt.param_groups().push_back({{added}, 0.5, 0.0});
  added.set_grad(grad_of({1.0}));
  opt.step();
  CHECK(added.item() == doctest::Approx(0.5).epsilon(1e-7));  // Adam's first step: about lr
}

TEST_CASE("clip_grad_norm: the global norm, new scaled gradients, originals untouched") {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({1}, {DType::F64}).requires_grad_();
  Tensor c = zeros({3}).requires_grad_();  // no gradient: skipped
  Tensor ga = from_vector<float>({3, 0}, {2}), gb = from_vector<double>({4}, {1});
  a.set_grad(ga);
  b.set_grad(gb);
  CHECK(clip_grad_norm({a, b, c}, 1.0) == doctest::Approx(5.0).epsilon(1e-12));
  const double s = 1.0 / (5.0 + 1e-6);
  pgt::check_close(a.grad(), {3 * s, 0.0}, 0, 1e-7, "a");
  CHECK(b.grad().item() == doctest::Approx(4 * s).epsilon(1e-15));
  CHECK(b.grad().dtype() == DType::F64);
  CHECK_FALSE(c.grad().defined());
  CHECK(ga.to_vector<float>() == std::vector<float>{3.0f, 0.0f});  // the old objects are intact
  CHECK(gb.item() == 4.0);
  // Below the limit nothing is replaced.
  Tensor before = a.grad();
  CHECK(clip_grad_norm({a, b}, 10.0) == doctest::Approx(5.0 * s).epsilon(1e-6));
  CHECK(a.grad().impl_ptr() == before.impl_ptr());

  // Two parameters sharing one gradient tensor are each scaled once, and the shared tensor
  // itself is left alone.
  Tensor x = zeros({2}).requires_grad_(), y = zeros({2}).requires_grad_();
  Tensor shared = from_vector<float>({6, 8}, {2});
  x.set_grad(shared);
  y.set_grad(shared);
  double norm = clip_grad_norm({x, y}, 5.0);
  CHECK(norm == doctest::Approx(std::sqrt(200.0)).epsilon(1e-12));
  const double k = 5.0 / (std::sqrt(200.0) + 1e-6);
  pgt::check_close(x.grad(), {6 * k, 8 * k}, 0, 1e-6, "x");
  pgt::check_close(y.grad(), {6 * k, 8 * k}, 0, 1e-6, "y");
  CHECK(shared.to_vector<float>() == std::vector<float>{6.0f, 8.0f});

  // The squares are summed in f64: 10^6 gradients of 1e-4 in f32.
  Tensor big = zeros({1000000}).requires_grad_();
  big.set_grad(full({1000000}, 1e-4));
  const double g32 = static_cast<double>(1e-4f);
  CHECK(clip_grad_norm({big}, 1.0) == doctest::Approx(1000.0 * g32).epsilon(1e-9));

  CHECK(clip_grad_norm({}, 1.0) == 0.0);
  CHECK_PG_ERROR(clip_grad_norm({a}, -1.0), "clip_grad_norm", "max_norm");
  CHECK_PG_ERROR(clip_grad_norm({a, Tensor()}, 1.0), "clip_grad_norm", "parameter 1");
}

TEST_CASE("learning-rate schedules at key steps") {
  const double pi = std::numbers::pi;
  WarmupCosineLR s(1.0, 10, 110, 0.1);
  CHECK(s.lr_at(0) == doctest::Approx(0.1));  // warm-up: base * (step + 1) / warmup
  CHECK(s.lr_at(4) == doctest::Approx(0.5));
  CHECK(s.lr_at(9) == doctest::Approx(1.0));
  CHECK(s.lr_at(10) == doctest::Approx(1.0));  // the cosine starts at base
  CHECK(s.lr_at(35) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(pi * 0.25))));
  CHECK(s.lr_at(60) == doctest::Approx(0.55));  // half-way
  CHECK(s.lr_at(85) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(pi * 0.75))));
  CHECK(s.lr_at(109) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(pi * 0.99))));
  CHECK(s.lr_at(110) == doctest::Approx(0.1));  // min_lr from total_steps on
  CHECK(s.lr_at(100000) == doctest::Approx(0.1));
  for (int64_t t = 10; t < 120; ++t) CHECK(s.lr_at(t + 1) <= s.lr_at(t));
  for (int64_t t = 0; t < 9; ++t) CHECK(s.lr_at(t + 1) > s.lr_at(t));

  WarmupCosineLR no_warmup(0.5, 0, 4);  // min_lr defaults to 0
  CHECK(no_warmup.lr_at(0) == doctest::Approx(0.5));
  CHECK(no_warmup.lr_at(2) == doctest::Approx(0.25));
  CHECK(no_warmup.lr_at(4) == 0.0);

  ConstantLR c(0.3);
  CHECK(c.lr_at(0) == 0.3);
  CHECK(c.lr_at(77) == 0.3);
  const LrSchedule& any = s;  // usable through the base class
  CHECK(any.lr_at(60) == doctest::Approx(0.55));

  CHECK_PG_ERROR(WarmupCosineLR(1.0, -1, 10), "WarmupCosineLR", "warmup_steps");
  CHECK_PG_ERROR(WarmupCosineLR(1.0, 20, 10), "WarmupCosineLR", "warmup_steps");
  CHECK_PG_ERROR(WarmupCosineLR(1.0, 0, 0), "WarmupCosineLR", "total_steps");
  CHECK_PG_ERROR(WarmupCosineLR(1.0, 1, 10, 2.0), "WarmupCosineLR", "min_lr");
  CHECK_PG_ERROR(ConstantLR(-1.0), "ConstantLR");
}
