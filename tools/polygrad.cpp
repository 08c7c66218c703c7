// The `polygrad` command: train, eval, sample and compare.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"
#include "nn/attention_activation.h"
#include "nn/checkpoint.h"
#include "nn/data_loader.h"
#include "nn/mnist.h"
#include "nn/text.h"
#include "tools/checkpoint_fields.h"
#include "tools/compare.h"
#include "tools/omp_env.h"
#include "tools/train_common.h"
#include "tools/train_programs.h"

using namespace pg;
using namespace pg::tools;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// "0.5", "1e+06": a number as a message shows it.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// A number flag's check, with a short message: "-1 is negative (expected 0 or more)"; NaN and
// infinities are refused too. Text that is not a number is left to CLI11's conversion, which
// names it.
CLI::Validator number_in(double lo, double hi, const std::string& note = "") {
  const std::string expected =
      "(expected " + (hi == kInf ? num(lo) + " or more" : num(lo) + " to " + num(hi)) + note + ")";
  std::string desc = "in [" + num(lo) + ", " + num(hi) + "]";
  if (hi == kInf) desc = lo == 0 ? "NONNEGATIVE" : lo == 1 ? "POSITIVE" : ">= " + num(lo);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0') return "";
        if (!std::isfinite(v)) return text + " is not a finite number " + expected;
        if (v < lo) return text + (lo == 0 ? " is negative " : " is too small ") + expected;
        if (v > hi) return text + " is too large " + expected;
        return "";
      },
      desc);
}
const CLI::Validator kNonNegative = number_in(0, kInf);
const CLI::Validator kPositive = number_in(1, kInf);

// One of a few words: "'max' is not one of: cls, mean".
CLI::Validator one_of(std::vector<std::string> words) {
  std::string list;
  for (const auto& w : words) list += (list.empty() ? "" : ", ") + w;
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        for (const auto& w : words)
          if (text == w) return "";
        return "'" + text + "' is not one of: " + list;
      },
      "{" + list + "}");
}

// An attention-activation spec; the message lists the valid ones.
const CLI::Validator kAttnSpec(
    [](std::string& s) {
      try {
        AttentionActivation::parse(s);
        return std::string();
      } catch (const pg::Error& e) {
        return std::string(e.what());
      }
    },
    "SPEC");

// Flags every training run takes.
void add_train_flags(CLI::App* app, TrainOptions& o) {
  app->add_option("--attn", o.attn, "attention activation: " + AttentionActivation::valid_specs())
      ->capture_default_str()
      ->check(kAttnSpec);
  app->add_option("--steps", o.steps, "optimizer steps (0: from --epochs, or the model's default)")
      ->check(kNonNegative);
  // An epoch count turns into a step count; 10^6 keeps that product far inside int64_t.
  app->add_option("--epochs", o.epochs, "ViT: passes over the training set")
      ->check(number_in(0, 1e6));
  app->add_option("--batch", o.batch, "batch size (0: model default)")->check(kNonNegative);
  app->add_option("--lr", o.lr, "peak learning rate (0: model default)")->check(kNonNegative);
  app->add_option("--warmup", o.warmup, "warm-up steps (-1: 5% of the run)")
      ->check(number_in(-1, kInf, "; -1 means 5% of the run"));
  app->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str()
      ->check(kNonNegative);
  app->add_option("--seed", o.seed, "seed of initialisation, data order and dropout")
      ->capture_default_str()
      ->check(kNonNegative);
  // More threads than this is a typo, not a machine: OpenMP would start them all.
  app->add_option("--threads", o.threads, "threads (0: all cores)")
      ->check(number_in(0, 1024, "; 0 uses all cores"));
  app->add_option("--device", o.device, "cpu, cuda or cuda:N")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& s) {
            try {
              parse_device(s);
              return std::string();
            } catch (const pg::Error& e) {
              return std::string(e.what());
            }
          },
          "DEVICE"));
  app->add_option("--precision", o.precision,
                  "f32, or bf16: matrix products from bfloat16 operands with f32 accumulation "
                  "(tensor cores on CUDA; emulated, not faster, on the CPU), and their saved "
                  "operands and GELU's input kept as bf16 for the backward")
      ->capture_default_str()
      ->check(one_of({"f32", "bf16"}));
  app->add_option("--out", o.out, "run directory")->capture_default_str();
  app->add_option("--data", o.data, "data path (ViT: MNIST-layout dir; GPT: text file or dir)");
  app->add_flag("--resume", o.resume, "continue from OUT/checkpoint.safetensors");
  app->add_option("--eval-every", o.eval_every, "evaluate every N steps (0: a few times per run)")
      ->check(kNonNegative);
  app->add_option("--ckpt-every", o.ckpt_every, "checkpoint every N steps (0: at the end)")
      ->check(kNonNegative);
  app->add_option("--label-smoothing", o.label_smoothing, "ViT: label smoothing of the loss")
      ->capture_default_str()
      ->check(number_in(0, 1));
  app->add_flag("--flip,!--no-flip", o.flip, "ViT: random left-right flips of training images")
      ->capture_default_str();
  app->add_flag("--normalize,!--no-normalize", o.normalize,
                "ViT: feed pixels standardised by the training set's mean and std")
      ->capture_default_str();
  app->add_option("--shift", o.shift, "ViT: random shifts of training images, up to N pixels")
      ->capture_default_str()
      ->check(number_in(0, 8));
}

// The sizes both models share, bounded by the limits every config must respect.
template <typename Config>
void add_size_flags(CLI::App* app, Config& c) {
  app->add_option("--dim", c.dim, "model width")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(Config::kMaxDim)));
  app->add_option("--layers", c.layers, "transformer blocks")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(Config::kMaxLayers)));
  app->add_option("--heads", c.heads, "attention heads (must divide --dim)")
      ->capture_default_str()
      ->check(kPositive);
  app->add_option("--dropout", c.dropout, "dropout")
      ->capture_default_str()
      ->check(number_in(0.0, 0.99));
}

void add_vit_flags(CLI::App* app, VitConfig& c) {
  app->add_option("--patch", c.patch, "patch size")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(VitConfig::kMaxImageSize)));
  add_size_flags(app, c);
  app->add_option("--mlp-ratio", c.mlp_ratio, "MLP hidden = ratio * dim")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(VitConfig::kMaxMlpRatio)));
  app->add_option("--pool", c.pool, "classify from the class token or the mean of all tokens")
      ->capture_default_str()
      ->check(one_of({"cls", "mean"}));
}

void add_gpt_flags(CLI::App* app, GptConfig& c) {
  app->add_option("--context", c.context, "context length")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(GptConfig::kMaxContext)));
  add_size_flags(app, c);
  app->add_flag("--tie-weights", c.tie_weights, "share token embedding and output head");
}

// Error messages may quote user text (a spec, a file's contents); the report stays one line.
std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

// Prints "polygrad: error: MESSAGE[SUFFIX]" as one line and returns `code`.
int report(const std::string& message, int code, const char* suffix = "") {
  std::fprintf(stderr, "polygrad: error: %s%s\n", one_line(message).c_str(), suffix);
  return code;
}

// CLI11 says only "A subcommand is required" for `polygrad fly` or `polygrad train`: this names
// the word and the valid subcommands. Empty when the words before the first option are fine
// (or help is asked for, which CLI11 answers).
std::string subcommand_error(CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "-h" || std::string(argv[i]).starts_with("--help")) return "";
  CLI::App* at = &app;
  std::string path = "polygrad";
  for (int i = 1;; ++i) {
    auto subs = at->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return "";
    std::string names;
    for (auto* sub : subs) names += (names.empty() ? "" : ", ") + sub->get_name();
    if (i >= argc || argv[i][0] == '-')
      return "'" + path + "' needs a subcommand (one of: " + names + ")";
    CLI::App* next = nullptr;
    for (auto* sub : subs)
      if (sub->get_name() == argv[i]) next = sub;
    if (!next)
      return "unknown subcommand '" + std::string(argv[i]) + "' for '" + path +
             "' (expected one of: " + names + ")";
    at = next;
    path += " " + next->get_name();
  }
}

int run_eval(const std::string& ckpt_path, const std::string& data) {
  Checkpoint ck = load_checkpoint(ckpt_path);
  NoGradGuard no_grad;
  if (model_kind(ck) == "vit") {
    VitConfig cfg = vit_config(ck);
    MnistData d = load_mnist(data.empty() ? kFashionMnistDir : data);
    check_image_size(ck, cfg, d.test);
    Vit model(cfg);
    restore_checkpoint(ck, model, nullptr);
    model.eval();
    EvalResult r = evaluate(model, d.test);
    int64_t n = d.test.images.size(0);
    std::printf("test accuracy %.2f%% (%lld/%lld)\n", 100.0 * r.accuracy,
                (long long)std::llround(r.accuracy * n), (long long)n);
    return 0;
  }
  GptConfig cfg = gpt_config(ck);
  CharVocab vocab = gpt_vocab(ck, cfg);
  TextCorpus corpus = load_text_corpus(data.empty() ? kFortunesDir : data, 0.1);
  PG_CHECK(corpus.vocab.to_utf8() == vocab.to_utf8(), ckpt_path,
           "was trained on a different text (vocabulary differs)");
  Gpt model(cfg);
  restore_checkpoint(ck, model, nullptr);
  model.eval();
  std::printf("validation loss %.4f nats/char\n", validation_loss(model, corpus.val, 32, 8));
  return 0;
}

int run_sample(const std::string& ckpt_path, const std::string& prompt, int64_t tokens,
               double temperature, int64_t top_k, uint64_t seed) {
  Checkpoint ck = load_checkpoint(ckpt_path);
  GptConfig cfg = gpt_config(ck);
  CharVocab vocab = gpt_vocab(ck, cfg);
  Gpt model(cfg);
  restore_checkpoint(ck, model, nullptr);
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
  // Each character costs a forward pass over the context: a million is hours on a CPU.
  sample->add_option("--tokens", tokens, "characters to generate")
      ->capture_default_str()
      ->check(number_in(0, 1e6));
  sample->add_option("--temperature", temperature, "0 = greedy")
      ->capture_default_str()
      ->check(kNonNegative);
  sample->add_option("--top-k", top_k, "sample among the k most likely (0 = all)")
      ->capture_default_str()
      ->check(kNonNegative);
  sample->add_option("--seed", seed, "sampling seed")->capture_default_str()->check(kNonNegative);

  CompareOptions cmp;
  auto* compare = app.add_subcommand("compare", "train once per activation and write a report");
  add_train_flags(compare, cmp.train);
  compare->add_option("--model", cmp.model, "vit or gpt")
      ->capture_default_str()
      ->check(one_of({"vit", "gpt"}));
  // Every spec is checked before the first run starts, not when its turn comes.
  compare->add_option("--attn-list", cmp.activations, "activation specs, space-separated")
      ->capture_default_str()
      ->check(kAttnSpec);
  compare->add_option("--patch", cmp.vit.patch, "ViT patch size")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(VitConfig::kMaxImageSize)));
  compare->add_option("--dim", cmp.vit.dim, "ViT width")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(VitConfig::kMaxDim)));
  compare->add_option("--layers", cmp.vit.layers, "ViT blocks")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(VitConfig::kMaxLayers)));

  // Usage errors: one line, exit status 2.
  if (std::string why = subcommand_error(app, argc, argv); !why.empty())
    return report(why, 2, "; see --help");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(e.what(), 2, "; see --help");
  }
  // Run-time errors: one line, exit status 1, whatever was thrown.
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
    return report(e.what(), 1);
  } catch (const std::bad_alloc&) {
    // Tensors say what they asked for (a pg::Error above); this is any other allocation.
    return report(
        "out of memory (an allocation outside tensor storage failed; try a smaller "
        "model or batch)",
        1);
  } catch (const std::exception& e) {
    return report(e.what(), 1);
  }
  return 0;
}
