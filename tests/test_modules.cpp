// Module mechanics: registration (dotted names, order, counts, sub-modules, misuse), buffers,
// tied weights, modes, zero_grad, to(Device)/to(DType), state dicts and their errors.
// Layers, losses and initialisers are tested in test_layers.cpp.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "helpers.h"
#include "nn/layers.h"
#include "nn/module.h"

using namespace pg;

namespace {

// A model-shaped module: a parameter, a list of blocks, a final norm and two buffers (one
// integer), x [..., dim] -> [..., dim].
class Stack : public Module {
 public:
  Stack(int64_t dim, int depth) {
    pos = zeros({dim});
    register_parameter("pos", &pos);
    for (int i = 0; i < depth; ++i)
      blocks.push_back(
          register_module("blocks." + std::to_string(i), std::make_shared<MLP>(dim, 2 * dim)));
    ln = register_module("ln", std::make_shared<LayerNorm>(dim));
    scale = full({dim}, 0.5);
    register_buffer("scale", &scale);
    steps = zeros({1}, {DType::I64});
    register_buffer("steps", &steps);
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = add(x, pos);
    for (auto& b : blocks) h = add(h, (*b)(h));
    return mul((*ln)(h), scale);
  }
  std::string type_name() const override { return "Stack"; }
  Tensor pos, scale, steps;
  std::vector<std::shared_ptr<MLP>> blocks;
  std::shared_ptr<LayerNorm> ln;
};

// An embedding and an output head sharing one weight, tied the way GPT ties them: by assigning
// the head's member after both are registered.
class Tied : public Module {
 public:
  Tied(int64_t vocab, int64_t dim) {
    tok = register_module("tok", std::make_shared<Embedding>(vocab, dim));
    head = register_module("head", std::make_shared<Linear>(dim, vocab, false));
    head->weight = tok->weight;
  }
  Tensor forward(const Tensor& idx) override { return (*head)((*tok)(idx)); }
  std::string type_name() const override { return "Tied"; }
  std::shared_ptr<Embedding> tok;
  std::shared_ptr<Linear> head;
};

// Each constructor argument misuses the registration API in one way.
class Misuse : public Module {
 public:
  explicit Misuse(int how) {
    w = ones({2});
    register_parameter("w", &w);
    switch (how) {
      case 0:
        register_parameter("w", &w);
        break;
      case 1:
        register_module("w", std::make_shared<ReLU>());
        break;
      case 2:
        register_buffer("", &w);
        break;
      case 3:
        register_parameter("u", &undefined);
        break;
      case 4:
        idx = zeros({2}, {DType::I64});
        register_parameter("idx", &idx);
        break;
      case 5:
        register_module("child", std::shared_ptr<Module>());
        break;
    }
  }
  std::string type_name() const override { return "Misuse"; }
  Tensor w, undefined, idx;
};

// Registers nothing and has no forward.
class Empty : public Module {
 public:
  std::string type_name() const override { return "Empty"; }
};

std::vector<std::vector<float>> values_of(const Module& m) {
  std::vector<std::vector<float>> out;
  for (auto& [n, t] : m.state_dict()) out.push_back(t.to_vector<float>());
  return out;
}

}  // namespace

// --- registration ----------------------------------------------------------------------

TEST_CASE("registration: nested names in order, counts, sub-modules") {
  manual_seed(1);
  Sequential seq;
  seq.add(std::make_shared<MLP>(2, 3)).add(std::make_shared<MLP>(2, 3));
  CHECK(pgt::names_of(seq.named_parameters()) ==
        std::vector<std::string>{"0.fc1.weight", "0.fc1.bias", "0.fc2.weight", "0.fc2.bias",
                                 "1.fc1.weight", "1.fc1.bias", "1.fc2.weight", "1.fc2.bias"});
  CHECK(seq.num_parameters() == 2 * (3 * 2 + 3 + 2 * 3 + 2));
  CHECK(seq.parameters().size() == 8);
  CHECK(seq.named_buffers().empty());
  std::vector<std::string> modules, types;
  for (auto& [n, m] : seq.named_modules()) {
    modules.push_back(n);
    types.push_back(m->type_name());
  }
  CHECK(modules == std::vector<std::string>{"", "0", "0.fc1", "0.fc2", "0.drop", "1", "1.fc1",
                                            "1.fc2", "1.drop"});
  CHECK(types == std::vector<std::string>{"Sequential", "MLP", "Linear", "Linear", "Dropout", "MLP",
                                          "Linear", "Linear", "Dropout"});
  CHECK(seq.named_modules()[0].second == &seq);
  // named_parameters hands out the module's own tensors, not copies.
  auto* mlp0 = dynamic_cast<MLP*>(seq.named_modules()[1].second);
  REQUIRE(mlp0 != nullptr);
  CHECK(seq.named_parameters()[0].second.impl_ptr() == mlp0->fc1->weight.impl_ptr());
  for (auto& p : seq.parameters()) CHECK(p.requires_grad());

  // A list of blocks registered as "blocks.<i>".
  Stack stack(4, 3);
  auto names = pgt::names_of(stack.named_parameters());
  REQUIRE(names.size() == 1 + 3 * 4 + 2);
  CHECK(names.front() == "pos");
  CHECK(names[1] == "blocks.0.fc1.weight");
  CHECK(names[12] == "blocks.2.fc2.bias");
  CHECK(names.back() == "ln.bias");
  CHECK(pgt::names_of(stack.named_buffers()) == std::vector<std::string>{"scale", "steps"});
  CHECK(stack.num_parameters() == 4 + 3 * (8 * 4 + 8 + 4 * 8 + 4) + 2 * 4);
  std::vector<std::string> stack_modules;
  for (auto& [n, m] : stack.named_modules()) stack_modules.push_back(n);
  CHECK(stack_modules.size() == 1 + 3 * 4 + 1);
  CHECK(stack_modules[1] == "blocks.0");
  CHECK(stack_modules[2] == "blocks.0.fc1");
  CHECK(stack_modules.back() == "ln");
}

TEST_CASE("registration misuse and the default forward raise pg::Error naming the module") {
  CHECK_PG_ERROR(Misuse(0), "Misuse", "'w'", "already registered");
  CHECK_PG_ERROR(Misuse(1), "Misuse", "'w'", "already registered");
  CHECK_PG_ERROR(Misuse(2), "Misuse", "buffer", "empty");
  CHECK_PG_ERROR(Misuse(3), "Misuse", "'u'", "undefined");
  CHECK_PG_ERROR(Misuse(4), "Misuse", "'idx'", "floating", "i64");
  CHECK_PG_ERROR(Misuse(5), "Misuse", "'child'", "null");
  Empty e;
  CHECK_PG_ERROR(e(ones({2})), "Empty has no single-input forward");
  CHECK(e.named_parameters().empty());
  CHECK(e.num_parameters() == 0);
  CHECK(e.state_dict().empty());
}

TEST_CASE("buffers: listed apart from parameters, saved, converted, never trainable") {
  manual_seed(2);
  Stack m(3, 1);
  CHECK_FALSE(m.scale.requires_grad());
  CHECK_FALSE(m.steps.requires_grad());
  StateDict sd = m.state_dict();
  CHECK(sd.size() == m.named_parameters().size() + 2);
  CHECK(sd.count("scale"));
  CHECK(sd.count("steps"));
  m.to(DType::F64);
  CHECK(m.scale.dtype() == DType::F64);
  CHECK(m.steps.dtype() == DType::I64);  // integer state keeps its dtype
  CHECK(m.blocks[0]->fc1->weight.dtype() == DType::F64);
  CHECK(m.blocks[0]->fc1->weight.requires_grad());
  CHECK(m.blocks[0]->fc1->weight.is_leaf());
  CHECK_FALSE(m.scale.requires_grad());
  // Buffers travel through state dicts like parameters.
  Stack other(3, 1);
  other.to(DType::F64);
  {
    NoGradGuard ng;
    m.scale.fill_(-1.25);
    m.steps.fill_(7);
  }
  other.load_state_dict(m.state_dict());
  CHECK(other.scale.to_vector<double>() == std::vector<double>{-1.25, -1.25, -1.25});
  CHECK(other.steps.to_vector<int64_t>() == std::vector<int64_t>{7});
  Generator g(1);
  Tensor x = randn({4, 3}, {DType::F64}, &g);
  CHECK(other(x).to_vector<double>() == m(x).to_vector<double>());
}

TEST_CASE("tied weights: listed and counted once, stay tied through to() and loading") {
  manual_seed(4);
  Tied t(7, 3);
  CHECK(pgt::names_of(t.named_parameters()) == std::vector<std::string>{"tok.weight"});
  CHECK(t.num_parameters() == 7 * 3);
  CHECK(t.state_dict().size() == 2);  // both names, as PyTorch saves them
  t.to(DType::F64);
  CHECK(t.head->weight.impl_ptr() == t.tok->weight.impl_ptr());
  CHECK(t.tok->weight.dtype() == DType::F64);
  CHECK(t.parameters().size() == 1);
  // Both uses contribute to the one gradient.
  Tensor idx = from_vector<int64_t>({0, 3, 6}, {3});
  backward(sum(t(idx)));
  CHECK(t.tok->weight.grad().defined());
  CHECK(t.head->weight.grad().impl_ptr() == t.tok->weight.grad().impl_ptr());
  manual_seed(5);
  Tied u(7, 3);
  u.to(DType::F64);
  u.load_state_dict(t.state_dict());
  CHECK(u.head->weight.impl_ptr() == u.tok->weight.impl_ptr());
  CHECK(u(idx).to_vector<double>() == t(idx).to_vector<double>());
}

TEST_CASE("to(Device) and to(DType): fresh leaves, same handles when nothing changes") {
  manual_seed(6);
  Stack m(4, 2);
  std::vector<Tensor> slots{m.pos, m.scale, m.steps, m.blocks[1]->fc2->bias, m.ln->weight};
  auto still_same = [&] {
    std::vector<Tensor> now{m.pos, m.scale, m.steps, m.blocks[1]->fc2->bias, m.ln->weight};
    for (size_t i = 0; i < now.size(); ++i)
      if (now[i].impl_ptr() != slots[i].impl_ptr()) return false;
    return true;
  };
  // Nothing to move or convert: every member keeps its handle (an optimizer holding the
  // parameters keeps working).
  m.to(Device::cpu());
  m.to(DType::F32);
  CHECK(still_same());
  // Without a GPU the move fails as a whole and leaves the module untouched. Where one exists,
  // the parameters must arrive there as trainable leaves.
  auto values_before = values_of(m);
  std::string msg = pgt::error_message([&] { m.to(Device::cuda()); });
  if (msg != "<no exception>") {
    CHECK(msg.find("cuda") != std::string::npos);
    CHECK(still_same());
    CHECK(values_of(m) == values_before);
  } else {
    for (auto& p : m.parameters()) {
      CHECK(p.device().is_cuda());
      CHECK(p.is_leaf());
      CHECK(p.requires_grad());
    }
    m.to(Device::cpu());
    slots = {m.pos, m.scale, m.steps, m.blocks[1]->fc2->bias, m.ln->weight};  // fresh handles
  }
  // A real conversion replaces the tensors with fresh leaves and drops their gradients.
  Tensor x = randn({2, 4});
  backward(sum(m(x)));
  CHECK(m.pos.grad().defined());
  m.to(DType::F64);
  CHECK_FALSE(still_same());
  CHECK(m.pos.dtype() == DType::F64);
  CHECK(m.pos.is_leaf());
  CHECK(m.pos.requires_grad());
  CHECK_FALSE(m.pos.grad().defined());
  CHECK(m.steps.impl_ptr() == slots[2].impl_ptr());  // integer buffer: untouched
  m.to(DType::F32);
  CHECK(values_of(m) == values_before);  // f32 -> f64 -> f32 is exact
}

TEST_CASE("train()/eval() recurse and switch Dropout; zero_grad clears every gradient") {
  manual_seed(3);
  Sequential seq;
  seq.add(std::make_shared<Linear>(8, 8)).add(std::make_shared<MLP>(8, 16, 0.5));
  for (auto& [n, m] : seq.named_modules()) CHECK(m->is_training());
  seq.eval();
  for (auto& [n, m] : seq.named_modules()) {
    CAPTURE(n);
    CHECK_FALSE(m->is_training());
  }
  Tensor x = randn({64, 8});
  CHECK(seq(x).to_vector<float>() == seq(x).to_vector<float>());
  seq.train();
  for (auto& [n, m] : seq.named_modules()) CHECK(m->is_training());
  CHECK(seq(x).to_vector<float>() != seq(x).to_vector<float>());

  // A lone Dropout: eval is the identity; training zeroes about p and scales the rest.
  Dropout drop(0.25);
  Tensor ones_in = ones({4000});
  drop.eval();
  CHECK(drop(ones_in).to_vector<float>() == ones_in.to_vector<float>());
  drop.train();
  auto y = drop(ones_in).to_vector<float>();
  int zeros_count = 0;
  for (float v : y) {
    if (v == 0.0f)
      ++zeros_count;
    else
      CHECK(v == doctest::Approx(1.0 / 0.75).epsilon(1e-6));
  }
  // Binomial(4000, 0.25): mean 1000, sd ~27.
  CHECK(zeros_count > 850);
  CHECK(zeros_count < 1150);
  // A Dropout with its own generator is reproducible.
  Generator g1(5), g2(5);
  Dropout d1(0.5, &g1), d2(0.5, &g2);
  CHECK(d1(ones_in).to_vector<float>() == d2(ones_in).to_vector<float>());

  sum(seq(x)).backward();
  for (auto& p : seq.parameters()) CHECK(p.grad().defined());
  seq.zero_grad();
  for (auto& p : seq.parameters()) CHECK_FALSE(p.grad().defined());
  // Gradients accumulate across backward passes until cleared.
  seq.eval();
  sum(seq(x)).backward();
  auto g_once = seq.parameters()[0].grad().to_vector<float>();
  sum(seq(x)).backward();
  auto g_twice = seq.parameters()[0].grad().to_vector<float>();
  for (size_t i = 0; i < g_once.size(); ++i)
    CHECK(g_twice[i] == doctest::Approx(2 * g_once[i]).epsilon(1e-5));
  seq.zero_grad();
  for (auto& p : seq.parameters()) CHECK_FALSE(p.grad().defined());
}

// --- state dicts -----------------------------------------------------------------------

TEST_CASE("state_dict round trip into a fresh module with a different init") {
  manual_seed(21);
  Stack a(6, 2);
  manual_seed(22);
  Stack b(6, 2);
  {
    NoGradGuard ng;  // make the norm and buffer differ too
    a.ln->bias.fill_(0.3);
    a.scale.fill_(2.0);
  }
  Tensor x = randn({2, 5, 6});
  CHECK(a(x).to_vector<float>() != b(x).to_vector<float>());
  StateDict sd = a.state_dict();
  CHECK(sd.size() == a.named_parameters().size() + a.named_buffers().size());
  for (auto& [name, t] : sd) {
    CAPTURE(name);
    CHECK_FALSE(t.requires_grad());
  }
  b.load_state_dict(sd);
  CHECK(a(x).to_vector<float>() == b(x).to_vector<float>());
  // Loading copies values: no shared storage afterwards, and b's parameters are still the
  // same trainable leaves.
  Tensor b_pos = b.pos;
  CHECK_FALSE(a.blocks[0]->fc1->weight.shares_storage(b.blocks[0]->fc1->weight));
  CHECK(b.pos.impl_ptr() == b_pos.impl_ptr());
  for (auto& p : b.parameters()) {
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
  }
  // state_dict() shares storage with the module.
  {
    NoGradGuard ng;
    a.state_dict().at("ln.bias").fill_(0.75);
  }
  CHECK(a.ln->bias.to_vector<float>() == std::vector<float>(6, 0.75f));
  CHECK(b.ln->bias.to_vector<float>() != std::vector<float>(6, 0.75f));
  // A state dict in another dtype is converted on load.
  Stack c(6, 2);
  c.to(DType::F64);
  c.load_state_dict(b.state_dict());
  CHECK(c.ln->bias.dtype() == DType::F64);
  StateDict csd = c.state_dict();
  for (auto& [name, t] : b.state_dict()) {
    CAPTURE(name);
    CHECK(csd.at(name).to_vector<double>() == t.to_vector<double>());
  }
}

TEST_CASE("load_state_dict errors name the tensor and the shapes; non-strict loading") {
  manual_seed(23);
  MLP a(4, 5);
  manual_seed(24);
  MLP b(4, 5);
  auto b_values = values_of(b);
  StateDict missing = a.state_dict();
  missing.erase("fc2.bias");
  CHECK_PG_ERROR(b.load_state_dict(missing), "load_state_dict", "missing", "'fc2.bias'", "[4]",
                 "MLP");
  missing.erase("fc1.weight");
  CHECK_PG_ERROR(b.load_state_dict(missing), "'fc1.weight' [5, 4]", "'fc2.bias' [4]");
  StateDict extra = a.state_dict();
  extra["fc3.weight"] = zeros({2, 7});
  CHECK_PG_ERROR(b.load_state_dict(extra), "unexpected", "'fc3.weight'", "[2, 7]");
  StateDict wrong = a.state_dict();
  wrong["fc1.weight"] = zeros({4, 5});
  CHECK_PG_ERROR(b.load_state_dict(wrong), "'fc1.weight'", "[4, 5]", "expects [5, 4]");
  // A wrong shape is an error even when not strict.
  CHECK_PG_ERROR(b.load_state_dict(wrong, false), "'fc1.weight'", "[4, 5]", "[5, 4]");
  StateDict hole = a.state_dict();
  hole["fc1.bias"] = Tensor();
  CHECK_PG_ERROR(b.load_state_dict(hole), "'fc1.bias'", "undefined");
  // Every refused load was checked before anything was copied.
  CHECK(values_of(b) == b_values);

  // Non-strict: what is missing keeps its value, what is unexpected is ignored, the rest loads.
  auto b_fc2_bias = b.fc2->bias.to_vector<float>();
  StateDict partial = a.state_dict();
  partial.erase("fc2.bias");
  partial["not.there"] = ones({3});
  b.load_state_dict(partial, false);
  CHECK(b.fc2->bias.to_vector<float>() == b_fc2_bias);
  CHECK(b.fc1->weight.to_vector<float>() == a.fc1->weight.to_vector<float>());
  CHECK(b.fc2->weight.to_vector<float>() == a.fc2->weight.to_vector<float>());
}
