// A pre-norm transformer block against PyTorch: forward and backward for every built-in
// activation, on fixed weights. The fixture comes from tools/reference/make_fixtures.py.
#include <doctest/doctest.h>

#include <cmath>

#include "helpers.h"
#include "nn/attention.h"
#include "nn/safetensors.h"
#include "polygrad.h"

using namespace pg;

namespace {

void check_policy(const SafetensorsFile& fx, const std::string& spec, DType dtype, double tol,
                  bool fused) {
  const auto& t = fx.tensors;
  AttentionConfig ac;
  ac.dim = 8;
  ac.heads = 2;
  ac.causal = true;
  ac.activation = AttentionActivation::parse(spec);
  ac.path = fused ? AttentionPath::Auto : AttentionPath::Composite;
  TransformerBlock block(ac, 32);
  block.to(dtype);
  StateDict weights;
  for (auto& [name, value] : t)
    if (name.rfind("param.", 0) == 0) weights[name.substr(6)] = value;
  block.load_state_dict(weights);
  // A fresh leaf: to() returns the fixture tensor itself when the dtype already matches.
  Tensor x = t.at("x").to(dtype).clone().detach().requires_grad_();
  Tensor y = block(x);
  CHECK(pgt::max_rel_diff(y, t.at("out." + spec)) < tol);
  backward(sum(mul(y, t.at("g").to(dtype))));
  CHECK(pgt::max_rel_diff(x.grad(), t.at("grad." + spec + ".x")) < tol);
  for (auto& [name, p] : block.named_parameters()) {
    CAPTURE(name);
    CHECK(pgt::max_rel_diff(p.grad(), t.at("grad." + spec + "." + name)) < tol);
  }
}

}  // namespace

TEST_CASE("transformer block matches PyTorch for every built-in activation") {
  SafetensorsFile fx =
      load_safetensors(std::string(PG_FIXTURE_DIR) + "/transformer_block.safetensors");
  REQUIRE(fx.metadata.count("generator"));
  for (const std::string& spec : pgt::builtin_specs()) {
    CAPTURE(spec);
    for (bool fused : {true, false}) {
      CAPTURE(fused);
      check_policy(fx, spec, DType::F64, 1e-10, fused);
      check_policy(fx, spec, DType::F32, 1e-5, fused);
    }
  }
}
