// The attention modules: MultiHeadAttention and TransformerBlock pass gradcheck in f64 with
// respect to the input AND the parameters (policies, causal/bidirectional, qk_norm, key padding,
// fused and composite); their parameter names; fused == composite in f32 for every built-in
// policy; the ||A||_F diagnostics; bad shapes and configs.
#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"
#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module.h"

using namespace pg;

namespace {

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

AttentionConfig attn_config(const std::string& spec, bool causal, bool qk_norm, bool fused,
                            int64_t dim = 8, int64_t heads = 2) {
  AttentionConfig c;
  c.dim = dim;
  c.heads = heads;
  c.activation = AttentionActivation::parse(spec);
  c.causal = causal;
  c.qk_norm = qk_norm;
  c.path = fused ? AttentionPath::Auto : AttentionPath::Composite;
  return c;
}

// Key padding mask [2, 5] (non-zero = visible). Key 0 stays visible in both rows so that no
// query row of a causal mask is left without any visible key.
Tensor padding_mask_2x5() { return from_vector<int64_t>({1, 1, 0, 1, 0, 1, 0, 1, 1, 1}, {2, 5}); }

}  // namespace

// --- gradcheck -------------------------------------------------------------------------

TEST_CASE("gradcheck: MultiHeadAttention over policies, masks, qk_norm, fused and composite") {
  // B = 2, T = 5, dim = 8, heads = 2.
  Tensor mask = padding_mask_2x5();
  int n = 0;
  // qk_norm and the padding mask: neither, the mask alone, both.
  const std::pair<bool, bool> variants[] = {{false, false}, {false, true}, {true, true}};
  for (std::string spec : {"softmax", "poly:3", "sigmoid"})
    for (bool causal : {false, true})
      for (auto [qk_norm, padded] : variants)
        for (bool fused : {true, false}) {
          CAPTURE(spec);
          CAPTURE(causal);
          CAPTURE(qk_norm);
          CAPTURE(fused);
          CAPTURE(padded);
          manual_seed(100 + n++);
          MultiHeadAttention mha(attn_config(spec, causal, qk_norm, fused));
          mha.to(DType::F64);
          if (qk_norm) pgt::jitter_parameters(mha, 3);
          Tensor m = padded ? mask : Tensor();
          pgt::check_module_grads(mha, pgt::f64_input({2, 5, 8}, 20 + n),
                                  [&](const Tensor& x) { return mha.forward(x, m); });
        }
  // N counted over the visible keys of each row.
  for (std::string spec : {"poly:3,n=visible", "sigmoid:n=visible"})
    for (bool fused : {true, false}) {
      CAPTURE(spec);
      CAPTURE(fused);
      manual_seed(200);
      MultiHeadAttention mha(attn_config(spec, true, false, fused));
      mha.to(DType::F64);
      pgt::check_module_grads(mha, pgt::f64_input({2, 5, 8}, 21),
                              [&](const Tensor& x) { return mha.forward(x, mask); });
    }
}

TEST_CASE("gradcheck: TransformerBlock") {
  for (std::string spec : {"softmax", "poly:3"})
    for (bool causal : {false, true}) {
      CAPTURE(spec);
      CAPTURE(causal);
      manual_seed(300);
      TransformerBlock block(attn_config(spec, causal, causal, true), 12);
      block.to(DType::F64);
      pgt::jitter_parameters(block, 4);
      pgt::check_module_grads(block, pgt::f64_input({2, 5, 8}, 22));
    }
  manual_seed(301);
  TransformerBlock block(attn_config("sigmoid", false, false, false), 12);
  block.to(DType::F64);
  Tensor mask = padding_mask_2x5();
  pgt::check_module_grads(block, pgt::f64_input({2, 5, 8}, 23),
                          [&](const Tensor& x) { return block.forward(x, mask); });
  // A custom activation runs on the composite path even when fused is asked for.
  AttentionConfig cc = attn_config("softmax", false, false, true);
  cc.activation = AttentionActivation::custom("square", [](const Tensor& s) { return mul(s, s); });
  manual_seed(302);
  MultiHeadAttention custom(cc);
  custom.to(DType::F64);
  pgt::check_module_grads(custom, pgt::f64_input({2, 5, 8}, 24));
}

// --- registration ----------------------------------------------------------------------

TEST_CASE("TransformerBlock: parameter names in order, counts, sub-modules") {
  TransformerBlock block(attn_config("softmax", true, true, true), 16);
  CHECK(pgt::names_of(block.named_parameters()) ==
        std::vector<std::string>{"ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                 "attn.proj.weight", "attn.proj.bias", "attn.q_norm.weight",
                                 "attn.q_norm.bias", "attn.k_norm.weight", "attn.k_norm.bias",
                                 "ln2.weight", "ln2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                 "mlp.fc2.weight", "mlp.fc2.bias"});
  int64_t expect = 8 + 8          // ln1
                   + 24 * 8 + 24  // qkv
                   + 8 * 8 + 8    // proj
                   + 4 * 4        // q_norm, k_norm (head dim 4, weight and bias each)
                   + 8 + 8        // ln2
                   + 16 * 8 + 16  // fc1
                   + 8 * 16 + 8;  // fc2
  CHECK(block.num_parameters() == expect);
  std::vector<std::string> modules;
  for (auto& [n, m] : block.named_modules()) modules.push_back(n);
  CHECK(modules == std::vector<std::string>{"", "ln1", "attn", "attn.qkv", "attn.proj",
                                            "attn.q_norm", "attn.k_norm", "ln2", "mlp", "mlp.fc1",
                                            "mlp.fc2", "mlp.drop", "drop"});
  // Without qk_norm there are no norm parameters inside attention.
  TransformerBlock plain(attn_config("softmax", true, false, true), 16);
  CHECK(plain.named_parameters().size() == 12);
  CHECK(plain.num_parameters() == expect - 16);
  // Dropout inside the block follows train()/eval().
  TransformerBlock dropping(attn_config("poly:3", false, false, true), 16, 0.5);
  Tensor x = randn({2, 5, 8});
  dropping.eval();
  CHECK(dropping(x).to_vector<float>() == dropping(x).to_vector<float>());
  dropping.train();
  CHECK(dropping(x).to_vector<float>() != dropping(x).to_vector<float>());
}

// --- fused vs composite, diagnostics ---------------------------------------------------

TEST_CASE("MultiHeadAttention: fused equals composite for every built-in policy (f32)") {
  const std::vector<std::string> specs = {
      "softmax", "poly:1",  "poly:2",           "poly:3",         "poly:4",
      "poly:5",  "poly:6",  "poly:7",           "poly:8",         "poly:p=2,scale=n^-1",
      "relu",    "sigmoid", "poly:3,n=visible", "relu:n=visible", "sigmoid:n=visible"};
  Generator gen(99);
  Tensor x0 = randn({2, 9, 16}, {}, &gen);
  Tensor g = randn({2, 9, 16}, {}, &gen);
  Tensor mask =
      from_vector<int64_t>({1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0}, {2, 9});
  for (const auto& spec : specs)
    for (bool causal : {false, true})
      for (bool padded : {false, true}) {
        CAPTURE(spec);
        CAPTURE(causal);
        CAPTURE(padded);
        manual_seed(7);
        MultiHeadAttention fused(attn_config(spec, causal, causal, true, 16, 4));
        MultiHeadAttention comp(attn_config(spec, causal, causal, false, 16, 4));
        comp.load_state_dict(fused.state_dict());
        Tensor m = padded ? mask : Tensor();
        Tensor xf = x0.clone().detach().requires_grad_();
        Tensor xc = x0.clone().detach().requires_grad_();
        Tensor yf = fused.forward(xf, m), yc = comp.forward(xc, m);
        CHECK(pgt::max_rel_diff(yf, yc) < 1e-5);
        CHECK(fused.stats().a_frob() == doctest::Approx(comp.stats().a_frob()).epsilon(1e-5));
        backward(sum(mul(yf, g)));
        backward(sum(mul(yc, g)));
        CHECK(pgt::max_rel_diff(xf.grad(), xc.grad()) < 1e-5);
        auto pf = fused.named_parameters(), pc = comp.named_parameters();
        REQUIRE(pf.size() == pc.size());
        // Relative to the tensor's own scale, floored at 1% of the largest parameter
        // gradient: some gradients are zero in exact arithmetic (softmax is invariant to
        // k_norm.bias), so only rounding noise is left to compare there.
        double global = 0;
        for (auto& [n, p] : pc) global = std::max(global, max_abs(p.grad()));
        for (size_t i = 0; i < pf.size(); ++i) {
          CAPTURE(pf[i].first);
          Tensor gf = pf[i].second.grad(), gc = pc[i].second.grad();
          double scale = std::max(max_abs(gc), 1e-2 * global);
          CHECK(max_abs(sub(gf, gc)) / scale < 1e-5);
        }
      }
}

TEST_CASE("MultiHeadAttention: ||A||_F diagnostics after forward and backward") {
  // Independent reference: A from the module's own weights, computed in plain f64 loops.
  const int64_t B = 2, T = 6, D = 8, H = 2, hd = 4;
  Generator gen(5);
  Tensor x = randn({B, T, D}, {}, &gen);
  for (std::string spec : {"softmax", "poly:3", "relu", "sigmoid"}) {
    CAPTURE(spec);
    for (bool fused : {true, false}) {
      CAPTURE(fused);
      manual_seed(8);
      MultiHeadAttention mha(attn_config(spec, false, false, fused, D, H));
      CHECK(mha.stats().a_frob() == 0);
      CHECK_FALSE(mha.stats().has_grad());
      Tensor y = mha(x);
      auto xv = x.to_vector<double>(), wv = mha.qkv->weight.to_vector<double>(),
           bv = mha.qkv->bias.to_vector<double>();
      // qkv[b, t, j] = x[b, t, :] . W[j, :] + bias[j]; j = which * D + h * hd + e.
      auto qkv = [&](int64_t b, int64_t t, int64_t j) {
        double s = bv[j];
        for (int64_t i = 0; i < D; ++i) s += xv[(b * T + t) * D + i] * wv[j * D + i];
        return s;
      };
      double total = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
          double frob2 = 0;
          for (int64_t t = 0; t < T; ++t) {
            std::vector<double> s(T);
            for (int64_t u = 0; u < T; ++u) {
              double dot = 0;
              for (int64_t e = 0; e < hd; ++e)
                dot += qkv(b, t, h * hd + e) * qkv(b, u, D + h * hd + e);
              s[u] = dot / std::sqrt(static_cast<double>(hd));
            }
            double mx = *std::max_element(s.begin(), s.end()), z = 0;
            for (double v : s) z += std::exp(v - mx);
            for (int64_t u = 0; u < T; ++u) {
              double a;
              if (spec == "softmax")
                a = std::exp(s[u] - mx) / z;
              else if (spec == "poly:3")
                a = s[u] * s[u] * s[u] / std::sqrt(static_cast<double>(T));
              else if (spec == "relu")
                a = std::max(s[u], 0.0) / static_cast<double>(T);
              else
                a = 1.0 / (1.0 + std::exp(-(s[u] - std::log(static_cast<double>(T)))));
              frob2 += a * a;
            }
          }
          total += std::sqrt(frob2);
        }
      double a_frob = total / static_cast<double>(B * H);
      const AttentionStats& st = mha.stats();
      CHECK(st.a_frob() == doctest::Approx(a_frob).epsilon(1e-4));
      CHECK(st.a_frob_sqrt_n() == doctest::Approx(a_frob / std::sqrt(double(T))).epsilon(1e-4));
      if (spec == "softmax") CHECK(st.a_frob_sqrt_n() <= 1.0);  // ||softmax(S)||_F <= sqrt(N)
      CHECK_FALSE(st.has_grad());
      backward(sum(mul(y, y)));
      if (fused) {
        CHECK(st.has_grad());
        CHECK(st.grad_frob() > 0);
      }
      // A new forward describes a new attention matrix: the gradient norm of the previous
      // backward no longer applies to it.
      mha(mul(x, 0.5));
      CHECK(st.a_frob() != doctest::Approx(a_frob).epsilon(1e-4));
      CHECK_FALSE(st.has_grad());
    }
  }
  // record_stats = false leaves the diagnostics untouched.
  AttentionConfig quiet = attn_config("softmax", false, false, true, D, H);
  quiet.record_stats = false;
  MultiHeadAttention mha(quiet);
  backward(sum(mha(x)));
  CHECK(mha.stats().a_frob() == 0);
  CHECK_FALSE(mha.stats().has_grad());
}

TEST_CASE("MultiHeadAttention rejects bad shapes and configs") {
  CHECK_PG_ERROR(MultiHeadAttention(attn_config("softmax", false, false, true, 10, 4)),
                 "MultiHeadAttention", "10", "4");
  MultiHeadAttention mha(attn_config("softmax", false, false, true));
  CHECK_PG_ERROR(mha(randn({2, 5, 6})), "MultiHeadAttention", "[2, 5, 6]");
  CHECK_PG_ERROR(mha(randn({5, 8})), "MultiHeadAttention", "[5, 8]");
  CHECK_PG_ERROR(mha.forward(randn({2, 5, 8}), ones({2, 4}, {DType::I64})), "mask", "[2, 5]",
                 "[2, 4]");
  MultiHeadAttention comp(attn_config("softmax", false, false, false));
  CHECK_PG_ERROR(comp.forward(randn({2, 5, 8}), ones({2, 4}, {DType::I64})), "mask", "[2, 5]",
                 "[2, 4]");
}
