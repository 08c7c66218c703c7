// Tiny GPT and ViT learn a fixed batch with every built-in attention activation.
#include <doctest/doctest.h>

#include "models/gpt.h"
#include "models/vit.h"
#include "nn/optim.h"
#include "polygrad.h"

using namespace pg;

namespace {

// Trains on one batch; returns (first loss, last loss).
template <typename M>
std::pair<double, double> overfit(M& model, const Tensor& x, const Tensor& y, int steps) {
  AdamW opt({{model.parameters(), 3e-3, 0.0}});
  double first = 0, last = 0;
  for (int s = 0; s < steps; ++s) {
    Tensor logits = model(x);
    Tensor loss = cross_entropy(logits, y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (s == 0 ? first : last) = loss.item();
  }
  return {first, last};
}

}  // namespace

TEST_CASE("tiny GPT overfits a batch with every activation") {
  for (const char* spec : {"softmax", "poly:3", "relu", "sigmoid"}) {
    CAPTURE(spec);
    manual_seed(1);
    GptConfig c;
    c.vocab_size = 11;
    c.context = 8;
    c.dim = 32;
    c.layers = 2;
    c.heads = 2;
    c.attn = spec;
    Gpt model(c);
    Tensor x = randint(0, 11, {4, 8}), y = randint(0, 11, {4, 8});
    auto [first, last] = overfit(model, x, y, 150);
    CHECK(first > 2.0);  // about log(11) at initialisation
    CHECK(last < 0.2 * first);
  }
}

TEST_CASE("tiny ViT overfits a batch with every activation") {
  for (const char* spec : {"softmax", "poly:3", "relu", "sigmoid"}) {
    CAPTURE(spec);
    manual_seed(2);
    VitConfig c;
    c.image_size = 8;
    c.patch = 4;
    c.classes = 3;
    c.dim = 16;
    c.layers = 2;
    c.heads = 2;
    c.attn = spec;
    Vit model(c);
    Tensor x = rand({12, 1, 8, 8}), y = randint(0, 3, {12});
    auto [first, last] = overfit(model, x, y, 150);
    CHECK(last < 0.2 * first);
  }
}

TEST_CASE("configs round-trip through JSON and reject bad fields") {
  GptConfig g;
  g.vocab_size = 7;
  g.attn = "poly:p=2,scale=n^-1";
  CHECK(GptConfig::from_json(g.to_json()).to_json() == g.to_json());
  VitConfig v;
  v.dim = 48;
  CHECK(VitConfig::from_json(v.to_json()).to_json() == v.to_json());
  CHECK_THROWS_WITH_AS(VitConfig::from_json("{\"dim\": 3}"), doctest::Contains("misses"),
                       pg::Error);
  CHECK_THROWS_WITH_AS(GptConfig::from_json("not json"), doctest::Contains("JSON"), pg::Error);
  CHECK_THROWS_AS(Vit(VitConfig{.image_size = 10, .patch = 4}), pg::Error);
}

TEST_CASE("GPT generation: greedy is deterministic and top_k = 1 is greedy") {
  manual_seed(3);
  GptConfig c;
  c.vocab_size = 9;
  c.context = 6;
  c.dim = 16;
  c.layers = 1;
  c.heads = 2;
  Gpt model(c);
  Generator g1(1), g2(2);
  auto a = model.generate({1, 2}, 10, 0.0, 0, g1);
  auto b = model.generate({1, 2}, 10, 1.0, 1, g2);
  CHECK(a.size() == 12);
  CHECK(a == b);
  CHECK_THROWS_AS(model.generate({}, 3, 1.0, 0, g1), pg::Error);
}
