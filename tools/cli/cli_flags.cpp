// The flags of the `polygrad` command, each with its check and a short message.
#include "tools/cli/cli_flags.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "nn/attention_activation.h"
#include "tools/cli/train_common.h"

namespace pg::tools {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

// "0.5", "1e+06": a number as a message shows it.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

}  // namespace

// A number flag's check, with a short message: "-1 is negative (expected 0 or more)"; NaN and
// infinities are refused too. Text that is not a number is left to CLI11's conversion, which
// names it.
CLI::Validator number_in(double lo, double hi, const std::string& note) {
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
  app->add_option("--attn-path", o.attn_path,
                  "attention implementation: auto, quadratic (the fused kernel) or linear "
                  "(poly:p only, in time linear in the context)")
      ->capture_default_str()
      ->check(one_of({"auto", "quadratic", "linear"}));
  app->add_option("--steps", o.steps,
                  "optimizer steps (0: from --epochs, or the model's default); with --resume, "
                  "where to stop: the learning-rate schedule stays the checkpoint's")
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
  app->add_option("--data", o.data,
                  "data path (ViT: MNIST-layout dir; GPT: text file or dir, or python-stdlib: "
                  "this machine's Python standard library sources, tests excluded)");
  app->add_option("--glob", o.glob,
                  "GPT: read the files under --data DIR whose name matches PATTERN ('*.py'), "
                  "recursively, and split them into train/validation by file (every 10th)");
  app->add_flag("--resume", o.resume, "continue from OUT/checkpoint.safetensors");
  app->add_flag("--profile", o.profile,
                "time every kernel of the steps after the first two (evaluations left out) and "
                "write where a step's milliseconds go to OUT/profile.md");
  app->add_option("--eval-every", o.eval_every, "evaluate every N steps (0: a few times per run)")
      ->check(kNonNegative);
  app->add_option("--dist-timeout", o.dist_timeout,
                  "under mpirun: seconds a collective may wait for the other ranks before the "
                  "job ends (0: no limit)")
      ->capture_default_str()
      ->check(number_in(0, 1e6));
  app->add_option("--bucket-mb", o.bucket_mb, "under mpirun: gradient bucket size in MiB")
      ->capture_default_str()
      ->check(number_in(0.001, 1024));
  app->add_flag("!--no-overlap", o.overlap,
                "under mpirun: all-reduce the gradients after backward instead of during it");
  app->add_option("--zero", o.zero,
                  "under mpirun: ZeRO stage, 1 shards the optimizer state over the processes "
                  "(same results, about 1/N of its memory each)")
      ->capture_default_str()
      ->check(number_in(0, 1));
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

namespace {

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

}  // namespace

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

namespace {

void add_pos_flag(CLI::App* app, GptConfig& c) {
  app->add_option("--pos", c.pos,
                  "positions: learned (a table of context rows) or rope (rotary, in the "
                  "attention; checkpoints record it)")
      ->capture_default_str()
      ->check(one_of({"learned", "rope"}));
}

}  // namespace

void add_gpt_flags(CLI::App* app, GptConfig& c) {
  add_pos_flag(app, c);
  app->add_option("--context", c.context, "context length")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(GptConfig::kMaxContext)));
  add_size_flags(app, c);
  app->add_flag("--tie-weights", c.tie_weights, "share token embedding and output head");
}

GptConfig default_recall_model() {
  GptConfig c;
  c.dim = 64;
  c.layers = 2;
  c.heads = 2;
  c.pos = "rope";
  return c;
}

void add_recall_flags(CLI::App* app, GptConfig& c, RecallTask& task) {
  app->add_option("--vocab", task.vocab, "tokens: keys from [1, V/2), values from [V/2, V)")
      ->capture_default_str()
      ->check(number_in(4, 1 << 24));
  app->add_option("--context", task.context, "sequence length T (at least 4 * pairs)")
      ->capture_default_str()
      ->check(number_in(4, static_cast<double>(GptConfig::kMaxContext)));
  app->add_option("--pairs", task.pairs, "key-value pairs per sequence, each queried once")
      ->capture_default_str()
      ->check(kPositive);
  add_pos_flag(app, c);
  add_size_flags(app, c);
}

}  // namespace pg::tools
