// User mistakes raise pg::Error whose message names the op, the shapes (or values) involved and
// what was expected. Each check asserts the message's contents, not just that something threw.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "helpers.h"
#include "kernels/device_api.h"
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "nn/text.h"
#include "scratch_files.h"

using namespace pg;

TEST_CASE("error type: op() and what()") {
  try {
    (void)add(zeros({2, 3}), zeros({4}));
    FAIL("add of [2, 3] and [4] did not throw");
  } catch (const Error& e) {
    CHECK(e.op() == "add");
    CHECK(std::string(e.what()).rfind("add: ", 0) == 0);
  }
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({2, 3})), doctest::Contains("matmul"), Error);
}

TEST_CASE("shape mismatches name the op and both shapes") {
  Tensor a = zeros({2, 3}), b = zeros({4});
  CHECK_PG_ERROR(add(a, b), "add", "[2, 3]", "[4]", "cannot be broadcast");
  CHECK_PG_ERROR(a - b, "sub", "[2, 3]", "[4]");
  CHECK_PG_ERROR(mul(a, zeros({3, 2})), "mul", "[2, 3]", "[3, 2]");
  CHECK_PG_ERROR(a / b, "div", "[2, 3]", "[4]");
  CHECK_PG_ERROR(where(ones({2, 3}), a, b), "where", "[4]");
  CHECK_PG_ERROR(matmul(zeros({2, 3}), zeros({4, 5})), "matmul", "[2, 3]", "[4, 5]",
                 "a.size(-1) == b.size(-2)");
  CHECK_PG_ERROR(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), "matmul", "[2, 2, 3]", "[3, 3, 4]");
  CHECK_PG_ERROR(matmul(zeros({3}), zeros({3, 4})), "matmul", "rank >= 2", "[3]");
  CHECK_PG_ERROR(cat({zeros({2, 3}), zeros({3, 2})}, 0), "cat", "[3, 2]", "[2, 3]", "dim 0");
  CHECK_PG_ERROR(stack({zeros({2, 3}), zeros({2, 4})}, 0), "stack", "[2, 4]", "[2, 3]");
  CHECK_PG_ERROR(cat({}, 0), "cat", "at least one");
  CHECK_PG_ERROR(cat({scalar_tensor(1), scalar_tensor(2)}, 0), "cat", "zero-dimensional");
  CHECK_PG_ERROR(zeros({2, 3}).copy_(zeros({2})), "copy_", "[2]", "[2, 3]");
  CHECK_PG_ERROR(zeros({3, 1}).expand({3, 2, 2}), "expand", "[3, 1]", "[3, 2, 2]");
  CHECK_PG_ERROR(zeros({3, 4}).expand({4}), "expand", "[3, 4]", "[4]");
  CHECK_PG_ERROR(sum_to(zeros({2, 3}), {4}), "sum_to", "[2, 3]", "[4]");
  Tensor w = zeros({5});
  CHECK_PG_ERROR(layer_norm(zeros({2, 4}), w, {}), "layer_norm", "[4]", "[5]", "[2, 4]");
  CHECK_PG_ERROR(cross_entropy(zeros({4, 5}), zeros({3}, {DType::I64})), "cross_entropy", "[4, 5]",
                 "[4]", "[3]");
  Tensor x = from_vector<double>({1, 2}, {2}, Device::cpu(), true);
  CHECK_PG_ERROR(x.set_grad(zeros({3}, {DType::F64})), "set_grad", "[3]", "[2]");
}

TEST_CASE("dtype mismatches name both dtypes") {
  Tensor f = zeros({2}, {DType::F32}), d = zeros({2}, {DType::F64});
  CHECK_PG_ERROR(add(f, d), "add", "same dtype", "f32", "f64", "[2]");
  CHECK_PG_ERROR(f * d, "mul", "f32", "f64");
  CHECK_PG_ERROR(matmul(zeros({2, 2}), zeros({2, 2}, {DType::F64})), "matmul", "f32", "f64");
  CHECK_PG_ERROR(matmul(zeros({2, 2}, {DType::I64}), zeros({2, 2}, {DType::I64})), "matmul",
                 "floating", "i64");
  CHECK_PG_ERROR(cat({f, d}, 0), "cat", "f32", "f64");
  CHECK_PG_ERROR(exp(zeros({2}, {DType::I64})), "exp", "floating", "i64");
  CHECK_PG_ERROR(softmax(zeros({2}, {DType::I32}), 0), "softmax", "floating", "i32");
  CHECK_PG_ERROR(layer_norm(f, zeros({2}, {DType::F64}), {}), "layer_norm", "f32", "f64");
  CHECK_PG_ERROR(cross_entropy(zeros({2, 3}), zeros({2})), "cross_entropy", "integer", "f32");
  CHECK_PG_ERROR(embedding(zeros({4, 2}), zeros({3})), "embedding", "i64 or i32", "f32");
  CHECK_PG_ERROR(f.data<double>(), "data", "f32", "f64");
  CHECK_PG_ERROR(div(zeros({2}, {DType::I64}), ones({2}, {DType::I64})), "div", "integer");
  CHECK_PG_ERROR(rand({2}, {DType::I64}), "rand", "floating", "i64");
}

TEST_CASE("bad reshapes and views") {
  Tensor x = zeros({2, 3});
  CHECK_PG_ERROR(x.reshape({4, 2}), "reshape", "[2, 3]", "6 elements", "[4, 2]");
  CHECK_PG_ERROR(x.reshape({-1, 4}), "reshape", "[2, 3]", "[-1, 4]");
  CHECK_PG_ERROR(x.reshape({-1, -1}), "reshape", "only one dimension can be -1");
  CHECK_PG_ERROR(x.view({5}), "view", "[2, 3]", "[5]");
  CHECK_PG_ERROR(x.transpose(0, 1).view({6}), "view", "[3, 2]", "without copying");
  CHECK_PG_ERROR(x.permute({0}), "permute", "[2, 3]", "expected 2 dims");
  CHECK_PG_ERROR(x.permute({1, 1}), "permute", "repeated");
  CHECK_PG_ERROR(x.slice(1, 0, 3, 0), "slice", "step must be positive");
  CHECK_PG_ERROR(zeros({-1, 2}), "negative size");
  CHECK_PG_ERROR(from_vector<float>({1, 2, 3}, {2, 2}), "from_vector", "3 values", "[2, 2]",
                 "expected 4");
}

TEST_CASE("out-of-range dims name the dim and the rank") {
  Tensor x = zeros({2, 3});
  CHECK_PG_ERROR(sum(x, {2}), "sum", "dim 2", "rank 2", "[-2, 1]");
  CHECK_PG_ERROR(sum(x, {-3}), "sum", "dim -3");
  CHECK_PG_ERROR(mean(x, {5}), "mean", "dim 5");
  CHECK_PG_ERROR(max(x, 2), "max", "dim 2");
  CHECK_PG_ERROR(argmax(x, -3), "argmax", "dim -3");
  CHECK_PG_ERROR(softmax(x, 2), "softmax", "dim 2");
  CHECK_PG_ERROR(log_softmax(x, -3), "log_softmax", "dim -3");
  CHECK_PG_ERROR(x.transpose(0, 2), "transpose", "dim 2");
  CHECK_PG_ERROR(x.squeeze(2), "squeeze", "dim 2");
  CHECK_PG_ERROR(x.unsqueeze(3), "unsqueeze", "dim 3");
  CHECK_PG_ERROR(x.size(2), "size", "dim 2");
  CHECK_PG_ERROR(cat({x, x}, 2), "cat", "dim 2");
  CHECK_PG_ERROR(stack({x, x}, 3), "stack", "dim 3");
  CHECK_PG_ERROR(x.slice(2, 0, 1), "slice", "dim 2");
  CHECK_PG_ERROR(sum(x, {1, -1}), "sum", "twice");
}

TEST_CASE("narrow, select and indices out of range") {
  Tensor x = zeros({2, 3});
  CHECK_PG_ERROR(x.narrow(1, 2, 2), "narrow", "[2, 4)", "dim 1", "size 3", "[2, 3]");
  CHECK_PG_ERROR(x.narrow(0, -1, 1), "narrow", "out of bounds");
  CHECK_PG_ERROR(x.narrow(2, 0, 1), "narrow", "dim 2");
  CHECK_PG_ERROR(x.select(1, 3), "select", "index 3", "dim 1", "size 3", "[2, 3]");
  CHECK_PG_ERROR(x.select(0, -3), "select", "index -3");

  Tensor w = zeros({5, 2});
  CHECK_PG_ERROR(embedding(w, from_vector<int64_t>({0, 7, 1}, {3})), "embedding", "index 7",
                 "position 1", "5 rows");
  CHECK_PG_ERROR(embedding(w, from_vector<int32_t>({-1}, {1})), "embedding", "index -1");
  CHECK_PG_ERROR(embedding(zeros({5}), from_vector<int64_t>({0}, {1})), "embedding", "2-D", "[5]");

  Tensor logits = zeros({3, 4});
  CHECK_PG_ERROR(cross_entropy(logits, from_vector<int64_t>({0, 4, 1}, {3})), "cross_entropy",
                 "target 4", "position 1", "4 classes");
  CHECK_PG_ERROR(cross_entropy(logits, from_vector<int64_t>({0, -1, 1}, {3})), "cross_entropy",
                 "target -1");
  CHECK_PG_ERROR(cross_entropy(logits, from_vector<int64_t>({0, 1, 2}, {3}), -100, 1.5),
                 "cross_entropy", "label_smoothing", "1.5");
  CHECK_PG_ERROR(dropout(logits, 1.5), "dropout", "probability", "1.5");
  CHECK_PG_ERROR(randint(3, 3, {2}), "randint", "low < high");
  CHECK_PG_ERROR(arange(0.0, 1.0, 0.0), "arange", "step");
}

TEST_CASE("misuse of values and autograd") {
  CHECK_PG_ERROR(zeros({2}).item(), "item", "one element", "[2]");
  CHECK_PG_ERROR(Tensor().shape(), "undefined");
  CHECK_PG_ERROR(zeros({2}, {DType::I64}).requires_grad_(), "requires_grad_", "floating", "i64");
  Tensor x = zeros({2});
  CHECK_PG_ERROR(x.backward(), "backward", "does not require grad");
  CHECK_PG_ERROR(gradcheck([](const TensorList& t) { return t[0] * 2.0; }, {x}), "gradcheck",
                 "no input requires grad");
  CHECK_PG_ERROR(set_num_threads(0), "set_num_threads", "at least 1", "0");
}

TEST_CASE("devices: a CUDA device that is not there, or not driven, is a clear error") {
  Tensor x = ones({2, 3});
  if (!cuda::is_available()) {
    CHECK_PG_ERROR(x.to(Device::cuda()), "cuda:0", "not available");
    CHECK_PG_ERROR(zeros({2}, {DType::F32, Device::cuda(1)}), "cuda:1", "not available");
    CHECK_PG_ERROR(backend_for(Device::cuda()), "cuda:0", "not available");
  } else {  // this version drives cuda:0 only
    CHECK_PG_ERROR(x.to(Device::cuda(1)), "cuda:1", "cuda:0 only");
    CHECK_PG_ERROR(zeros({2}, {DType::F32, Device::cuda(1)}), "cuda:1", "cuda:0 only");
  }
  CHECK(x.to(Device::cpu()).shares_storage(x));  // same device: no copy
}

TEST_CASE("sizes that overflow or cannot be allocated are pg::Errors, not crashes") {
  // Byte counts past 2^63 are refused before anything is allocated.
  CHECK_PG_ERROR(zeros({int64_t{1} << 61}, {DType::F64}), "empty", "2^63 bytes");
  // Element counts past 2^63 - 1, and negative sizes, are refused by shape_numel itself.
  CHECK_PG_ERROR(shape_numel({int64_t{1} << 40, int64_t{1} << 40}), "shape",
                 "[1099511627776, 1099511627776]", "2^63 - 1 elements");
  CHECK_PG_ERROR(shape_numel({int64_t{1} << 32, int64_t{1} << 32}), "2^63 - 1 elements");
  CHECK_PG_ERROR(shape_numel({2, -3}), "shape", "negative size", "[2, -3]");
  CHECK(shape_numel({int64_t{1} << 40, int64_t{1} << 40, 0}) == 0);
  CHECK(shape_numel({}) == 1);
  CHECK_PG_ERROR(zeros({6}).reshape({int64_t{1} << 40, int64_t{1} << 40, -1}), "2^63 - 1");
  // A block larger than the machine's memory: the system allocator is not even asked.
  CHECK_PG_ERROR(empty({int64_t{1} << 50}, {DType::F32}), "empty", "cannot allocate",
                 "4503599627370496 bytes", "[1125899906842624]", "f32");
  // The failed request leaves the allocator usable.
  CHECK(sum(ones({3})).item() == 3.0);
}

// --- files: checkpoints, configs, vocabularies, optimizer state ----------------------------

namespace {

// A real GPT checkpoint after one AdamW step, with the metadata `polygrad train gpt` writes.
std::string write_gpt_checkpoint(const std::filesystem::path& dir) {
  GptConfig cfg;
  cfg.vocab_size = 5;
  cfg.context = 4;
  cfg.dim = 8;
  cfg.layers = 1;
  cfg.heads = 2;
  manual_seed(3);
  Gpt model(cfg);
  AdamW opt(decay_groups(model, 1e-2, 0.01));
  Tensor x = from_vector(std::vector<int64_t>{0, 1, 2, 3}, {1, 4});
  Tensor y = from_vector(std::vector<int64_t>{1, 2, 3, 4}, {1, 4});
  cross_entropy(model(x), y).backward();
  opt.step();
  std::string path = (dir / "good.safetensors").string();
  save_checkpoint(path, model, &opt, 1,
                  {{"model", "gpt"}, {"config", cfg.to_json()}, {"vocab", "abcde"}});
  return path;
}

}  // namespace

TEST_CASE("load_checkpoint checks format, step and rng.state, naming the file and the field") {
  auto d = pgt::temp_dir("errors", "ckpt");
  const std::string good = write_gpt_checkpoint(d);
  REQUIRE(load_checkpoint(good).step == 1);
  const SafetensorsFile f = load_safetensors(good);
  int n = 0;
  // Rewrites the good file with one metadata entry set (or erased when `value` is null).
  auto with_meta = [&](const std::string& key, const char* value) {
    SafetensorsFile g = f;
    if (value)
      g.metadata[key] = value;
    else
      g.metadata.erase(key);
    std::string p = (d / ("bad" + std::to_string(n++) + ".safetensors")).string();
    save_safetensors(p, g.tensors, g.metadata);
    return p;
  };
  std::string p = with_meta("format", nullptr);
  CHECK_PG_ERROR(load_checkpoint(p), p.c_str(), "not a polygrad checkpoint", "'format'");
  p = with_meta("format", "polygrad-checkpoint-2");
  CHECK_PG_ERROR(load_checkpoint(p), p.c_str(), "'format'", "'polygrad-checkpoint-2'");
  p = with_meta("step", nullptr);
  CHECK_PG_ERROR(load_checkpoint(p), p.c_str(), "no 'step'");
  for (const char* bad : {"-5", "-0", "12abc", "seven", "", " 12", "12 ", "+12", "0x10", "1e3",
                          "1.5", "99999999999999999999", "9223372036854775808"}) {
    CAPTURE(bad);
    p = with_meta("step", bad);
    CHECK_PG_ERROR(load_checkpoint(p), p.c_str(), "metadata 'step'");
  }
  CHECK_PG_ERROR(load_checkpoint(with_meta("step", "-5")), "negative");
  CHECK_PG_ERROR(load_checkpoint(with_meta("step", "12abc")), "'12abc'", "decimal digits");
  CHECK_PG_ERROR(load_checkpoint(with_meta("step", "99999999999999999999")), "too large");
  CHECK(load_checkpoint(with_meta("step", "0")).step == 0);
  CHECK(load_checkpoint(with_meta("step", "9223372036854775807")).step == INT64_MAX);
  // The generator state must be there, and not all zero (xoshiro would draw zeros forever).
  SafetensorsFile g = f;
  g.tensors.erase("rng.state");
  p = (d / "no_rng.safetensors").string();
  save_safetensors(p, g.tensors, g.metadata);
  CHECK_PG_ERROR(load_checkpoint(p), "no_rng.safetensors", "'rng.state'");
  g.tensors["rng.state"] = zeros({6}, {DType::I64});
  save_safetensors(p, g.tensors, g.metadata);
  CHECK_PG_ERROR(load_checkpoint(p), "no_rng.safetensors", "rng.state", "all-zero");
  // Metadata the writer's programs need is read through field(), which names file and key.
  Checkpoint ck = load_checkpoint(good);
  CHECK(ck.path == good);
  CHECK(ck.field("model") == "gpt");
  CHECK_PG_ERROR(ck.field("tokenizer"), good.c_str(), "no 'tokenizer'");
  CHECK(ck.source("config") == good + ": metadata 'config'");
  // Nothing writes a negative step.
  Gpt model([] {
    GptConfig c;
    c.vocab_size = 3;
    c.context = 2;
    c.dim = 4;
    c.layers = 1;
    c.heads = 1;
    return c;
  }());
  CHECK_PG_ERROR(save_checkpoint((d / "neg.safetensors").string(), model, nullptr, -1, {}),
                 "neg.safetensors", "step -1");
  // A model of another shape, or a broken optimizer state, is refused naming the file.
  GptConfig wide = GptConfig::from_json(ck.field("config"));
  wide.dim = 16;
  Gpt other(wide);
  CHECK_PG_ERROR(restore_checkpoint(ck, other, nullptr), good.c_str(), "'model.*'", "'tok.weight'");
  Gpt same(GptConfig::from_json(ck.field("config")));
  AdamW opt(decay_groups(same, 1e-2, 0.01));
  Checkpoint no_optim = ck;
  no_optim.optimizer.clear();
  CHECK_PG_ERROR(restore_checkpoint(no_optim, same, &opt), good.c_str(), "'optim.*'",
                 "missing entry 'step'");
  // Refused at the optimizer, a fresh model is left as it was: nothing is loaded before
  // everything is checked. (A damaged moment buffer; the model part alone is fine.)
  Gpt fresh(GptConfig::from_json(ck.field("config")));
  AdamW fresh_opt(decay_groups(fresh, 1e-2, 0.01));
  std::map<std::string, std::vector<float>> values;
  for (const auto& [name, t] : fresh.state_dict()) values[name] = t.contiguous().to_vector<float>();
  REQUIRE(values.at("tok.weight") != ck.model.at("tok.weight").to_vector<float>());
  Checkpoint bad_moment = ck;
  bool damaged = false;
  for (auto& [key, t] : bad_moment.optimizer)
    if (!damaged && key.ends_with(".exp_avg")) {
      t = zeros({t.numel() + 1});
      damaged = true;
    }
  REQUIRE(damaged);
  CHECK_PG_ERROR(restore_checkpoint(bad_moment, fresh, &fresh_opt), good.c_str(), "'optim.*'",
                 "exp_avg");
  for (const auto& [name, t] : fresh.state_dict())
    CHECK_MESSAGE(t.contiguous().to_vector<float>() == values[name], name, " was changed");
  CHECK(fresh_opt.steps() == 0);
  CHECK_NOTHROW(restore_checkpoint(ck, same, &opt));
  CHECK(same.state_dict().at("tok.weight").to_vector<float>() ==
        ck.model.at("tok.weight").to_vector<float>());
}

TEST_CASE("configs: types, ranges and absurd sizes are refused naming who and the field") {
  GptConfig g;
  g.vocab_size = 11;
  g.context = 8;
  g.dim = 16;
  g.layers = 2;
  g.heads = 4;
  const std::string who = "ck.safetensors: metadata 'config'";
  auto gpt_with = [&](const char* key, const nlohmann::json& value) {
    auto j = nlohmann::json::parse(g.to_json());
    j[key] = value;
    return j.dump();
  };
  struct Bad {
    const char* key;
    nlohmann::json value;
    const char* expect;
  };
  for (const Bad& b : std::vector<Bad>{
           {"dim", "wide", "wrong type"},      {"dim", 16.5, "wrong type"},
           {"dim", 16.0, "wrong type"},        {"dim", true, "wrong type"},
           {"dim", nullptr, "wrong type"},     {"dim", 18446744073709551615ull, "too large"},
           {"dim", 0, "'dim' is 0"},           {"dim", -16, "'dim' is -16"},
           {"dim", 1 << 17, "1 to 65536"},     {"vocab_size", 0, "'vocab_size' is 0"},
           {"context", 0, "'context' is 0"},   {"context", 1 << 21, "'context'"},
           {"layers", 0, "'layers' is 0"},     {"layers", 5000, "'layers'"},
           {"heads", 0, "'heads' is 0"},       {"heads", 3, "does not divide"},
           {"heads", 32, "'heads' is 32"},     {"mlp_ratio", 0, "'mlp_ratio'"},
           {"mlp_ratio", 1000, "'mlp_ratio'"}, {"dropout", 1.0, "'dropout' is 1"},
           {"dropout", -0.1, "'dropout'"},     {"dropout", "0.1", "wrong type"},
           {"attn", "softmx", "'attn'"},       {"attn", 3, "wrong type"},
           {"tie_weights", 1, "wrong type"},   {"model", "vit", "'model' is 'vit'"},
       }) {
    const std::string key = b.key, value = b.value.dump();
    CAPTURE(key);
    CAPTURE(value);
    CHECK_PG_ERROR(GptConfig::from_json(gpt_with(b.key, b.value), who), who.c_str(), b.key,
                   b.expect);
  }
  // Sizes each within their limit, but a model of more than 2^32 parameters.
  auto j = nlohmann::json::parse(g.to_json());
  j["dim"] = 65536;
  j["layers"] = 1024;
  CHECK_PG_ERROR(GptConfig::from_json(j.dump(), who), who.c_str(), "parameters", "2^32");
  j = nlohmann::json::parse(g.to_json());
  j["vocab_size"] = GptConfig::kMaxVocab;
  j["dim"] = 4096;
  j["heads"] = 1;
  CHECK_PG_ERROR(GptConfig::from_json(j.dump(), who), "parameters");
  // The same checks guard the constructors (configs built from flags).
  GptConfig bad = g;
  bad.heads = 5;
  CHECK_PG_ERROR(Gpt{bad}, "Gpt", "'heads' is 5", "divide");

  VitConfig v;
  v.image_size = 8;
  v.patch = 4;
  v.dim = 16;
  v.layers = 1;
  v.heads = 2;
  auto vit_with = [&](const char* key, const nlohmann::json& value) {
    auto jv = nlohmann::json::parse(v.to_json());
    jv[key] = value;
    return jv.dump();
  };
  for (const Bad& b : std::vector<Bad>{
           {"image_size", 0, "'image_size' is 0"},
           {"image_size", 1 << 15, "'image_size'"},
           {"patch", 0, "'patch' is 0"},
           {"patch", 3, "not a multiple of 'patch' 3"},
           {"patch", 16, "'patch' is 16"},
           {"channels", 0, "'channels'"},
           {"classes", 0, "'classes'"},
           {"heads", 3, "does not divide"},
           {"pool", "max", "'pool' is 'max'"},
           {"pool", 1, "wrong type"},
           {"input_std", 0.0, "'input_std' is 0"},
           {"input_std", -1.0, "'input_std'"},
           {"input_mean", "0", "wrong type"},
           {"dropout", 1.5, "'dropout'"},
           {"attn", "poly:9", "'attn'"},
           {"model", "gpt", "'model' is 'gpt'"},
       }) {
    const std::string key = b.key, value = b.value.dump();
    CAPTURE(key);
    CAPTURE(value);
    CHECK_PG_ERROR(VitConfig::from_json(vit_with(b.key, b.value), who), who.c_str(), b.key,
                   b.expect);
  }
  // parameter_count is what the built models hold.
  for (bool tie : {false, true}) {
    GptConfig c = g;
    c.tie_weights = tie;
    manual_seed(1);
    CHECK(Gpt(c).num_parameters() == c.parameter_count());
  }
  for (const char* pool : {"cls", "mean"}) {
    VitConfig c = v;
    c.pool = pool;
    c.channels = 3;
    c.classes = 7;
    c.mlp_ratio = 2;
    manual_seed(1);
    CHECK(Vit(c).num_parameters() == c.parameter_count());
  }
  GptConfig huge = g;
  huge.dim = INT64_MAX / 2;
  CHECK(huge.parameter_count() == INT64_MAX);
}

TEST_CASE("vocabularies: valid UTF-8, not empty, no character twice") {
  const std::string who = "ck.safetensors: metadata 'vocab'";
  CHECK(CharVocab::from_utf8("ab\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", who).size() == 5);
  for (const char* bad : {"a\xff", "\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80", "\xe2\x82",
                          "\xf4\x90\x80\x80", "\x80", "ab\xc3"}) {
    CAPTURE(bad);
    CHECK_PG_ERROR(CharVocab::from_utf8(bad, who), who.c_str(), "not valid UTF-8");
  }
  CHECK_PG_ERROR(CharVocab::from_utf8("ab\xc3", who), "byte 2 of 3");
  CHECK_PG_ERROR(CharVocab::from_utf8("", who), who.c_str(), "empty");
  CHECK_PG_ERROR(CharVocab::from_utf8("abca", who), who.c_str(), "U+61 twice", "positions 0 and 3");
  CHECK(utf8_error_offset("plain") == std::string::npos);
  CHECK(utf8_error_offset("ok\xed\xbf\xbf") == 2);  // U+DFFF, a surrogate
}
