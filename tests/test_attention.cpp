// The attention-activation policy: spec parsing, fused kernels vs the composite path,
// gradcheck of the fused op, and the ||A||_F diagnostics.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "device_check.h"
#include "helpers.h"
#include "nn/attention_op.h"
#include "polygrad.h"

using namespace pg;

namespace {

// Every built-in activation, plain and with N = the visible keys, and poly's other powers
// and scales: a new activation in kernels/attention_math.h is tested without a line here.
std::vector<std::string> all_specs() {
  std::vector<std::string> specs;
  for (AttnActivation a : attn::kBuiltinActivations) {
    std::string name = attn::activation_name(a);
    specs.push_back(name);
    if (a != AttnActivation::Softmax) specs.push_back(name + ":n=visible");
  }
  for (const char* poly : {"poly:1", "poly:2", "poly:p=4,scale=n^-1"}) specs.push_back(poly);
  return specs;
}
const std::vector<std::string> kSpecs = all_specs();

constexpr AttentionPath kFused = AttentionPath::Fused, kComposite = AttentionPath::Composite;

// Random key padding mask [B, S] that keeps at least the first key of every row visible.
Tensor padding_mask(int64_t b, int64_t s, Generator& gen) {
  Tensor m = randint(0, 4, {b, s}, {DType::I64}, &gen);
  int64_t* p = m.data<int64_t>();
  for (int64_t i = 0; i < b; ++i) p[i * s] = 1;
  return m;
}

struct Case {
  int64_t B, H, T, d;
  bool causal, padded;
};

}  // namespace

TEST_CASE("spec parsing accepts the table and round-trips") {
  for (const auto& spec : kSpecs) {
    auto a = AttentionActivation::parse(spec);
    auto b = AttentionActivation::parse(a.spec());
    CHECK(a.spec() == b.spec());
    CHECK(a.has_fused_kernel());
  }
  auto p = AttentionActivation::parse("poly:p=2,scale=n^-0.25");
  CHECK(p.kind() == AttentionActivation::Kind::Poly);
  CHECK(p.power() == 2);
  CHECK(p.n_exponent() == -0.25);
  CHECK(AttentionActivation::parse("poly:3").n_exponent() == -0.5);
  // Found by tools/fuzz: spec() printed 6 digits, so a checkpoint rebuilt another exponent.
  auto fine = AttentionActivation::parse("poly:p=2,scale=n^-0.1111111111111111");
  CHECK(AttentionActivation::parse(fine.spec()).n_exponent() == fine.n_exponent());
  CHECK(AttentionActivation::parse("relu:n=visible").n_visible());
}

TEST_CASE("malformed specs raise an error listing the valid specs") {
  for (const char* bad : {"poly:0", "poly:9", "poly:abc", "softmx", "poly:", "poly:2.5",
                          "softmax:3", "relu:n=some", "poly:p=2,scale=2", "sigmoid:x=1", ""}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(AttentionActivation::parse(bad), doctest::Contains("valid specs"),
                         pg::Error);
  }
  CHECK_THROWS_WITH_AS(AttentionActivation::parse("softmx"), doctest::Contains("softmx"),
                       pg::Error);
  // The scale's exponent: bounded, finite.
  for (const char* bad :
       {"poly:p=3,scale=n^100", "poly:p=3,scale=n^-8.5", "poly:p=3,scale=n^1e9"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(AttentionActivation::parse(bad), doctest::Contains("[-8, 8]"), pg::Error);
  }
  for (const char* bad : {"poly:p=3,scale=n^inf", "poly:p=3,scale=n^nan"})
    CHECK_THROWS_WITH_AS(AttentionActivation::parse(bad), doctest::Contains("must look like"),
                         pg::Error);
  CHECK(AttentionActivation::parse("poly:p=3,scale=n^8").n_exponent() == 8);
}

TEST_CASE("a poly scale N^e the dtype cannot hold is an error before any kernel runs") {
  // 70000^8 = 5.8e38 is past f32's 3.4e38 and 70000^-8 below its smallest normal; f64 holds both.
  auto run = [](const char* spec, DType dt, AttentionPath path) {
    Tensor q = randn({1, 1, 2, 4}, {dt}), k = randn({1, 1, 70000, 4}, {dt});
    Tensor v = randn({1, 1, 70000, 4}, {dt});
    return attention(q, k, v, AttentionActivation::parse(spec), false, 0.5, {}, nullptr, path);
  };
  for (AttentionPath path : {AttentionPath::Fused, AttentionPath::Composite}) {
    CHECK_PG_ERROR(run("poly:p=1,scale=n^8", DType::F32, path), "attention", "poly:p=1,scale=n^8",
                   "N = 70000", "f32 cannot hold");
    CHECK_PG_ERROR(run("poly:p=1,scale=n^-8,n=visible", DType::F32, path), "N = 70000", "f32");
  }
  Tensor o = run("poly:p=1,scale=n^-8", DType::F64, AttentionPath::Fused);
  for (double x : o.to_vector<double>()) CHECK(std::isfinite(x));
  // A packed q, k, v goes through the same check.
  Tensor qkv = randn({1, 70000, 3 * 4});
  CHECK_PG_ERROR(attention_packed(qkv, 1, AttentionActivation::parse("poly:p=1,scale=n^8"), true,
                                  0.5, {}, nullptr, AttentionPath::Fused),
                 "N = 70000", "f32");
}

TEST_CASE("fused attention matches the composite path in f32 (values and gradients)") {
  Generator gen(7);
  // T = 1, 70 and 130 cross the 64-query tile boundary; d not a power of two.
  for (Case c : {Case{2, 3, 70, 16, false, false}, Case{2, 3, 70, 16, true, false},
                 Case{1, 2, 130, 8, true, true}, Case{3, 1, 1, 5, false, true},
                 Case{2, 2, 33, 12, false, true}}) {
    for (const auto& spec : kSpecs) {
      CAPTURE(spec);
      CAPTURE(c.T);
      CAPTURE(c.causal);
      CAPTURE(c.padded);
      auto act = AttentionActivation::parse(spec);
      Tensor q = randn({c.B, c.H, c.T, c.d}, {}, &gen).requires_grad_();
      Tensor k = randn({c.B, c.H, c.T, c.d}, {}, &gen).requires_grad_();
      Tensor v = randn({c.B, c.H, c.T, c.d}, {}, &gen).requires_grad_();
      Tensor mask = c.padded ? padding_mask(c.B, c.T, gen) : Tensor();
      Tensor g = randn({c.B, c.H, c.T, c.d}, {}, &gen);
      double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
      auto stats = std::make_shared<AttentionStats>();
      auto ref_stats = std::make_shared<AttentionStats>();
      Tensor fused = attention(q, k, v, act, c.causal, scale, mask, stats, kFused);
      Tensor ref = attention(q, k, v, act, c.causal, scale, mask, ref_stats, kComposite);
      CHECK(pgt::max_rel_diff(fused, ref) < 1e-5);
      CHECK(stats->a_frob() == doctest::Approx(ref_stats->a_frob()).epsilon(1e-5));
      auto gf = grad(sum(mul(fused, g)), {q, k, v});
      auto gr = grad(sum(mul(ref, g)), {q, k, v});
      for (int i = 0; i < 3; ++i) CHECK(pgt::max_rel_diff(gf[i], gr[i]) < 1e-5);
      CHECK(stats->has_grad());
    }
  }
}

TEST_CASE("under bf16 precision, fused attention takes bf16 operands like the composite path") {
  Generator gen(23);
  for (Case c : {Case{2, 2, 70, 16, true, false}, Case{1, 3, 40, 8, false, true}}) {
    for (const auto& spec : kSpecs) {
      CAPTURE(spec);
      CAPTURE(c.T);
      auto act = AttentionActivation::parse(spec);
      Tensor q = randn({c.B, c.H, c.T, c.d}, {}, &gen).requires_grad_();
      Tensor k = randn({c.B, c.H, c.T, c.d}, {}, &gen).requires_grad_();
      Tensor v = randn({c.B, c.H, c.T, c.d}, {}, &gen).requires_grad_();
      Tensor mask = c.padded ? padding_mask(c.B, c.T, gen) : Tensor();
      Tensor g = randn({c.B, c.H, c.T, c.d}, {}, &gen);
      // A power-of-two scale commutes with rounding, so where the composite path scales its
      // scores does not matter.
      const double scale = 0.5;
      auto run = [&](bool fused, MatmulPrecision precision, Device device) {
        MatmulPrecisionGuard guard(precision);
        TensorList in;
        for (const Tensor& t : {q, k, v}) in.push_back(t.detach().to(device).requires_grad_());
        Tensor m = mask.defined() ? mask.to(device) : mask;
        Tensor out = attention(in[0], in[1], in[2], act, c.causal, scale, m, nullptr,
                               fused ? kFused : kComposite);
        TensorList result = grad(sum(mul(out, g.to(device))), in);
        result.insert(result.begin(), out);
        for (Tensor& t : result) t = t.to(Device::cpu());
        return result;
      };
      TensorList f32 = run(true, MatmulPrecision::F32, Device::cpu());
      TensorList fused = run(true, MatmulPrecision::BF16, Device::cpu());
      TensorList composite = run(false, MatmulPrecision::BF16, Device::cpu());
      // Rounded (the output moves by a few bf16 ulps), and bounded.
      CHECK(pgt::max_rel_diff(fused[0], f32[0]) > 1e-4);
      CHECK(pgt::max_rel_diff(fused[0], f32[0]) < 2e-2);
      // The same operands rounded at the same places as the composite's matmuls. The two
      // paths compute scores and weights in different orders, so now and then a value one f32
      // ulp away from a rounding boundary lands on the neighbouring bf16 value (2^-8 apart):
      // a few entries, where f32 against bf16 moves every entry. Hence norms, not maxima.
      auto norm_rel = [](const Tensor& a, const Tensor& b) {
        auto x = a.to_vector<double>(), y = b.to_vector<double>();
        double d = 0, n = 0;
        for (size_t j = 0; j < x.size(); ++j) d += (x[j] - y[j]) * (x[j] - y[j]), n += y[j] * y[j];
        return std::sqrt(d / std::max(n, 1e-300));
      };
      for (int i = 0; i < 4; ++i) {
        CAPTURE(i);
        CHECK(norm_rel(fused[i], composite[i]) < 0.05 * norm_rel(f32[i], composite[i]));
      }
      if (!pgt::have_cuda()) continue;
      // The GPU uses bf16 operands whether or not its f32 tensor-core path is switched on.
      for (bool tensor_cores : {true, false}) {
        CAPTURE(tensor_cores);
        cuda::set_attention_tensor_cores(tensor_cores);
        TensorList gpu = run(true, MatmulPrecision::BF16, Device::cuda(0));
        // The GPU's online softmax rounds weights before normalising them, the CPU after:
        // outputs agree to bf16 precision there, exactly as far as f32 sums go elsewhere.
        CHECK(pgt::max_rel_diff(gpu[0], fused[0]) < (spec == "softmax" ? 1e-2 : 1e-5));
        for (int i = 1; i < 4; ++i) CHECK(pgt::max_rel_diff(gpu[i], fused[i]) < 1e-5);
      }
      cuda::set_attention_tensor_cores(true);
    }
  }
}

TEST_CASE("fused attention passes gradcheck in f64") {
  Generator gen(11);
  for (Case c : {Case{1, 1, 70, 3, true, false}, Case{2, 2, 6, 4, false, true},
                 Case{1, 2, 7, 3, true, true}}) {
    for (const auto& spec : kSpecs) {
      CAPTURE(spec);
      CAPTURE(c.T);
      auto act = AttentionActivation::parse(spec);
      TensorOptions f64{DType::F64};
      Tensor q = randn({c.B, c.H, c.T, c.d}, f64, &gen).requires_grad_();
      Tensor k = randn({c.B, c.H, c.T, c.d}, f64, &gen).requires_grad_();
      // v enters as a transposed view: the kernel must read non-contiguous operands.
      Tensor vt = randn({c.B, c.H, c.d, c.T}, f64, &gen);
      Tensor v = vt.transpose(2, 3).detach().requires_grad_();
      Tensor mask = c.padded ? padding_mask(c.B, c.T, gen) : Tensor();
      auto run = [&](const TensorList& in) {
        return attention(in[0], in[1], in[2], act, c.causal, 0.5, in.size() > 3 ? in[3] : mask,
                         nullptr, kFused);
      };
      auto report = gradcheck(run, {q, k, v});
      CHECK_MESSAGE(report.ok, report.message);
      pgt::check_on_devices(run, {q, k, v, mask}, spec);
    }
  }
}

TEST_CASE("packed attention equals fused attention on the views of the projection, bit for bit") {
  Generator gen(21);
  for (Case c : {Case{2, 3, 37, 8, true, false}, Case{1, 2, 20, 16, false, true}}) {
    for (const auto& spec : kSpecs) {
      CAPTURE(spec);
      CAPTURE(c.T);
      auto act = AttentionActivation::parse(spec);
      Tensor x = randn({c.B, c.T, 3 * c.H * c.d}, {}, &gen);
      Tensor mask = c.padded ? padding_mask(c.B, c.T, gen) : Tensor();
      Tensor w = randn({c.B, c.H, c.T, c.d}, {}, &gen);
      auto unpacked_stats = std::make_shared<AttentionStats>();
      auto packed_stats = std::make_shared<AttentionStats>();
      Tensor a = x.detach().requires_grad_(), b = x.detach().requires_grad_();
      Tensor heads = permute(reshape(a, {c.B, c.T, 3, c.H, c.d}), {2, 0, 3, 1, 4});
      Tensor ya = attention(heads.select(0, 0), heads.select(0, 1), heads.select(0, 2), act,
                            c.causal, 0.3, mask, unpacked_stats, kFused);
      Tensor yb = attention_packed(b, c.H, act, c.causal, 0.3, mask, packed_stats, kFused);
      CHECK(ya.shape() == yb.shape());
      CHECK(ya.to_vector<double>() == yb.to_vector<double>());
      backward(sum(mul(ya, w)));
      backward(sum(mul(yb, w)));
      CHECK(b.grad().shape() == x.shape());
      CHECK(a.grad().to_vector<double>() == b.grad().to_vector<double>());
      CHECK(packed_stats->a_frob() == unpacked_stats->a_frob());
      CHECK(packed_stats->grad_frob() == unpacked_stats->grad_frob());
    }
  }
}

TEST_CASE("packed attention passes gradcheck in f64 and matches on the GPU") {
  Generator gen(22);
  for (Case c : {Case{1, 2, 9, 3, true, false}, Case{2, 1, 6, 4, false, true}}) {
    for (const char* spec : {"softmax", "poly:3", "relu:n=visible", "sigmoid"}) {
      CAPTURE(spec);
      auto act = AttentionActivation::parse(spec);
      // A non-contiguous projection: the op reads a copy, and the gradient is still right.
      Tensor x = randn({c.B, 3 * c.H * c.d, c.T}, {DType::F64}, &gen)
                     .transpose(1, 2)
                     .detach()
                     .requires_grad_();
      Tensor mask = c.padded ? padding_mask(c.B, c.T, gen) : Tensor();
      auto run = [&](const TensorList& in) {
        return attention_packed(in[0], c.H, act, c.causal, 0.5, in.size() > 1 ? in[1] : mask,
                                nullptr, kFused);
      };
      auto report = gradcheck(run, {x});
      CHECK_MESSAGE(report.ok, report.message);
      pgt::check_on_devices(run, {x, mask}, spec);
    }
  }
  for (AttentionPath path : {kFused, kComposite}) {
    AttentionActivation softmax;
    CHECK_THROWS_WITH_AS(
        attention_packed(randn({2, 5, 12}), 3, softmax, false, 1.0, Tensor(), nullptr, path),
        doctest::Contains("[2, 5, 12]"), pg::Error);
    CHECK_THROWS_WITH_AS(
        attention_packed(randn({5, 12}), 2, softmax, false, 1.0, Tensor(), nullptr, path),
        doctest::Contains("3 * heads * d"), pg::Error);
  }
}

TEST_CASE("zero-width values give an empty output and zero gradients for every policy") {
  Generator gen(5);
  for (const auto& spec : kSpecs) {
    CAPTURE(spec);
    auto act = AttentionActivation::parse(spec);
    Tensor q = randn({1, 2, 5, 3}, {}, &gen).requires_grad_();
    Tensor k = randn({1, 2, 5, 3}, {}, &gen).requires_grad_();
    Tensor v = randn({1, 2, 5, 0}, {}, &gen).requires_grad_();
    Tensor out = attention(q, k, v, act, true, 0.5, Tensor(), nullptr, kFused);
    CHECK(out.shape() == Shape({1, 2, 5, 0}));
    sum(out).backward();
    for (const Tensor& g : {q.grad(), k.grad()}) {
      auto x = g.to_vector<float>();
      CHECK(std::all_of(x.begin(), x.end(), [](float e) { return e == 0.0f; }));
    }
    CHECK(v.grad().shape() == Shape({1, 2, 5, 0}));
  }
}

TEST_CASE("gradient-norm diagnostic equals ||dL/dA||_F of the composite path") {
  Generator gen(3);
  for (const char* spec : {"softmax", "poly:3", "sigmoid"}) {
    CAPTURE(spec);
    auto act = AttentionActivation::parse(spec);
    TensorOptions f64{DType::F64};
    Tensor q = randn({2, 2, 9, 4}, f64, &gen), k = randn({2, 2, 9, 4}, f64, &gen);
    Tensor v = randn({2, 2, 9, 4}, f64, &gen).requires_grad_();
    Tensor g = randn({2, 2, 9, 4}, f64, &gen);
    auto stats = std::make_shared<AttentionStats>();
    Tensor out = attention(q, k, v, act, true, 0.5, Tensor(), stats, kFused);
    backward(sum(mul(out, g)));
    // dL/dA = g v^T, restricted to visible (causal) entries.
    Tensor da = matmul(g, transpose(v.detach(), -1, -2));
    Tensor tri = le(reshape(arange(0, 9, 1, f64), {1, 9}), reshape(arange(0, 9, 1, f64), {9, 1}));
    Tensor fro = sqrt(sum(mul(mul(da, da), tri), {2, 3}));
    CHECK(stats->grad_frob() == doctest::Approx(mean(fro).item()).epsilon(1e-10));
  }
}

TEST_CASE("poly attention keeps ||A||_F / sqrt(N) bounded as N grows, like softmax") {
  // The paper's claim at the level of the kernel: with the 1/sqrt(N) scale the ratio stays
  // O(1); with no scale (n^0) it grows with N.
  Generator gen(5);
  auto ratio = [&](const std::string& spec, int64_t n) {
    Tensor q = randn({1, 4, n, 16}, {}, &gen), k = randn({1, 4, n, 16}, {}, &gen);
    Tensor v = randn({1, 4, n, 16}, {}, &gen);
    auto stats = std::make_shared<AttentionStats>();
    attention(q, k, v, AttentionActivation::parse(spec), false, 0.25, Tensor(), stats, kFused);
    return stats->a_frob_sqrt_n();
  };
  CHECK(ratio("softmax", 256) <= 1.0);
  double small = ratio("poly:3", 32), big = ratio("poly:3", 512);
  CHECK(big / small < 2.0);
  double small0 = ratio("poly:p=3,scale=n^0", 32), big0 = ratio("poly:p=3,scale=n^0", 512);
  CHECK(big0 / small0 > 3.0);
}

TEST_CASE("custom activation runs through autograd and is masked after") {
  auto act = AttentionActivation::custom("square", [](const Tensor& s) { return mul(s, s); });
  CHECK(!act.has_fused_kernel());
  CHECK_THROWS_AS(act.kernel_params(false, 1.0), pg::Error);
  CHECK_THROWS_WITH_AS(attention(ones({1, 1, 2, 2}), ones({1, 1, 2, 2}), ones({1, 1, 2, 2}), act,
                                 false, 1.0, Tensor(), nullptr, kFused),
                       doctest::Contains("no fused kernel"), pg::Error);
  Generator gen(9);
  TensorOptions f64{DType::F64};
  Tensor q = randn({1, 1, 5, 2}, f64, &gen).requires_grad_();
  Tensor k = randn({1, 1, 5, 2}, f64, &gen).requires_grad_();
  Tensor v = randn({1, 1, 5, 2}, f64, &gen).requires_grad_();
  // poly:p=2,scale=n^0 is the same function: the two paths must agree.
  Tensor a = attention(q, k, v, act, true, 0.7);  // Auto: the composite path
  Tensor b = attention(q, k, v, AttentionActivation::parse("poly:p=2,scale=n^0"), true, 0.7);
  CHECK(pgt::max_rel_diff(a, b) < 1e-12);
  auto report = gradcheck(
      [&](const TensorList& in) { return attention(in[0], in[1], in[2], act, true, 0.7); },
      {q, k, v});
  CHECK_MESSAGE(report.ok, report.message);
}

TEST_CASE("attention shape errors name the shapes") {
  Tensor q = randn({1, 2, 4, 8}), k = randn({1, 2, 4, 7}), v = randn({1, 2, 4, 8});
  AttentionActivation softmax;
  for (AttentionPath path : {kFused, kComposite}) {
    CHECK_THROWS_WITH_AS(attention(q, k, v, softmax, false, 1.0, Tensor(), nullptr, path),
                         doctest::Contains("[1, 2, 4, 7]"), pg::Error);
    CHECK_THROWS_WITH_AS(attention(q, q, v, softmax, false, 1.0, ones({2, 4}), nullptr, path),
                         doctest::Contains("key padding mask"), pg::Error);
  }
}

TEST_CASE("a hidden key with a huge score cannot poison the visible weights") {
  // Key 2 is padded out and scores ~1e4 above the others: exp() of it would overflow if it
  // were computed and multiplied by a zero mask.
  for (const auto& spec : kSpecs) {
    CAPTURE(spec);
    Tensor q = ones({1, 1, 3, 4});
    Tensor k = zeros({1, 1, 3, 4});
    k.narrow(2, 2, 1).fill_(5000.0);
    Tensor v = randn({1, 1, 3, 4});
    Tensor mask = from_vector<int64_t>({1, 1, 0}, {1, 3});
    auto act = AttentionActivation::parse(spec);
    Tensor out = attention(q, k, v, act, false, 1.0, mask, nullptr, kFused);
    Tensor ref = attention(q, k.narrow(2, 0, 2), v.narrow(2, 0, 2), act, false, 1.0, Tensor(),
                           nullptr, kFused);
    for (float x : out.to_vector<float>()) CHECK(std::isfinite(x));
    // N counts the padded key unless it is the visible count; softmax never sees it.
    if (spec == "softmax" || spec.find("n=visible") != std::string::npos)
      CHECK(pgt::max_rel_diff(out, ref) < 1e-6);
  }
}

TEST_CASE("fused attention on the GPU matches the CPU kernel: every policy, f32, many tiles") {
  Generator gen(19);
  // T = 1..300 crosses every tile size a GPU kernel might use; d up to 128; S != T.
  struct Shape4 {
    int64_t B, H, T, S, d;
    bool causal, padded;
  };
  // Both f32 paths: tile products on tensor cores (3xTF32, the default) and on FMA units.
  for (bool tensor_cores : {true, false})
    for (Shape4 c :
         {Shape4{2, 3, 300, 300, 64, true, false}, Shape4{1, 2, 257, 129, 32, false, true},
          Shape4{2, 1, 65, 65, 128, true, true}, Shape4{3, 2, 1, 7, 16, false, false},
          Shape4{1, 1, 100, 100, 80, false, true}}) {
      for (const auto& spec : kSpecs) {
        if (!pgt::have_cuda()) continue;
        cuda::set_attention_tensor_cores(tensor_cores);
        CAPTURE(tensor_cores);
        CAPTURE(spec);
        CAPTURE(c.T);
        auto act = AttentionActivation::parse(spec);
        Tensor q = randn({c.B, c.H, c.T, c.d}, {}, &gen).requires_grad_();
        Tensor k = randn({c.B, c.H, c.S, c.d}, {}, &gen).requires_grad_();
        Tensor v = randn({c.B, c.H, c.S, c.d}, {}, &gen).requires_grad_();
        Tensor mask = c.padded ? padding_mask(c.B, c.S, gen) : Tensor();
        const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
        auto cpu_stats = std::make_shared<AttentionStats>();
        auto gpu_stats = std::make_shared<AttentionStats>();
        Generator wgen(5);
        Tensor w = randn({c.B, c.H, c.T, c.d}, {}, &wgen);
        Tensor oc = attention(q, k, v, act, c.causal, scale, mask, cpu_stats, kFused);
        backward(sum(mul(oc, w)));
        Device gpu = Device::cuda(0);
        Tensor qg = q.detach().to(gpu).requires_grad_(), kg = k.detach().to(gpu).requires_grad_();
        Tensor vg = v.detach().to(gpu).requires_grad_();
        Tensor og = attention(qg, kg, vg, act, c.causal, scale,
                              mask.defined() ? mask.to(gpu) : mask, gpu_stats, kFused);
        backward(sum(mul(og, w.to(gpu))));
        CHECK(pgt::max_rel_diff_strict(og, oc) < 1e-4);
        CHECK(pgt::max_rel_diff_strict(qg.grad(), q.grad()) < 1e-4);
        CHECK(pgt::max_rel_diff_strict(kg.grad(), k.grad()) < 1e-4);
        CHECK(pgt::max_rel_diff_strict(vg.grad(), v.grad()) < 1e-4);
        CHECK(gpu_stats->a_frob() == doctest::Approx(cpu_stats->a_frob()).epsilon(1e-4));
        CHECK(gpu_stats->grad_frob() == doctest::Approx(cpu_stats->grad_frob()).epsilon(1e-4));
      }
    }
  cuda::set_attention_tensor_cores(true);
}
