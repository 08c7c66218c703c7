// The `polygrad` command: train, eval, sample and compare.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <new>
#include <optional>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "distributed/dist.h"
#include "kernels/factory.h"
#include "nn/attention_activation.h"
#include "nn/checkpoint.h"
#include "nn/data_loader.h"
#include "nn/mnist.h"
#include "nn/text.h"
#include "tools/cli/checkpoint_fields.h"
#include "tools/cli/cli_flags.h"
#include "tools/cli/compare.h"
#include "tools/cli/omp_env.h"
#include "tools/cli/train_common.h"
#include "tools/cli/train_programs.h"

using namespace pg;
using namespace pg::tools;

namespace {

// Error messages may quote user text (a spec, a file's contents); the report stays one line.
std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

// Prints "polygrad: error: MESSAGE[SUFFIX]" as one line and returns `code`. Under mpirun the
// line names the rank, and the whole job ends here: the other ranks may be waiting for this one.
int report(const std::string& message, int code, const char* suffix = "") {
  if (pg::dist::world_size() == 1) {
    std::fprintf(stderr, "polygrad: error: %s%s\n", one_line(message).c_str(), suffix);
    return code;
  }
  std::fprintf(stderr, "polygrad: rank %d/%d: error: %s%s\n", pg::dist::rank(),
               pg::dist::world_size(), one_line(message).c_str(), suffix);
  pg::dist::abort_job(code);
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

int run_eval(const std::string& ckpt_path, const std::string& data, const std::string& glob) {
  Checkpoint ck = load_checkpoint(ckpt_path);
  NoGradGuard no_grad;
  if (model_kind(ck) == "vit") {
    PG_CHECK(glob.empty(), "eval", "--glob applies to text; ", ckpt_path, " is a ViT");
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
  if (model_kind(ck) == "recall") {
    PG_CHECK(data.empty() && glob.empty(), "eval", "--data and --glob do not apply: ", ckpt_path,
             " is an associative-recall model, whose test set its task generates");
    auto [cfg, task] = recall_config(ck);
    Gpt model(cfg);
    restore_checkpoint(ck, model, nullptr);
    const RecallResult r = evaluate_recall(model, task, kRecallTestSequences, 32);
    std::printf("recall accuracy %.2f%%, loss %.4f, on %lld test sequences\n", 100 * r.accuracy,
                r.loss, (long long)kRecallTestSequences);
    return 0;
  }
  GptConfig cfg = gpt_config(ck);
  CharVocab vocab = gpt_vocab(ck, cfg);
  TextCorpus corpus = load_corpus(data, glob);
  PG_CHECK(corpus.vocab.to_utf8() == vocab.to_utf8(), ckpt_path,
           "was trained on a different text (vocabulary differs)");
  Gpt model(cfg);
  restore_checkpoint(ck, model, nullptr);
  model.eval();
  const TextLoss loss = validation_loss(model, corpus.val, 32, 8);
  std::printf("validation loss %.4f nats/char\n", loss.mean);
  const auto buckets = position_buckets(cfg.context);
  for (size_t k = 0; buckets.size() > 1 && k < buckets.size(); ++k)
    std::printf("  positions %lld-%lld: %.4f\n", (long long)buckets[k].first,
                (long long)buckets[k].second, loss.by_position[k]);
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
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = model.generate(vocab.encode(kept), tokens, temperature, top_k, gen);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s\n", vocab.decode(ids).c_str());
  // On stderr: stdout is the text alone, for pipes.
  std::fprintf(stderr, "polygrad: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)tokens,
               seconds, static_cast<double>(tokens) / std::max(seconds, 1e-9));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  pg::tools::ensure_passive_omp_wait(argv);
  // Under `mpirun -np N` (N > 1): MPI, until main returns; otherwise nothing.
  std::optional<pg::dist::Session> session;
  try {
    session.emplace();
    // Ranks started with different flags would train different things, or hang. One line per
    // argument, with the one before it: the error quotes the first pair that differs.
    std::string command_line;
    for (int i = 1; i < argc; ++i)
      command_line += (i > 1 ? std::string(argv[i - 1]) + " " : "") + argv[i] + "\n";
    pg::dist::check_same_on_all_ranks("the command line", command_line);
  } catch (const pg::Error& e) {
    return report(e.what(), 1);
  }
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
  GptConfig recall_model = default_recall_model();
  RecallTask recall;
  auto* train_recall_cmd = train->add_subcommand(
      "recall", "causal transformer on multi-query associative recall (accuracy at the queries)");
  add_train_flags(train_recall_cmd, train_opt);
  add_recall_flags(train_recall_cmd, recall_model, recall);

  std::string ckpt, data, glob, prompt;
  int64_t tokens = 300, top_k = 20;
  double temperature = 0.8;
  uint64_t seed = 1;
  auto* eval = app.add_subcommand("eval", "evaluate a checkpoint");
  eval->add_option("--ckpt", ckpt, "checkpoint file")->required()->check(CLI::ExistingFile);
  eval->add_option("--data", data, "data path (default: the model's default)");
  eval->add_option("--glob", glob, "GPT: the --glob the model was trained with");
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
  compare->add_option("--seeds", cmp.seeds, "runs per activation, seeds SEED, SEED+1, ...")
      ->capture_default_str()
      ->check(number_in(1, 1000));
  compare->add_option("--model", cmp.model, "vit, gpt or recall")
      ->capture_default_str()
      ->check(one_of({"vit", "gpt", "recall"}));
  compare->add_option("--pairs", cmp.recall.pairs, "recall: key-value pairs per sequence")
      ->capture_default_str()
      ->check(kPositive);
  compare->add_option("--vocab", cmp.recall.vocab, "recall: tokens")
      ->capture_default_str()
      ->check(number_in(4, 1 << 24));
  // Every spec is checked before the first run starts, not when its turn comes.
  compare->add_option("--attn-list", cmp.activations, "activation specs, space-separated")
      ->capture_default_str()
      ->check(kAttnSpec);
  compare->add_option("--context", cmp.gpt.context, "GPT context length")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(GptConfig::kMaxContext)));
  compare->add_option("--heads", cmp.gpt.heads, "attention heads (ViT and GPT)")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(GptConfig::kMaxDim)));
  compare->add_option("--patch", cmp.vit.patch, "ViT patch size")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(VitConfig::kMaxImageSize)));
  compare->add_option("--dim", cmp.vit.dim, "width (ViT; and GPT when given)")
      ->capture_default_str()
      ->check(number_in(1, static_cast<double>(VitConfig::kMaxDim)));
  compare->add_option("--layers", cmp.vit.layers, "blocks (ViT; and GPT when given)")
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
  // compare's size flags: the ViT's defaults, and the GPT's only when given.
  if (cmp.model == "recall") {  // the recall model's own defaults, and --context is the task's
    const GptConfig given = cmp.gpt;
    cmp.gpt = default_recall_model();
    if (compare->count("--heads")) cmp.gpt.heads = given.heads;
    if (compare->count("--context")) cmp.recall.context = given.context;
  }
  if (compare->count("--dim")) cmp.gpt.dim = cmp.vit.dim;
  if (compare->count("--layers")) cmp.gpt.layers = cmp.vit.layers;
  cmp.vit.heads = cmp.gpt.heads;
  // Run-time errors: one line, exit status 1, whatever was thrown.
  try {
    PG_CHECK(pg::dist::world_size() == 1 || train->parsed(), "mpirun",
             "only `polygrad train` runs on several processes; start eval, sample and "
             "compare without mpirun");
    if (train_vit_cmd->parsed())
      train_vit(train_opt, vit);
    else if (train_gpt_cmd->parsed())
      train_gpt(train_opt, gpt);
    else if (train_recall_cmd->parsed())
      train_recall(train_opt, recall_model, recall);
    else if (eval->parsed())
      return run_eval(ckpt, data, glob);
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
