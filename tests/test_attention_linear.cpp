// The linear attention path: the symmetric power features, the chunked kernels against the fused
// quadratic ones (values and gradients, every chunk boundary, both N rules, causal and not),
// gradcheck in f64, and the errors of what has no linear form.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/symmetric_power.h"
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/attention_op.h"
#include "polygrad.h"

using namespace pg;

namespace {

constexpr int64_t C = kLinearChunk;

// max_i sum_j |A_ij| |v_j| over rows and value columns: the scale rounding errors of a signed
// feature map grow with (f64, from plain tensor ops).
double weight_scale(const Tensor& q, const Tensor& k, const Tensor& v,
                    const AttentionActivation& act, bool causal, double scale) {
  NoGradGuard no_grad;
  const int64_t T = q.size(2), S = k.size(2);
  Tensor s = mul(matmul(q.to(DType::F64), transpose(k.to(DType::F64), -1, -2)), scale);
  std::vector<double> a = s.contiguous().to_vector<double>();
  for (size_t idx = 0; idx < a.size(); ++idx) {
    const int64_t i = static_cast<int64_t>(idx) / S % T, j = static_cast<int64_t>(idx) % S;
    const bool visible = !causal || j <= i;
    const double n =
        act.n_visible() && causal ? static_cast<double>(i + 1) : static_cast<double>(S);
    a[idx] = visible ? std::abs(std::pow(a[idx], act.power()) * std::pow(n, act.n_exponent())) : 0;
  }
  Tensor absa = from_vector(a, s.shape());
  Tensor out = matmul(absa, abs(v.to(DType::F64)));
  return max(out).item();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max(abs(sub(a.to(DType::F64), b.to(DType::F64)))).item();
}

struct Result {
  Tensor out, dq, dk, dv;
};

// Forward and backward of one path with upstream gradient w.
Result run(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w,
           const AttentionActivation& act, bool causal, double scale, AttentionPath path) {
  Tensor qq = q.detach().requires_grad_(), kk = k.detach().requires_grad_(),
         vv = v.detach().requires_grad_();
  Tensor out = attention(qq, kk, vv, act, causal, scale, Tensor(), nullptr, path);
  sum(mul(out, w)).backward();
  return {out.detach(), qq.grad(), kk.grad(), vv.grad()};
}

struct Case {
  int64_t B, H, T, d;
};

}  // namespace

TEST_CASE("symmetric power features: phi_q(x).phi_k(y) = (x.y)^p and their gradients") {
  Generator gen(3);
  for (int64_t d : {1, 3, 8}) {
    for (int p = 1; p <= 4; ++p) {
      CAPTURE(d);
      CAPTURE(p);
      SymmetricPower phi(d, p);
      int64_t expected = 1;  // C(d + p - 1, p)
      for (int k = 1; k <= p; ++k) expected = expected * (d + k - 1) / k;
      CHECK(phi.features() == expected);
      CHECK(SymmetricPower::feature_count(d, p) == expected);
      std::vector<double> x = randn({d}, {DType::F64}, &gen).to_vector<double>();
      std::vector<double> y = randn({d}, {DType::F64}, &gen).to_vector<double>();
      std::vector<double> fx(static_cast<size_t>(phi.features())), fy(fx.size());
      phi.features(x.data(), false, fx.data());
      phi.features(y.data(), true, fy.data());
      double dot = 0, xy = 0;
      for (size_t a = 0; a < fx.size(); ++a) dot += fx[a] * fy[a];
      for (int64_t i = 0; i < d; ++i) xy += x[i] * y[i];
      CHECK(dot == doctest::Approx(std::pow(xy, p)).epsilon(1e-12));
      // d/dx (x.y)^p = p (x.y)^(p-1) y, through either side's Jacobian.
      std::vector<double> gx(static_cast<size_t>(d), 0.0), gy(gx.size(), 0.0);
      phi.backward(x.data(), fy.data(), false, gx.data());
      phi.backward(y.data(), fx.data(), true, gy.data());
      for (int64_t i = 0; i < d; ++i) {
        CHECK(gx[i] == doctest::Approx(p * std::pow(xy, p - 1) * y[i]).epsilon(1e-12));
        CHECK(gy[i] == doctest::Approx(p * std::pow(xy, p - 1) * x[i]).epsilon(1e-12));
      }
    }
  }
  CHECK(SymmetricPower::feature_count(32, 3) == 5984);
  CHECK(SymmetricPower::feature_count(64, 2) == 2080);
  CHECK_THROWS_WITH_AS(SymmetricPower(1000, 8), doctest::Contains("more than 2^26"), pg::Error);
}

TEST_CASE("linear path equals the fused quadratic one in f64: values and gradients") {
  Generator gen(5);
  std::vector<std::pair<Case, int>> cases;  // shape, and the highest power to run on it
  for (int64_t T : {int64_t(1), C - 1, C, C + 1, 3 * C + 5}) {
    cases.push_back({{1, 3, T, 8}, 4});
    cases.push_back({{3, 1, T, 16}, 4});
  }
  cases.push_back({{1, 1, C + 1, 32}, 4});
  cases.push_back({{1, 3, 3 * C + 5, 32}, 3});
  for (const auto& [c, max_power] : cases) {
    for (int p = 1; p <= max_power; ++p) {
      for (bool causal : {true, false}) {
        for (const char* rule : {"", ",n=visible"}) {
          const std::string spec = "poly:p=" + std::to_string(p) + ",scale=n^-1" + rule;
          CAPTURE(spec);
          CAPTURE(causal);
          CAPTURE(c.T);
          CAPTURE(c.d);
          const auto act = AttentionActivation::parse(spec);
          TensorOptions f64{DType::F64};
          Tensor q = randn({c.B, c.H, c.T, c.d}, f64, &gen);
          Tensor k = randn({c.B, c.H, c.T, c.d}, f64, &gen);
          // v as a transposed view: the kernels read strided operands.
          Tensor v = randn({c.B, c.H, c.d, c.T}, f64, &gen).transpose(2, 3);
          Tensor w = randn({c.B, c.H, c.T, c.d}, f64, &gen);
          const double sc = 1.0 / std::sqrt(static_cast<double>(c.d));
          Result lin = run(q, k, v, w, act, causal, sc, AttentionPath::Linear);
          Result quad = run(q, k, v, w, act, causal, sc, AttentionPath::Fused);
          const double scale = weight_scale(q, k, v, act, causal, sc);
          CHECK(max_abs_diff(lin.out, quad.out) <= 1e-10 * scale);
          for (auto [a, b] : {std::pair{lin.dq, quad.dq}, {lin.dk, quad.dk}, {lin.dv, quad.dv}}) {
            const double g = max(abs(b)).item();
            CHECK(max_abs_diff(a, b) <= 1e-10 * std::max(g, 1e-300));
          }
        }
      }
    }
  }
}

TEST_CASE("linear path in f32: within a few times the quadratic kernel's own rounding") {
  Generator gen(6);
  for (int64_t T : {C - 1, 3 * C + 5, int64_t(600)}) {
    for (int p = 1; p <= 3; ++p) {
      for (bool causal : {true, false}) {
        const std::string spec = "poly:p=" + std::to_string(p) + ",scale=n^-1,n=visible";
        CAPTURE(spec);
        CAPTURE(causal);
        CAPTURE(T);
        const auto act = AttentionActivation::parse(spec);
        Tensor q = randn({2, 2, T, 16}, {DType::F64}, &gen),
               k = randn({2, 2, T, 16}, {DType::F64}, &gen),
               v = randn({2, 2, T, 16}, {DType::F64}, &gen),
               w = randn({2, 2, T, 16}, {DType::F64}, &gen);
        auto f32 = [](const Tensor& t) { return t.to(DType::F32); };
        Result exact = run(q, k, v, w, act, causal, 0.25, AttentionPath::Fused);
        Result lin = run(f32(q), f32(k), f32(v), f32(w), act, causal, 0.25, AttentionPath::Linear);
        Result quad = run(f32(q), f32(k), f32(v), f32(w), act, causal, 0.25, AttentionPath::Fused);
        const double scale = weight_scale(q, k, v, act, causal, 0.25);
        const double eps = std::numeric_limits<float>::epsilon();
        const double lin_err = max_abs_diff(lin.out, exact.out);
        const double quad_err = max_abs_diff(quad.out, exact.out);
        MESSAGE(spec, std::string(causal ? " causal" : ""), " T=", T,
                ": f32 error / scale: linear ", lin_err / scale, ", quadratic ", quad_err / scale);
        CHECK(lin_err <= 16 * std::max(quad_err, eps * scale));
        for (auto [a, b, x] : {std::tuple{lin.dq, quad.dq, exact.dq},
                               {lin.dk, quad.dk, exact.dk},
                               {lin.dv, quad.dv, exact.dv}}) {
          const double g = max(abs(x)).item();
          CHECK(max_abs_diff(a, x) <= 16 * std::max(max_abs_diff(b, x), eps * g));
        }
      }
    }
  }
}

TEST_CASE("linear path at T = 4096 equals the quadratic one (f64)") {
  Generator gen(7);
  const auto act = AttentionActivation::parse("poly:p=2,scale=n^-1,n=visible");
  const int64_t T = 4096;
  TensorOptions f64{DType::F64};
  Tensor q = randn({1, 1, T, 8}, f64, &gen), k = randn({1, 1, T, 8}, f64, &gen),
         v = randn({1, 1, T, 8}, f64, &gen), w = randn({1, 1, T, 8}, f64, &gen);
  Result lin = run(q, k, v, w, act, true, 0.35, AttentionPath::Linear);
  Result quad = run(q, k, v, w, act, true, 0.35, AttentionPath::Fused);
  CHECK(max_abs_diff(lin.out, quad.out) <= 1e-10 * weight_scale(q, k, v, act, true, 0.35));
  CHECK(max_abs_diff(lin.dk, quad.dk) <= 1e-10 * max(abs(quad.dk)).item());
}

TEST_CASE("linear path passes gradcheck in f64") {
  Generator gen(8);
  for (int p = 1; p <= 4; ++p) {
    for (bool causal : {true, false}) {
      for (const char* rule : {"", ",n=visible"}) {
        const std::string spec = "poly:p=" + std::to_string(p) + rule;
        CAPTURE(spec);
        CAPTURE(causal);
        const auto act = AttentionActivation::parse(spec);
        TensorOptions f64{DType::F64};
        // T crosses a chunk boundary; q as a transposed view.
        Tensor q = randn({1, 2, 3, C + 3}, f64, &gen).transpose(2, 3).detach().requires_grad_();
        Tensor k = randn({1, 2, C + 3, 3}, f64, &gen).requires_grad_();
        Tensor v = randn({1, 2, C + 3, 2}, f64, &gen).requires_grad_();
        auto fn = [&](const TensorList& in) {
          return attention(in[0], in[1], in[2], act, causal, 0.5, Tensor(), nullptr,
                           AttentionPath::Linear);
        };
        auto report = gradcheck(fn, {q, k, v});
        CHECK_MESSAGE(report.ok, report.message);
      }
    }
  }
}

TEST_CASE("packed heads on the linear path equal the three views") {
  Generator gen(9);
  const auto act = AttentionActivation::parse("poly:2");
  Tensor qkv = randn({2, C + 2, 3 * 2 * 4}, {DType::F64}, &gen).requires_grad_();
  Tensor out = attention_packed(qkv, 2, act, true, 0.5, Tensor(), nullptr, AttentionPath::Linear);
  Tensor ref = attention_packed(qkv, 2, act, true, 0.5, Tensor(), nullptr, AttentionPath::Fused);
  CHECK(max_abs_diff(out, ref) <= 1e-12 * max(abs(ref)).item());
  auto report = gradcheck(
      [&](const TensorList& in) {
        return attention_packed(in[0], 2, act, true, 0.5, Tensor(), nullptr, AttentionPath::Linear);
      },
      {qkv.narrow(1, 0, 5).contiguous().detach().requires_grad_()});
  CHECK_MESSAGE(report.ok, report.message);
}

TEST_CASE("no linear form: clear errors; ||A|| reported unavailable, not zero") {
  Tensor q = randn({1, 1, 4, 2}), k = randn({1, 1, 4, 2}), v = randn({1, 1, 4, 2});
  for (const char* spec : {"softmax", "relu", "relu2", "sigmoid"}) {
    CAPTURE(spec);
    CHECK_THROWS_WITH_AS(attention(q, k, v, AttentionActivation::parse(spec), true, 1.0, Tensor(),
                                   nullptr, AttentionPath::Linear),
                         doctest::Contains("has no linear form"), pg::Error);
  }
  auto custom = AttentionActivation::custom("square", [](const Tensor& s) { return mul(s, s); });
  CHECK_THROWS_WITH_AS(
      attention(q, k, v, custom, true, 1.0, Tensor(), nullptr, AttentionPath::Linear),
      doctest::Contains("has no linear form"), pg::Error);
  const auto poly = AttentionActivation::parse("poly:2");
  CHECK_THROWS_WITH_AS(
      attention(q, k, v, poly, false, 1.0, ones({1, 4}), nullptr, AttentionPath::Linear),
      doctest::Contains("takes no key padding mask"), pg::Error);
  CHECK_THROWS_WITH_AS(attention(q, randn({1, 1, 5, 2}), randn({1, 1, 5, 2}), poly, true, 1.0,
                                 Tensor(), nullptr, AttentionPath::Linear),
                       doctest::Contains("as many queries as keys"), pg::Error);
  // Bidirectional attention may have more keys than queries.
  CHECK_NOTHROW(attention(q, randn({1, 1, 5, 2}), randn({1, 1, 5, 2}), poly, false, 1.0, Tensor(),
                          nullptr, AttentionPath::Linear));
  auto stats = std::make_shared<AttentionStats>();
  attention(q, k, v, poly, true, 1.0, Tensor(), stats, AttentionPath::Linear);
  CHECK(std::isnan(stats->a_frob()));
  CHECK(stats->keys == 4);
  attention(q, k, v, poly, true, 1.0, Tensor(), stats, AttentionPath::Fused);
  CHECK(stats->a_frob() > 0);
}

namespace {
// Loss and gradients of one step of `model` on `path` (every block), in f64.
std::pair<double, std::vector<Tensor>> step(
    Module& model, const std::vector<std::shared_ptr<TransformerBlock>>& blocks, AttentionPath path,
    const Tensor& x, const Tensor& y) {
  for (const auto& b : blocks) b->attn->set_path(path);
  model.zero_grad();
  Tensor loss = cross_entropy(model(x), y);
  loss.backward();
  std::vector<Tensor> grads;
  for (const Tensor& p : model.parameters()) grads.push_back(p.grad());
  return {loss.item(), grads};
}

void check_same_step(Module& model, const std::vector<std::shared_ptr<TransformerBlock>>& blocks,
                     const Tensor& x, const Tensor& y) {
  auto [quad_loss, quad] = step(model, blocks, AttentionPath::Fused, x, y);
  auto [lin_loss, lin] = step(model, blocks, AttentionPath::Linear, x, y);
  CHECK(lin_loss == doctest::Approx(quad_loss).epsilon(1e-12));
  REQUIRE(lin.size() == quad.size());
  for (size_t i = 0; i < lin.size(); ++i) {
    const double g = max(abs(quad[i])).item();
    CHECK(max_abs_diff(lin[i], quad[i]) <= 1e-10 * std::max(g, 1e-300));
  }
}
}  // namespace

TEST_CASE(
    "a whole GPT and ViT step: the linear path gives the quadratic path's loss and gradients") {
  Generator gen(10);
  GptConfig gc;
  gc.vocab_size = 13;
  gc.context = 2 * C + 7;  // chunks, and a partial one
  gc.dim = 16;
  gc.layers = 2;
  gc.heads = 2;
  gc.attn = "poly:p=2,scale=n^-1,n=visible";
  manual_seed(1);
  Gpt gpt(gc);
  gpt.to(DType::F64);
  Tensor tokens = randint(0, gc.vocab_size, {3, gc.context + 1}, {DType::I64}, &gen);
  check_same_step(gpt, gpt.blocks(), tokens.narrow(1, 0, gc.context).contiguous(),
                  tokens.narrow(1, 1, gc.context).contiguous());
  VitConfig vc;
  vc.image_size = 8;
  vc.patch = 2;
  vc.classes = 3;
  vc.dim = 16;
  vc.layers = 2;
  vc.heads = 2;
  vc.attn = "poly:3";
  manual_seed(2);
  Vit vit(vc);
  vit.to(DType::F64);
  check_same_step(vit, vit.blocks(), randn({3, 1, 8, 8}, {DType::F64}, &gen),
                  randint(0, 3, {3}, {DType::I64}, &gen));
}

TEST_CASE("Auto takes the linear path for poly:p from the crossover on, and only where it exists") {
  const int64_t d = 4, cross = linear_crossover(d, 2);  // D = 10 features
  CHECK(cross == static_cast<int64_t>(1.35 * (2 * 10 + C)));
  CHECK(linear_crossover(32, 2) > linear_crossover(16, 2));
  CHECK(linear_crossover(64, 8) > linear_crossover(64, 3));
  auto path_taken = [&](const std::string& spec, int64_t T, bool causal, const Tensor& mask) {
    Generator gen(12);
    Tensor q = randn({1, 2, T, d}, {}, &gen), k = randn({1, 2, T, d}, {}, &gen),
           v = randn({1, 2, T, d}, {}, &gen);
    auto stats = std::make_shared<AttentionStats>();
    attention(q, k, v, AttentionActivation::parse(spec), causal, 0.5, mask, stats);
    return stats->formed_a ? "quadratic" : "linear";
  };
  CHECK(std::string(path_taken("poly:2", cross, true, Tensor())) == "linear");
  CHECK(std::string(path_taken("poly:2", cross, false, Tensor())) == "linear");
  CHECK(std::string(path_taken("poly:2", cross - 1, true, Tensor())) == "quadratic");
  CHECK(std::string(path_taken("softmax", cross, true, Tensor())) == "quadratic");
  CHECK(std::string(path_taken("poly:2", cross, false, ones({1, cross}))) == "quadratic");
}

TEST_CASE("the recurrent form equals the linear path row by row, with a state of fixed size") {
  Generator gen(13);
  for (const char* spec : {"poly:1", "poly:2,n=visible", "poly:p=3,scale=n^-1"}) {
    CAPTURE(spec);
    const auto act = AttentionActivation::parse(spec);
    const int64_t T = C + 9;
    TensorOptions f64{DType::F64};
    Tensor q = randn({2, 3, T, 4}, f64, &gen), k = randn({2, 3, T, 4}, f64, &gen),
           v = randn({2, 3, T, 5}, f64, &gen);
    Tensor whole = attention(q, k, v, act, true, 0.5, Tensor(), nullptr, AttentionPath::Linear);
    Tensor state;
    // A prompt of 3 tokens, then one token at a time.
    Tensor got = recurrent_attention(q.narrow(2, 0, 3), k.narrow(2, 0, 3), v.narrow(2, 0, 3),
                                     act.kernel_params(true, 0.5), state, 0, T);
    const Shape size = state.shape();
    CHECK(size == Shape{2, 3, SymmetricPower::feature_count(4, act.power()), 5});
    for (int64_t i = 3; i < T; ++i) {
      got = cat({got, recurrent_attention(q.narrow(2, i, 1), k.narrow(2, i, 1), v.narrow(2, i, 1),
                                          act.kernel_params(true, 0.5), state, i, T)},
                2);
      CHECK(state.shape() == size);
    }
    CHECK(max_abs_diff(got, whole) <= 1e-12 * weight_scale(q, k, v, act, true, 0.5));
  }
  Tensor state;
  Tensor x = randn({1, 1, 2, 4});
  CHECK_THROWS_WITH_AS(
      recurrent_attention(x, x, x, AttentionActivation::parse("softmax").kernel_params(true, 1.0),
                          state, 0, 2),
      doctest::Contains("causal poly:p only"), pg::Error);
}
