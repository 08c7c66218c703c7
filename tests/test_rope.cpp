// Rotary position embeddings: scores that depend on relative position only, PyTorch's values,
// gradcheck, and the GPT with --pos rope (config, cached and recurrent decoding, both attention
// paths).
#include <doctest/doctest.h>

#include <cmath>

#include "models/gpt.h"
#include "nn/attention_op.h"
#include "nn/rope.h"
#include "nn/safetensors.h"
#include "polygrad.h"
#include "tiny_gpt.h"

using namespace pg;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max(abs(sub(a.to(DType::F64), b.to(DType::F64)))).item();
}

GptConfig rope_gpt(const std::string& attn) { return test::tiny_gpt(attn, 0.0, "rope"); }

}  // namespace

TEST_CASE("rope: q_i . k_j depends on i - j only") {
  Generator gen(1);
  Tensor q = randn({1, 1, 1, 16}, {DType::F64}, &gen), k = randn({1, 1, 1, 16}, {DType::F64}, &gen);
  auto score = [&](int64_t i, int64_t j) {
    return sum(mul(apply_rope(q, i), apply_rope(k, j))).item();
  };
  for (auto [i, j] : {std::pair<int64_t, int64_t>{3, 1}, {0, 5}, {40, 40}}) {
    CAPTURE(i);
    CAPTURE(j);
    for (int64_t shift : {1, 17, 1000}) {
      CHECK(score(i + shift, j + shift) == doctest::Approx(score(i, j)).epsilon(1e-10));
    }
  }
  // ... and on it: another offset gives another score.
  CHECK(std::abs(score(3, 1) - score(3, 2)) > 1e-3);
  // Position 0 is the identity; a rotation keeps the norm.
  CHECK(max_abs_diff(apply_rope(q, 0), q) == 0);
  CHECK(sum(mul(apply_rope(q, 9), apply_rope(q, 9))).item() ==
        doctest::Approx(sum(mul(q, q)).item()).epsilon(1e-12));
}

TEST_CASE("rope: PyTorch's values (tools/reference/make_rope_fixture.py)") {
  SafetensorsFile f = load_safetensors(std::string(PG_FIXTURE_DIR) + "/rope.safetensors");
  CHECK(f.metadata.at("script").ends_with("make_rope_fixture.py"));
  const Tensor& x = f.tensors.at("x");
  CHECK(max_abs_diff(apply_rope(x, 0), f.tensors.at("from_0")) <= 1e-12);
  CHECK(max_abs_diff(apply_rope(x, 7), f.tensors.at("from_7")) <= 1e-12);
  // In f32: to f32 rounding.
  CHECK(max_abs_diff(apply_rope(x.to(DType::F32), 7), f.tensors.at("from_7")) <= 1e-6);
}

TEST_CASE("rope: gradcheck in f64, errors") {
  Generator gen(2);
  // A transposed view: rope reads non-contiguous heads.
  Tensor x = randn({2, 3, 4, 6}, {DType::F64}, &gen).transpose(2, 3).detach().requires_grad_();
  auto report = gradcheck([](const TensorList& in) { return apply_rope(in[0], 5); }, {x});
  CHECK_MESSAGE(report.ok, report.message);
  CHECK_THROWS_WITH_AS(apply_rope(randn({1, 1, 2, 3}), 0), doctest::Contains("even head size"),
                       pg::Error);
  CHECK_THROWS_WITH_AS(apply_rope(randn({1, 2, 3}), 0), doctest::Contains("[B, H, T, d]"),
                       pg::Error);
}

TEST_CASE("GPT with rope: no position table, config round trip, older configs are learned") {
  GptConfig c = rope_gpt("softmax");
  manual_seed(1);
  Gpt model(c);
  for (const auto& [name, p] : model.named_parameters()) CHECK(name != "pos.weight");
  CHECK(model.num_parameters() == c.parameter_count());
  GptConfig back = GptConfig::from_json(c.to_json());
  CHECK(back.pos == "rope");
  // A config written before the field existed.
  std::string old = c.to_json();
  old.replace(old.find(",\"pos\":\"rope\""), std::string(",\"pos\":\"rope\"").size(), "");
  CHECK(GptConfig::from_json(old).pos == "learned");
  c.pos = "sinusoidal";
  CHECK_THROWS_WITH_AS(c.check("cfg"), doctest::Contains("expected 'learned' or 'rope'"),
                       pg::Error);
  c.pos = "rope";
  c.dim = 18;
  c.heads = 2;  // head size 9
  CHECK_THROWS_WITH_AS(c.check("cfg"), doctest::Contains("even head size"), pg::Error);
}

TEST_CASE("GPT with rope: incremental decoding equals the full forward (KV cache and state)") {
  Generator gen(3);
  Tensor tokens = randint(0, 11, {2, 8}, {DType::I64}, &gen);
  for (const char* spec : {"softmax", "poly:2,n=visible", "poly:p=3,scale=n^-1"}) {
    CAPTURE(spec);
    manual_seed(2);
    Gpt model(rope_gpt(spec));
    model.eval();
    NoGradGuard no_grad;
    Tensor whole = model(tokens);
    std::vector<KvCache> caches;
    Tensor got = model.forward_cached(tokens.narrow(1, 0, 3).contiguous(), caches);
    for (int64_t i = 3; i < 8; ++i)
      got = cat({got, model.forward_cached(tokens.narrow(1, i, 1).contiguous(), caches)}, 1);
    CHECK(max_abs_diff(got, whole) <= 1e-5 * max(abs(whole)).item());
  }
}

TEST_CASE("GPT with rope: the linear path gives the quadratic path's loss and gradients") {
  Generator gen(4);
  GptConfig c = rope_gpt("poly:p=2,scale=n^-1");
  c.context = 2 * kLinearChunk + 3;
  manual_seed(3);
  Gpt model(c);
  model.to(DType::F64);
  Tensor tokens = randint(0, c.vocab_size, {2, c.context + 1}, {DType::I64}, &gen);
  Tensor x = tokens.narrow(1, 0, c.context).contiguous(),
         y = tokens.narrow(1, 1, c.context).contiguous();
  std::vector<std::vector<Tensor>> grads;
  std::vector<double> losses;
  for (AttentionPath path : {AttentionPath::Fused, AttentionPath::Linear}) {
    for (const auto& b : model.blocks()) b->attn->set_path(path);
    model.zero_grad();
    Tensor loss = cross_entropy(model(x), y);
    loss.backward();
    losses.push_back(loss.item());
    grads.emplace_back();
    for (const Tensor& p : model.parameters()) grads.back().push_back(p.grad());
  }
  CHECK(losses[1] == doctest::Approx(losses[0]).epsilon(1e-12));
  for (size_t i = 0; i < grads[0].size(); ++i)
    CHECK(max_abs_diff(grads[1][i], grads[0][i]) <= 1e-10 * max(abs(grads[0][i])).item());
}
