// Modules: registration, state dicts, modes, gradcheck of every layer and loss; safetensors
// round trips and corrupt files; checkpoints.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "helpers.h"
#include "models/gpt.h"
#include "nn/attention.h"
#include "nn/checkpoint.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/safetensors.h"
#include "polygrad.h"
#include "scratch_files.h"

using namespace pg;
namespace fs = std::filesystem;

namespace {

// Gradcheck of a module in f64 with respect to its input and all its parameters.
template <typename M>
void check_module(M& m, const Tensor& x) {
  m.to(DType::F64);
  pgt::check_module_grads(m, x);
}

}  // namespace

TEST_CASE("every layer passes gradcheck in f64 (input and parameters)") {
  manual_seed(1);
  Linear lin(4, 3);
  check_module(lin, pgt::f64_input({2, 3, 4}, 1));
  LayerNorm ln(5);
  normal_(ln.weight, 1.0, 0.2);
  normal_(ln.bias, 0.0, 0.2);
  check_module(ln, pgt::f64_input({3, 5}, 2));
  RMSNorm rms(5);
  check_module(rms, pgt::f64_input({2, 5}, 3));
  MLP mlp(4, 6);
  check_module(mlp, pgt::f64_input({3, 4}, 4));
  Sequential seq;
  seq.add(std::make_shared<Linear>(3, 5))
      .add(std::make_shared<GELU>())
      .add(std::make_shared<Linear>(5, 2));
  check_module(seq, pgt::f64_input({4, 3}, 5));
  for (const char* spec : {"softmax", "poly:3", "sigmoid", "relu"})
    for (bool causal : {false, true})
      for (bool fused : {true, false}) {
        CAPTURE(spec);
        CAPTURE(causal);
        CAPTURE(fused);
        AttentionConfig ac;
        ac.dim = 8;
        ac.heads = 2;
        ac.causal = causal;
        ac.path = fused ? AttentionPath::Auto : AttentionPath::Composite;
        ac.qk_norm = causal;
        ac.activation = AttentionActivation::parse(spec);
        TransformerBlock block(ac, 12);
        check_module(block, pgt::f64_input({2, 5, 8}, 6));
      }
  Embedding emb(6, 3);
  emb.to(DType::F64);
  Tensor idx = from_vector<int64_t>({1, 4, 1, 0}, {2, 2});
  auto report = gradcheck([&](const TensorList&) { return emb(idx); }, {emb.weight});
  CHECK_MESSAGE(report.ok, report.message);
  Tensor t = pgt::f64_input({3, 4}, 7).detach();
  report = gradcheck([&](const TensorList& in) { return mse_loss(in[0], t); },
                     {pgt::f64_input({3, 4}, 8)});
  CHECK_MESSAGE(report.ok, report.message);
  CHECK_THROWS_WITH_AS(mse_loss(ones({2, 3}), ones({3, 2})), doctest::Contains("[3, 2]"),
                       pg::Error);
}

TEST_CASE("registration: dotted names in order, counts, modes, zero_grad") {
  AttentionConfig ac;
  ac.dim = 8;
  ac.heads = 2;
  TransformerBlock block(ac, 16, 0.5);
  std::vector<std::string> names;
  for (auto& [n, p] : block.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"ln1.weight", "ln1.bias", "attn.qkv.weight",
                                          "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                                          "ln2.weight", "ln2.bias", "mlp.fc1.weight",
                                          "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"});
  CHECK(block.num_parameters() == 2 * 8 + 8 * 24 + 24 + 64 + 8 + 16 + 8 * 16 + 16 + 16 * 8 + 8);
  Sequential seq;
  seq.add(std::make_shared<MLP>(2, 3)).add(std::make_shared<MLP>(2, 3));
  CHECK(seq.named_parameters()[4].first == "1.fc1.weight");
  CHECK(seq.named_modules().size() == 1 + 2 * 4);
  // Dropout follows train()/eval() through the hierarchy.
  Tensor x = ones({4, 2, 8});
  block.eval();
  Tensor a = block(x), b = block(x);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  block.train();
  CHECK(block(x).to_vector<float>() != block(x).to_vector<float>());
  sum(block(x)).backward();
  CHECK(block.attn->qkv->weight.grad().defined());
  block.zero_grad();
  for (auto& p : block.parameters()) CHECK(!p.grad().defined());
}

TEST_CASE("state dict round trip and strict loading errors") {
  manual_seed(3);
  MLP a(4, 5), b(4, 5);
  Tensor x = randn({2, 4});
  CHECK(a(x).to_vector<float>() != b(x).to_vector<float>());
  b.load_state_dict(a.state_dict());
  CHECK(a(x).to_vector<float>() == b(x).to_vector<float>());
  StateDict missing = a.state_dict();
  missing.erase("fc2.bias");
  CHECK_THROWS_WITH_AS(b.load_state_dict(missing), doctest::Contains("fc2.bias"), pg::Error);
  b.load_state_dict(missing, false);  // non-strict ignores what is missing
  StateDict extra = a.state_dict();
  extra["fc3.weight"] = zeros({1});
  CHECK_THROWS_WITH_AS(b.load_state_dict(extra), doctest::Contains("fc3.weight"), pg::Error);
  StateDict wrong = a.state_dict();
  wrong["fc1.weight"] = zeros({4, 5});
  CHECK_THROWS_WITH_AS(b.load_state_dict(wrong, false), doctest::Contains("[5, 4]"), pg::Error);
}

TEST_CASE("init: reproducible and with the documented spread") {
  Tensor a = empty({256, 512}), b = empty({256, 512});
  Generator g1(5), g2(5);
  xavier_uniform_(a, 1.0, &g1);
  xavier_uniform_(b, 1.0, &g2);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  double bound = std::sqrt(6.0 / (256 + 512));
  CHECK(max(abs(a)).item() <= bound);
  kaiming_normal_(a, 0.0, FanMode::FanIn, &g1);
  double std = std::sqrt(mean(mul(a, a)).item());
  CHECK(std == doctest::Approx(std::sqrt(2.0 / 512)).epsilon(0.02));
}

TEST_CASE("safetensors: round trip of every dtype, views, 0-d and empty tensors") {
  fs::path d = pgt::temp_dir("nn", "st");
  StateDict t{{"f32", randn({3, 4}).transpose(0, 1)},
              {"f64", randn({2}, {DType::F64})},
              {"i64", arange(5)},
              {"i32", from_vector<int32_t>({-1, 7}, {2})},
              {"scalar", scalar_tensor(2.5)},
              {"empty", zeros({0, 3})}};
  save_safetensors((d / "a.safetensors").string(), t, {{"note", "hello"}});
  auto back = load_safetensors((d / "a.safetensors").string());
  CHECK(back.metadata.at("note") == "hello");
  for (auto& [name, v] : t) {
    CAPTURE(name);
    CHECK(back.tensors.at(name).shape() == v.shape());
    CHECK(back.tensors.at(name).dtype() == v.dtype());
    CHECK(back.tensors.at(name).to_vector<double>() == v.to_vector<double>());
  }
}

TEST_CASE("safetensors: BF16 and F16 load as f32") {
  fs::path d = pgt::temp_dir("nn", "half");
  // 1.0, -2.5, a subnormal (2^-24) in F16; 1.0, -3.0 in BF16.
  std::string f16("\x00\x3c\x00\xc1\x01\x00", 6), bf16("\x80\x3f\x40\xc0", 4);
  pgt::write_bytes(
      d / "h.safetensors",
      pgt::st_file(
          R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[6,10]}})",
          f16 + bf16));
  auto f = load_safetensors((d / "h.safetensors").string());
  auto h = f.tensors.at("h").to_vector<float>();
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == -2.5f);
  CHECK(h[2] == std::ldexp(1.0f, -24));
  CHECK(f.tensors.at("b").to_vector<float>() == std::vector<float>{1.0f, -3.0f});
}

TEST_CASE("safetensors: every corrupt file is refused naming the file") {
  fs::path d = pgt::temp_dir("nn", "bad");
  std::string ok_entry = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::string data(8, '\0');
  struct Bad {
    const char* name;
    std::string bytes;
    const char* expect;
  };
  std::string huge(8, '\0');
  uint64_t big = 1 << 20;
  std::memcpy(huge.data(), &big, 8);
  std::vector<Bad> cases = {
      {"short", "abc", "too short"},
      {"hlen", huge + "{}", "header length"},
      {"json", pgt::st_file("{not json", data), "not valid JSON"},
      {"array", pgt::st_file("[1,2]", data), "not a JSON object"},
      {"nodtype", pgt::st_file(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", data), "'w'"},
      {"types", pgt::st_file(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", data),
       "shape"},
      {"dtype", pgt::st_file(R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", data),
       "unsupported dtype"},
      {"negative", pgt::st_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
       "negative"},
      {"order", pgt::st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data),
       "data_offsets"},
      {"beyond",
       pgt::st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data.substr(0, 4)),
       "truncated"},
      {"size", pgt::st_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
       "needs 12 bytes"},
  };
  for (auto& c : cases) {
    CAPTURE(c.name);
    fs::path p = d / (std::string(c.name) + ".safetensors");
    pgt::write_bytes(p, c.bytes);
    CHECK_THROWS_WITH_AS(load_safetensors(p.string()), doctest::Contains(c.name), pg::Error);
    CHECK_THROWS_WITH_AS(load_safetensors(p.string()), doctest::Contains(c.expect), pg::Error);
  }
  CHECK_THROWS_WITH_AS(load_safetensors((d / "missing.safetensors").string()),
                       doctest::Contains("missing.safetensors"), pg::Error);
  CHECK_NOTHROW(
      load_safetensors((pgt::write_bytes(d / "good.safetensors", pgt::st_file(ok_entry, data)),
                        d / "good.safetensors")
                           .string()));
}

TEST_CASE("safetensors: a failed write leaves the previous file intact and no temp file") {
  fs::path d = pgt::temp_dir("nn", "atomic");
  std::string path = (d / "ckpt.safetensors").string();
  save_safetensors(path, {{"a", ones({2})}});
  std::string before = pgt::read_bytes(path);
  CHECK_THROWS_AS(save_safetensors((d / "no" / "dir.safetensors").string(), {{"a", ones({2})}}),
                  pg::Error);
  fs::create_directories(d / "isdir");
  CHECK_THROWS_AS(save_safetensors((d / "isdir").string(), {{"a", ones({2})}}), pg::Error);
  CHECK(pgt::read_bytes(path) == before);
  for (auto& e : fs::directory_iterator(d))
    CHECK(e.path().string().find(".tmp") == std::string::npos);
}

TEST_CASE("checkpoint: reload rebuilds identical logits; bad files are refused") {
  fs::path d = pgt::temp_dir("nn", "ckpt");
  GptConfig c;
  c.vocab_size = 11;
  c.context = 8;
  c.dim = 16;
  c.layers = 1;
  c.heads = 2;
  c.attn = "poly:3";
  manual_seed(9);
  Gpt model(c);
  std::string path = (d / "m.safetensors").string();
  save_checkpoint(path, model, nullptr, 42, {{"config", c.to_json()}});
  Checkpoint ck = load_checkpoint(path);
  CHECK(ck.step == 42);
  Gpt again(GptConfig::from_json(ck.metadata.at("config")));
  restore_checkpoint(ck, again, nullptr);
  Tensor tokens = from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(model(tokens).to_vector<float>() == again(tokens).to_vector<float>());
  save_safetensors((d / "plain.safetensors").string(), {{"a", ones({1})}});
  CHECK_THROWS_WITH_AS(load_checkpoint((d / "plain.safetensors").string()),
                       doctest::Contains("not a polygrad checkpoint"), pg::Error);
  std::string bytes = pgt::read_bytes(path);
  pgt::write_bytes(d / "cut.safetensors", bytes.substr(0, bytes.size() - 100));
  CHECK_THROWS_WITH_AS(load_checkpoint((d / "cut.safetensors").string()),
                       doctest::Contains("cut.safetensors"), pg::Error);
  CHECK_THROWS_AS(GptConfig::from_json("{\"dim\": 3}"), pg::Error);
}
