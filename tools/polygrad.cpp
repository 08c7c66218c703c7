// The `polygrad` command: train, eval, sample and compare.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "nn/attention_activation.h"
#include "nn/checkpoint.h"
#include "nn/data_loader.h"
#include "nn/mnist.h"
#include "nn/text.h"
#include "tools/compare.h"
#include "tools/omp_env.h"
#include "tools/train_common.h"
#include "tools/train_programs.h"

using namespace pg;
using namespace pg::tools;

namespace {

// Flags every training run takes.
void add_train_flags(CLI::App* app, TrainOptions& o) {
  app->add_option("--attn", o.attn, "attention activation: " + AttentionActivation::valid_specs())
      ->capture_default_str()
      ->check([](const std::string& s) {
        try {
          AttentionActivation::parse(s);
          return std::string();
        } catch (const pg::Error& e) {
          return std::string(e.what());
        }
      });
  app->add_option("--steps", o.steps, "optimizer steps (0: from --epochs, or the model's default)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--epochs", o.epochs, "ViT: passes over the training set")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--batch", o.batch, "batch size (0: model default)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--lr", o.lr, "peak learning rate (0: model default)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--warmup", o.warmup, "warm-up steps (-1: 5% of the run)");
  app->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str();
  app->add_option("--seed", o.seed, "seed of initialisation, data order and dropout")
      ->capture_default_str();
  app->add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::NonNegativeNumber);
  app->add_option("--device", o.device, "cpu, cuda or cuda:N")
      ->capture_default_str()
      ->check([](const std::string& s) {
        try {
          parse_device(s);
          return std::string();
        } catch (const pg::Error& e) {
          return std::string(e.what());
        }
      });
  app->add_option("--precision", o.precision,
                  "f32, or bf16: matrix products from bfloat16 operands with f32 accumulation "
                  "(tensor cores on CUDA; emulated, not faster, on the CPU), and their saved "
                  "operands and GELU's input kept as bf16 for the backward")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  app->add_option("--out", o.out, "run directory")->capture_default_str();
  app->add_option("--data", o.data, "data path (ViT: MNIST-layout dir; GPT: text file or dir)");
  app->add_flag("--resume", o.resume, "continue from OUT/checkpoint.safetensors");
  app->add_option("--eval-every", o.eval_every, "evaluate every N steps (0: a few times per run)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--ckpt-every", o.ckpt_every, "checkpoint every N steps (0: at the end)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--label-smoothing", o.label_smoothing, "ViT: label smoothing of the loss")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app->add_flag("--flip,!--no-flip", o.flip, "ViT: random left-right flips of training images")
      ->capture_default_str();
  app->add_flag("--normalize,!--no-normalize", o.normalize,
                "ViT: feed pixels standardised by the training set's mean and std")
      ->capture_default_str();
  app->add_option("--shift", o.shift, "ViT: random shifts of training images, up to N pixels")
      ->capture_default_str()
      ->check(CLI::Range(0, 8));
}

void add_vit_flags(CLI::App* app, VitConfig& c) {
  app->add_option("--patch", c.patch, "patch size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--dim", c.dim, "model width")->capture_default_str()->check(CLI::PositiveNumber);
  app->add_option("--layers", c.layers, "transformer blocks")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--heads", c.heads, "attention heads")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--mlp-ratio", c.mlp_ratio, "MLP hidden = ratio * dim")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--dropout", c.dropout, "dropout")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.99));
  app->add_option("--pool", c.pool, "classify from the class token or the mean of all tokens")
      ->capture_default_str()
      ->check(CLI::IsMember({"cls", "mean"}));
}

void add_gpt_flags(CLI::App* app, GptConfig& c) {
  app->add_option("--context", c.context, "context length")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--dim", c.dim, "model width")->capture_default_str()->check(CLI::PositiveNumber);
  app->add_option("--layers", c.layers, "transformer blocks")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--heads", c.heads, "attention heads")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app->add_option("--dropout", c.dropout, "dropout")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.99));
  app->add_flag("--tie-weights", c.tie_weights, "share token embedding and output head");
}

int run_eval(const std::string& ckpt_path, const std::string& data) {
  Checkpoint ck = load_checkpoint(ckpt_path);
  NoGradGuard no_grad;
  if (ck.metadata.at("model") == "vit") {
    Vit model(VitConfig::from_json(ck.metadata.at("config")));
    model.load_state_dict(ck.model);
    model.eval();
    MnistData d = load_mnist(data.empty() ? kFashionMnistDir : data);
    EvalResult r = evaluate(model, d.test);
    int64_t n = d.test.images.size(0);
    std::printf("test accuracy %.2f%% (%lld/%lld)\n", 100.0 * r.accuracy,
                (long long)std::llround(r.accuracy * n), (long long)n);
    return 0;
  }
  Gpt model(GptConfig::from_json(ck.metadata.at("config")));
  model.load_state_dict(ck.model);
  model.eval();
  TextCorpus corpus = load_text_corpus(data.empty() ? kFortunesDir : data, 0.1);
  PG_CHECK(corpus.vocab.to_utf8() == ck.metadata.at("vocab"), ckpt_path,
           "was trained on a different text (vocabulary differs)");
  std::printf("validation loss %.4f nats/char\n", validation_loss(model, corpus.val, 32, 8));
  return 0;
}

int run_sample(const std::string& ckpt_path, const std::string& prompt, int64_t tokens,
               double temperature, int64_t top_k, uint64_t seed) {
  Checkpoint ck = load_checkpoint(ckpt_path);
  PG_CHECK(ck.metadata.at("model") == "gpt", ckpt_path, "is not a GPT checkpoint");
  Gpt model(GptConfig::from_json(ck.metadata.at("config")));
  model.load_state_dict(ck.model);
  CharVocab vocab = CharVocab::from_utf8(ck.metadata.at("vocab"));
  Generator gen(seed);
  std::u32string p = utf8_decode(prompt.empty() ? "\n" : prompt);
  std::u32string kept;
  for (char32_t c : p)
    if (vocab.contains(c)) kept.push_back(c);
  PG_CHECK(!kept.empty(), "sample", "no character of the prompt is in the model's vocabulary");
  std::printf(
      "%s\n",
      vocab.decode(model.generate(vocab.encode(kept), tokens, temperature, top_k, gen)).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  pg::tools::ensure_passive_omp_wait(argv);
  CLI::App app{"polygrad: transformers with a pluggable attention activation"};
  app.require_subcommand(1);
  TrainOptions train_opt;
  VitConfig vit;
  GptConfig gpt;

  auto* train = app.add_subcommand("train", "train a model");
  train->require_subcommand(1);
  auto* train_vit_cmd = train->add_subcommand("vit", "ViT on Fashion-MNIST (or --data DIR)");
  add_train_flags(train_vit_cmd, train_opt);
  add_vit_flags(train_vit_cmd, vit);
  auto* train_gpt_cmd =
      train->add_subcommand("gpt", "character GPT on a text corpus (default: fortunes)");
  add_train_flags(train_gpt_cmd, train_opt);
  add_gpt_flags(train_gpt_cmd, gpt);

  std::string ckpt, data, prompt;
  int64_t tokens = 300, top_k = 20;
  double temperature = 0.8;
  uint64_t seed = 1;
  auto* eval = app.add_subcommand("eval", "evaluate a checkpoint");
  eval->add_option("--ckpt", ckpt, "checkpoint file")->required()->check(CLI::ExistingFile);
  eval->add_option("--data", data, "data path (default: the model's default)");
  auto* sample = app.add_subcommand("sample", "generate text from a GPT checkpoint");
  sample->add_option("--ckpt", ckpt, "checkpoint file")->required()->check(CLI::ExistingFile);
  sample->add_option("--prompt", prompt, "text to continue");
  sample->add_option("--tokens", tokens, "characters to generate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sample->add_option("--temperature", temperature, "0 = greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sample->add_option("--top-k", top_k, "sample among the k most likely (0 = all)")
      ->capture_default_str();
  sample->add_option("--seed", seed, "sampling seed")->capture_default_str();

  CompareOptions cmp;
  auto* compare = app.add_subcommand("compare", "train once per activation and write a report");
  add_train_flags(compare, cmp.train);
  compare->add_option("--model", cmp.model, "vit or gpt")
      ->capture_default_str()
      ->check(CLI::IsMember({"vit", "gpt"}));
  compare->add_option("--attn-list", cmp.activations, "activation specs, space-separated")
      ->capture_default_str();
  compare->add_option("--patch", cmp.vit.patch, "ViT patch size")->capture_default_str();
  compare->add_option("--dim", cmp.vit.dim, "ViT width")->capture_default_str();
  compare->add_option("--layers", cmp.vit.layers, "ViT blocks")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "polygrad: %s (see --help)\n", e.what());
    return e.get_exit_code() ? e.get_exit_code() : 2;
  }
  try {
    if (train_vit_cmd->parsed())
      train_vit(train_opt, vit);
    else if (train_gpt_cmd->parsed())
      train_gpt(train_opt, gpt);
    else if (eval->parsed())
      return run_eval(ckpt, data);
    else if (sample->parsed())
      return run_sample(ckpt, prompt, tokens, temperature, top_k, seed);
    else if (compare->parsed())
      return run_compare(cmp);
  } catch (const pg::Error& e) {
    std::fprintf(stderr, "polygrad: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
