// Layers, losses and initialisers: gradcheck in f64 with respect to the input AND the
// parameters (layers converted with Module::to(DType)), values against hand-written
// references, errors that name the layer, init reproducibility and statistics.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "device_check.h"
#include "helpers.h"
#include "kernels/matmul_precision.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/loss.h"

using namespace pg;

// --- gradcheck -------------------------------------------------------------------------

TEST_CASE("gradcheck: Linear on a 3-D input, with and without bias, and a transposed input") {
  manual_seed(11);
  Linear lin(4, 3);
  lin.to(DType::F64);
  pgt::check_module_grads(lin, pgt::f64_input({2, 3, 4}, 1));
  Linear nobias(4, 5, false);
  CHECK(nobias.named_parameters().size() == 1);
  CHECK_FALSE(nobias.bias.defined());
  nobias.to(DType::F64);
  pgt::check_module_grads(nobias, pgt::f64_input({2, 2, 4}, 2));
  Generator g(3);
  Tensor xt = pgt::make_input({3, 4}, g, DType::F64, pgt::Layout::Transposed, pgt::kAny, true);
  REQUIRE_FALSE(xt.is_contiguous());
  pgt::check_module_grads(lin, xt);
}

TEST_CASE("gradcheck: Embedding with repeated indices (only the weight is differentiable)") {
  manual_seed(12);
  Embedding emb(6, 3);
  emb.to(DType::F64);
  Tensor idx = from_vector<int64_t>({1, 4, 1, 0, 4, 4}, {2, 3});
  CHECK_GRADCHECK([&](const TensorList&) { return emb(idx); }, TensorList{emb.weight});
  // The gradient of a row is the sum over its occurrences; unused rows get zero.
  Tensor y = emb(idx);
  CHECK(y.shape() == Shape({2, 3, 3}));
  Tensor w = pgt::f64_input({2, 3, 3}, 4).detach();
  backward(sum(mul(y, w)));
  auto wv = w.to_vector<double>();
  std::vector<double> expect(18, 0.0);
  std::vector<int64_t> ids{1, 4, 1, 0, 4, 4};
  for (size_t i = 0; i < ids.size(); ++i)
    for (int d = 0; d < 3; ++d) expect[ids[i] * 3 + d] += wv[i * 3 + d];
  pgt::check_close(emb.weight.grad(), expect, 1e-12, 1e-12, "embedding grad");
}

TEST_CASE("gradcheck: LayerNorm and RMSNorm with non-trivial weights") {
  manual_seed(13);
  LayerNorm ln(5);
  ln.to(DType::F64);
  pgt::jitter_parameters(ln, 1);
  pgt::check_module_grads(ln, pgt::f64_input({2, 3, 5}, 5));
  RMSNorm rms(5);
  rms.to(DType::F64);
  pgt::jitter_parameters(rms, 2);
  pgt::check_module_grads(rms, pgt::f64_input({2, 3, 5}, 6));
  LayerNorm plain(5, 1e-5, false);
  CHECK(plain.named_parameters().empty());
  plain.to(DType::F64);
  pgt::check_module_grads(plain, pgt::f64_input({2, 5}, 7));
}

TEST_CASE("gradcheck: MLP and Sequential on 3-D inputs") {
  manual_seed(14);
  MLP mlp(4, 6);
  mlp.to(DType::F64);
  pgt::check_module_grads(mlp, pgt::f64_input({2, 3, 4}, 8));
  Sequential seq;
  seq.add(std::make_shared<Linear>(3, 5))
      .add(std::make_shared<GELU>())
      .add(std::make_shared<RMSNorm>(5))
      .add(std::make_shared<Linear>(5, 4))
      .add(std::make_shared<GELU>(GeluApprox::None))
      .add(std::make_shared<LayerNorm>(4))
      .add(std::make_shared<Linear>(4, 2));
  seq.to(DType::F64);
  pgt::jitter_parameters(seq, 3);
  pgt::check_module_grads(seq, pgt::f64_input({2, 4, 3}, 9));
  // ReLU has a kink at 0: inputs kept away from it.
  Sequential relu_net;
  relu_net.add(std::make_shared<ReLU>()).add(std::make_shared<Linear>(3, 2));
  relu_net.to(DType::F64);
  Generator g(10);
  pgt::check_module_grads(relu_net, pgt::make_input({4, 3}, g, DType::F64, pgt::Layout::Contiguous,
                                                    pgt::kAwayFromZero, true));
}

TEST_CASE("gradcheck: mse_loss and cross_entropy_loss with label smoothing") {
  Tensor pred = pgt::f64_input({3, 4}, 30), target = pgt::f64_input({3, 4}, 31);
  CHECK_GRADCHECK([](const TensorList& in) { return mse_loss(in[0], in[1]); },
                  (TensorList{pred, target}));
  auto p = pred.to_vector<double>(), t = target.to_vector<double>();
  double want = 0;
  for (size_t i = 0; i < p.size(); ++i) want += (p[i] - t[i]) * (p[i] - t[i]) / 12.0;
  CHECK(mse_loss(pred, target).item() == doctest::Approx(want).epsilon(1e-12));
  // No broadcasting: [3, 1] against [3] would silently become [3, 3].
  CHECK_PG_ERROR(mse_loss(ones({2, 3}), ones({3, 2})), "mse_loss", "[2, 3]", "[3, 2]");
  CHECK_PG_ERROR(mse_loss(ones({3, 1}), ones({3})), "mse_loss", "[3, 1]", "[3]");

  Tensor logits = pgt::f64_input({2, 3, 5}, 32);
  Tensor labels = from_vector<int64_t>({0, 4, 2, 2, -100, 1}, {2, 3});
  for (double smoothing : {0.0, 0.1, 0.5}) {
    CAPTURE(smoothing);
    CHECK_GRADCHECK(
        [&](const TensorList& in) { return cross_entropy_loss(in[0], labels, -100, smoothing); },
        TensorList{logits});
    // (1 - e) * nll + e * mean_c(-log p_c), averaged over the positions not ignored.
    auto l = logits.to_vector<double>();
    auto y = labels.to_vector<int64_t>();
    double total = 0;
    int kept = 0;
    for (int i = 0; i < 6; ++i) {
      if (y[i] == -100) continue;
      ++kept;
      double mx = -1e300, s = 0, mean_logit = 0;
      for (int c = 0; c < 5; ++c) mx = std::max(mx, l[i * 5 + c]);
      for (int c = 0; c < 5; ++c) s += std::exp(l[i * 5 + c] - mx), mean_logit += l[i * 5 + c] / 5;
      double lse = mx + std::log(s);
      total += (1 - smoothing) * (lse - l[i * 5 + y[i]]) + smoothing * (lse - mean_logit);
    }
    CHECK(cross_entropy_loss(logits, labels, -100, smoothing).item() ==
          doctest::Approx(total / kept).epsilon(1e-12));
  }
  // Another ignore_index: -100 is then an ordinary (out of range) label, so use 2.
  Tensor relabel = from_vector<int64_t>({0, 4, 2, 2, 3, 1}, {2, 3});
  CHECK_GRADCHECK([&](const TensorList& in) { return cross_entropy_loss(in[0], relabel, 2, 0.2); },
                  TensorList{logits});
  CHECK_PG_ERROR(cross_entropy_loss(logits, labels, -100, 1.5), "label_smoothing");
  CHECK_PG_ERROR(cross_entropy_loss(logits, from_vector<int64_t>({0, 1}, {2})), "cross_entropy",
                 "[2, 3, 5]", "[2]");
}

// --- values and errors -----------------------------------------------------------------

TEST_CASE("Linear equals a manual matmul plus bias, for 3-D, 1-D and non-contiguous inputs") {
  manual_seed(5);
  Linear lin(7, 3);
  CHECK(lin.weight.shape() == Shape({3, 7}));
  CHECK(lin.bias.shape() == Shape({3}));
  Tensor x = randn({2, 4, 7});
  Tensor y = lin(x);
  REQUIRE(y.shape() == Shape({2, 4, 3}));
  auto xv = x.to_vector<double>(), wv = lin.weight.to_vector<double>();
  auto bv = lin.bias.to_vector<double>();
  std::vector<double> wt(21);  // W^T [7, 3]
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 7; ++i) wt[i * 3 + o] = wv[o * 7 + i];
  auto expect = pgt::naive_matmul(xv, wt, 8, 7, 3);
  for (int r = 0; r < 8; ++r)
    for (int o = 0; o < 3; ++o) expect[r * 3 + o] += bv[o];
  pgt::check_close(y, expect, 1e-5, 1e-5, "linear");
  Tensor row = x.select(0, 1).select(0, 2);
  CHECK(lin(row).shape() == Shape({3}));
  pgt::check_close(lin(row), std::vector<double>(expect.begin() + 18, expect.begin() + 21), 1e-5,
                   1e-5, "linear 1-D");
  Tensor xt = x.transpose(0, 1);
  REQUIRE_FALSE(xt.is_contiguous());
  pgt::check_close(lin(xt).transpose(0, 1), expect, 1e-5, 1e-5, "linear transposed input");
}

TEST_CASE("linear equals its composite, matmul by the transposed weight plus bias") {
  manual_seed(6);
  for (MatmulPrecision precision : {MatmulPrecision::F32, MatmulPrecision::BF16}) {
    MatmulPrecisionGuard guard(precision);
    INFO("bf16 precision: " << (precision == MatmulPrecision::BF16));
    Tensor x = randn({3, 5, 40}).transpose(0, 1).requires_grad_();
    Tensor w = randn({24, 40}).requires_grad_(), b = randn({24}).requires_grad_();
    Tensor g = randn({5, 3, 24});
    Tensor fused = linear(x, w, b);
    TensorList fused_grads = grad(sum(fused * g), {x, w, b});
    Tensor composite = add(matmul(x, transpose(w, 0, 1)), b);
    TensorList composite_grads = grad(sum(composite * g), {x, w, b});
    CHECK(pgt::max_rel_diff_strict(fused, composite) < 1e-6);
    for (int i = 0; i < 3; ++i)
      CHECK(pgt::max_rel_diff_strict(fused_grads[i], composite_grads[i]) < 1e-6);
    // The weight's gradient is computed in the weight's layout, not as a transposed view of
    // x^T g (which the engine would then copy into place).
    CHECK(fused_grads[1].is_contiguous());
    CHECK_FALSE(composite_grads[1].is_contiguous());
  }
  // An empty input gives an empty output and zero weight gradients; no input features give
  // the bias alone.
  Tensor w = randn({3, 4}).requires_grad_();
  Tensor y = linear(zeros({0, 4}), w, ones({3}));
  CHECK(y.shape() == Shape({0, 3}));
  Tensor bias = randn({3});
  pgt::check_close(linear(zeros({2, 0}), zeros({3, 0}), bias),
                   pgt::values(bias.expand({2, 3}).contiguous()), 0, 0, "linear without inputs");
}

TEST_CASE("LayerNorm and RMSNorm equal their formulas") {
  Tensor x = pgt::f64_input({2, 3, 4}, 40).detach();
  auto xv = x.to_vector<double>();
  LayerNorm ln(4, 1e-5);
  RMSNorm rms(4, 1e-6);
  ln.to(DType::F64);
  rms.to(DType::F64);
  pgt::jitter_parameters(ln, 41);
  pgt::jitter_parameters(rms, 42);
  auto lw = ln.weight.to_vector<double>(), lb = ln.bias.to_vector<double>();
  auto rw = rms.weight.to_vector<double>();
  std::vector<double> want_ln(xv.size()), want_rms(xv.size());
  for (size_t r = 0; r < 6; ++r) {
    const double* v = &xv[r * 4];
    double mu = (v[0] + v[1] + v[2] + v[3]) / 4, var = 0, ms = 0;
    for (int i = 0; i < 4; ++i) var += (v[i] - mu) * (v[i] - mu) / 4, ms += v[i] * v[i] / 4;
    for (int i = 0; i < 4; ++i) {
      want_ln[r * 4 + i] = (v[i] - mu) / std::sqrt(var + 1e-5) * lw[i] + lb[i];
      want_rms[r * 4 + i] = v[i] / std::sqrt(ms + 1e-6) * rw[i];
    }
  }
  pgt::check_close(ln(x), want_ln, 1e-12, 1e-10, "layer_norm");
  pgt::check_close(rms(x), want_rms, 1e-12, 1e-10, "rms_norm");
}

TEST_CASE("GELU, ReLU and Dropout(0) are the element-wise ops") {
  Tensor x = pgt::f64_input({3, 4}, 43).detach();
  CHECK(GELU()(x).to_vector<double>() == gelu(x, GeluApprox::Tanh).to_vector<double>());
  CHECK(GELU(GeluApprox::None)(x).to_vector<double>() ==
        gelu(x, GeluApprox::None).to_vector<double>());
  CHECK(ReLU()(x).to_vector<double>() == relu(x).to_vector<double>());
  CHECK(Dropout(0.0)(x).to_vector<double>() == x.to_vector<double>());
  CHECK(Sequential()(x).to_vector<double>() == x.to_vector<double>());  // empty: identity
}

TEST_CASE("layers reject bad sizes and inputs, naming the layer and the shapes") {
  Linear lin(7, 3);
  CHECK_PG_ERROR(lin(randn({2, 6})), "Linear", "[2, 6]", "7");
  CHECK_PG_ERROR(linear(randn({2, 6}), randn({3, 7})), "linear", "[2, 6]", "[3, 7]");
  CHECK_PG_ERROR(linear(randn({2, 7}), randn({7})), "linear", "weight [out, in]", "[7]");
  CHECK_PG_ERROR(linear(randn({2, 7}), randn({3, 7}), randn({4})), "linear", "bias [3]", "[4]");
  CHECK_PG_ERROR(linear(randn({2, 7}), randn({3, 7}), randn({3}, {DType::F64})), "matmul",
                 "bias [3] of dtype f32", "f64");
  CHECK_PG_ERROR(Linear(0, 3), "Linear", "positive");
  CHECK_PG_ERROR(Embedding(5, 0), "Embedding", "positive");
  Embedding emb(5, 2);
  CHECK_PG_ERROR(emb(ones({2})), "Embedding", "integer", "f32");
  CHECK_PG_ERROR(LayerNorm(0), "LayerNorm", "positive");
  CHECK_PG_ERROR(LayerNorm(4)(randn({2, 5})), "LayerNorm", "[2, 5]", "4");
  CHECK_PG_ERROR(LayerNorm(4, 1e-5, false)(randn({2, 5})), "LayerNorm", "[2, 5]");
  CHECK_PG_ERROR(RMSNorm(-1), "RMSNorm", "positive");
  CHECK_PG_ERROR(RMSNorm(4)(randn({5})), "RMSNorm", "[5]", "4");
  CHECK_PG_ERROR(Dropout(1.5), "Dropout", "1.5");
  CHECK_PG_ERROR(Dropout(-0.1), "Dropout", "[0, 1]");
  CHECK_PG_ERROR(MLP(4, 0), "MLP", "hidden 0");
  MLP mlp(4, 8);
  CHECK_PG_ERROR(mlp(randn({3, 5})), "Linear", "[3, 5]");
  Sequential seq;
  CHECK_PG_ERROR(seq.add(nullptr), "Sequential", "'0'", "null");
}

// --- init ------------------------------------------------------------------------------

namespace {

struct Moments {
  double mean, std, max_abs;
};

Moments moments(const Tensor& t) {
  auto v = t.to_vector<double>();
  double s = 0, s2 = 0, m = 0;
  for (double x : v) {
    s += x;
    m = std::max(m, std::fabs(x));
  }
  double mean = s / static_cast<double>(v.size());
  for (double x : v) s2 += (x - mean) * (x - mean);
  return {mean, std::sqrt(s2 / static_cast<double>(v.size())), m};
}

}  // namespace

TEST_CASE("init: the same seed gives the same weights") {
  manual_seed(77);
  MLP a(16, 8);
  manual_seed(77);
  MLP b(16, 8);
  manual_seed(78);
  MLP c(16, 8);
  auto pa = a.named_parameters(), pb = b.named_parameters(), pc = c.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(pa[i].second.to_vector<float>() == pb[i].second.to_vector<float>());
    CHECK(pa[i].second.to_vector<float>() != pc[i].second.to_vector<float>());
  }
  // Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias; Embedding: N(0, 1).
  CHECK(moments(a.fc1->weight).max_abs <= 1.0 / std::sqrt(16.0));
  CHECK(moments(a.fc1->bias).max_abs <= 1.0 / std::sqrt(16.0));
  CHECK(moments(a.fc2->weight).max_abs <= 1.0 / std::sqrt(8.0));
  manual_seed(79);
  Embedding emb(1000, 64);
  CHECK(moments(emb.weight).std == doctest::Approx(1.0).epsilon(0.02));
  CHECK(std::fabs(moments(emb.weight).mean) < 0.02);
  // An explicit generator: reproducible and independent of the default one.
  Tensor t1 = empty({100}), t2 = empty({100});
  Generator g1(9), g2(9);
  normal_(t1, 0.0, 1.0, &g1);
  manual_seed(1234);
  normal_(t2, 0.0, 1.0, &g2);
  CHECK(t1.to_vector<float>() == t2.to_vector<float>());
  // f64 and f32 tensors see the same stream.
  Tensor d = empty({100}, {DType::F64});
  Generator g3(9);
  normal_(d, 0.0, 1.0, &g3);
  auto dv = d.to_vector<double>();
  auto fv = t1.to_vector<float>();
  for (size_t i = 0; i < dv.size(); ++i) CHECK(fv[i] == static_cast<float>(dv[i]));
}

TEST_CASE("init: xavier and kaiming bounds and spreads on a large tensor") {
  // 512 x 256 = 131072 draws: the sample std is within ~0.3% (1 sigma) of the truth, so a 2%
  // tolerance is ~7 sigma; the sample mean is within std/362 (1 sigma), checked at 6 sigma.
  const int64_t out = 512, in = 256;
  const double n = static_cast<double>(out * in);
  Generator g(2024);
  Tensor w = empty({out, in});
  CHECK(fans(w) == std::pair<int64_t, int64_t>{in, out});
  CHECK(fans(empty({8, 3, 5, 5})) == std::pair<int64_t, int64_t>{3 * 25, 8 * 25});

  auto check = [&](const char* what, double bound, double std) {
    CAPTURE(what);
    Moments m = moments(w);
    if (bound > 0) {
      CHECK(m.max_abs <= bound);
      CHECK(m.max_abs > 0.99 * bound);  // the extremes are reached
    }
    CHECK(m.std == doctest::Approx(std).epsilon(0.02));
    CHECK(std::fabs(m.mean) < 6 * std / std::sqrt(n));
  };

  double xb = std::sqrt(6.0 / (in + out));
  xavier_uniform_(w, 1.0, &g);
  check("xavier_uniform", xb, xb / std::sqrt(3.0));
  xavier_uniform_(w, 2.0, &g);
  check("xavier_uniform gain 2", 2 * xb, 2 * xb / std::sqrt(3.0));
  xavier_normal_(w, 1.0, &g);
  check("xavier_normal", 0, std::sqrt(2.0 / (in + out)));
  xavier_normal_(w, 0.5, &g);
  check("xavier_normal gain 0.5", 0, 0.5 * std::sqrt(2.0 / (in + out)));

  double kb = std::sqrt(2.0) * std::sqrt(3.0 / in);
  kaiming_uniform_(w, 0.0, FanMode::FanIn, &g);
  check("kaiming_uniform fan_in", kb, kb / std::sqrt(3.0));
  double kb5 = std::sqrt(2.0 / (1 + 5.0)) * std::sqrt(3.0 / in);  // a = sqrt(5): PyTorch Linear
  kaiming_uniform_(w, std::sqrt(5.0), FanMode::FanIn, &g);
  check("kaiming_uniform a=sqrt5", kb5, kb5 / std::sqrt(3.0));
  CHECK(kb5 == doctest::Approx(1.0 / std::sqrt(in)));
  double kbo = std::sqrt(2.0) * std::sqrt(3.0 / out);
  kaiming_uniform_(w, 0.0, FanMode::FanOut, &g);
  check("kaiming_uniform fan_out", kbo, kbo / std::sqrt(3.0));
  double kbt = 5.0 / 3.0 * std::sqrt(3.0 / in);
  kaiming_uniform_(w, 0.0, FanMode::FanIn, Nonlinearity::Tanh, &g);
  check("kaiming_uniform tanh", kbt, kbt / std::sqrt(3.0));
  kaiming_normal_(w, 0.0, FanMode::FanIn, &g);
  check("kaiming_normal fan_in", 0, std::sqrt(2.0 / in));
  kaiming_normal_(w, 0.1, FanMode::FanOut, &g);
  check("kaiming_normal fan_out a=0.1", 0, std::sqrt(2.0 / 1.01) / std::sqrt(out));
  kaiming_normal_(w, 0.0, FanMode::FanIn, Nonlinearity::Linear, &g);
  check("kaiming_normal linear", 0, 1.0 / std::sqrt(in));

  uniform_(w, 2.0, 3.0, &g);
  Moments u = moments(w);
  CHECK(u.mean == doctest::Approx(2.5).epsilon(0.002));
  auto uv = w.to_vector<float>();
  CHECK(*std::min_element(uv.begin(), uv.end()) >= 2.0f);
  CHECK(*std::max_element(uv.begin(), uv.end()) <= 3.0f);
  normal_(w, -1.0, 0.5, &g);
  Moments nm = moments(w);
  CHECK(nm.mean == doctest::Approx(-1.0).epsilon(0.005));
  CHECK(nm.std == doctest::Approx(0.5).epsilon(0.02));
  zeros_(w);
  CHECK(moments(w).max_abs == 0);
  ones_(w);
  CHECK(moments(w).mean == 1);
  CHECK(moments(w).std == 0);
}

TEST_CASE("init: gains, in-place writes into parameters, errors") {
  CHECK(calculate_gain(Nonlinearity::Linear) == 1.0);
  CHECK(calculate_gain(Nonlinearity::Sigmoid) == 1.0);
  CHECK(calculate_gain(Nonlinearity::Tanh) == doctest::Approx(5.0 / 3.0));
  CHECK(calculate_gain(Nonlinearity::ReLU) == doctest::Approx(std::sqrt(2.0)));
  CHECK(calculate_gain(Nonlinearity::LeakyReLU) == doctest::Approx(std::sqrt(2.0 / 1.0001)));
  CHECK(calculate_gain(Nonlinearity::LeakyReLU, 0.0) == doctest::Approx(std::sqrt(2.0)));
  CHECK(calculate_gain(Nonlinearity::SELU) == 0.75);

  // Initialisers write in place into a parameter without recording a graph, also into views.
  Generator g(3);
  Linear lin(4, 4);
  Tensor before = lin.weight;
  xavier_uniform_(lin.weight, 1.0, &g);
  CHECK(lin.weight.shares_storage(before));
  CHECK(lin.weight.is_leaf());
  CHECK(lin.weight.requires_grad());
  CHECK(lin.weight.grad_fn() == nullptr);
  Tensor base = zeros({4, 6});
  Tensor view = base.slice(1, 0, 6, 2);  // every other column
  ones_(view);
  uniform_(view, 5.0, 6.0, &g);
  auto bv = base.to_vector<float>();
  for (int i = 0; i < 24; ++i) CHECK((i % 2 == 0 ? bv[i] >= 5.0f : bv[i] == 0.0f));

  CHECK_PG_ERROR(fans(empty({7})), "init", "[7]");
  CHECK_PG_ERROR(fans(empty({0, 3})), "init", "[0, 3]");
  Tensor idx = zeros({3}, {DType::I64});
  CHECK_PG_ERROR(normal_(idx, 0, 1), "normal_", "floating", "i64");
  CHECK_PG_ERROR(uniform_(idx, 0, 1), "uniform_", "floating");
  Tensor f = empty({3});
  CHECK_PG_ERROR(uniform_(f, 1.0, 0.0), "uniform_", "a <= b");
  CHECK_PG_ERROR(normal_(f, 0.0, -1.0), "normal_", "std");
  Tensor undefined;
  CHECK_PG_ERROR(zeros_(undefined), "zeros_", "undefined");
}
