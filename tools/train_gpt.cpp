// Trains a character-level GPT on a text corpus (default: Debian's fortunes).
// Read top to bottom: it is also the worked example of polygrad's API.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "models/gpt.h"
#include "nn/checkpoint.h"
#include "nn/data_loader.h"
#include "nn/optim.h"
#include "nn/text.h"
#include "polygrad.h"
#include "tools/train_common.h"
#include "tools/train_programs.h"

namespace pg::tools {

// Mean validation loss in nats per character over `batches` fixed windows.
double validation_loss(Gpt& model, const std::vector<int32_t>& val, int64_t batch,
                       int64_t batches) {
  NoGradGuard no_grad;
  model.eval();
  const Device device = model.parameters().front().device();
  double total = 0;
  for (int64_t i = 0; i < batches; ++i) {
    Batch b = text_batch(val, batch, model.config().context, 0xe7a1, i);
    total += cross_entropy(model(b.inputs.to(device)), b.targets.to(device)).item();
  }
  model.train();
  return total / static_cast<double>(batches);
}

RunSummary train_gpt(const TrainOptions& opt, GptConfig cfg) {
  namespace fs = std::filesystem;
  if (opt.threads > 0) set_num_threads(opt.threads);
  MatmulPrecisionGuard precision(parse_matmul_precision(opt.precision));
  fs::create_directories(opt.out);
  const std::string ckpt_path = opt.out + "/checkpoint.safetensors";

  // --- data: characters of the corpus, 90% train / 10% validation ---------------------
  TextCorpus corpus = load_text_corpus(opt.data.empty() ? kFortunesDir : opt.data, 0.1);
  Checkpoint resumed;
  if (opt.resume) {
    resumed = load_checkpoint(ckpt_path);
    cfg = GptConfig::from_json(resumed.metadata.at("config"));
    PG_CHECK(resumed.metadata.at("vocab") == corpus.vocab.to_utf8(), ckpt_path,
             "was trained on a different text (vocabulary differs)");
  }
  cfg.vocab_size = corpus.vocab.size();
  cfg.attn = opt.resume ? cfg.attn : opt.attn;
  int64_t batch = opt.batch > 0 ? opt.batch : 32;
  int64_t total = opt.steps > 0 ? opt.steps : 2000;

  // --- model and optimizer ------------------------------------------------------------
  manual_seed(opt.seed);
  Gpt model(cfg);
  const Device device = parse_device(opt.device);
  model.to(device);  // before the optimizer: it holds the parameters' handles
  double lr = opt.lr > 0 ? opt.lr : 2e-3;
  AdamW optimizer(decay_groups(model, lr, opt.weight_decay));
  int64_t warmup = opt.warmup >= 0 ? opt.warmup : total / 20;
  WarmupCosineLR schedule(lr, warmup, total, lr * 0.1);
  int64_t step = 0;
  if (opt.resume) {
    restore_checkpoint(resumed, model, &optimizer);
    step = resumed.step;
  }
  std::printf(
      "GPT %s: %lld parameters, %zu train / %zu val characters, %lld steps of %lldx%lld "
      "tokens, %d threads, %s, %s matmuls\n",
      cfg.to_json().c_str(), (long long)model.num_parameters(), corpus.train.size(),
      corpus.val.size(), (long long)total, (long long)batch, (long long)cfg.context,
      get_num_threads(), device.str().c_str(), opt.precision.c_str());
  auto save = [&] {
    save_checkpoint(
        ckpt_path, model, &optimizer, step,
        {{"model", "gpt"}, {"config", cfg.to_json()}, {"vocab", corpus.vocab.to_utf8()}});
  };

  // --- training loop ------------------------------------------------------------------
  MetricsWriter metrics(opt.out + "/metrics.jsonl", opt.resume);
  int64_t eval_every = opt.eval_every > 0 ? opt.eval_every : std::max<int64_t>(1, total / 10);
  Prefetcher loader(
      [&](int64_t s) { return text_batch(corpus.train, batch, cfg.context, opt.seed, s); }, step);
  ProgressLine progress(step, total, "tok");
  install_stop_handler();
  RunSummary summary;
  summary.best_metric = INFINITY;
  auto t_start = std::chrono::steady_clock::now();
  int64_t first_step = step;
  while (step < total) {
    Batch b = loader.next();
    optimizer.set_lr(schedule.lr_at(step));
    Tensor loss = cross_entropy(model(b.inputs.to(device)), b.targets.to(device));
    optimizer.zero_grad();
    loss.backward();
    double grad_norm = clip_grad_norm(model.parameters(), opt.grad_clip);
    optimizer.step();
    ++step;
    double l = loss.item();
    std::vector<double> norms;
    for (auto& blk : model.blocks()) norms.push_back(blk->attn->stats().a_frob_sqrt_n());
    metrics.write({{"step", step},
                   {"loss", l},
                   {"lr", schedule.lr_at(step - 1)},
                   {"grad_norm", grad_norm},
                   {"a_frob_sqrt_n", norms}});
    progress.update(step, l, batch * cfg.context);
    if (step % eval_every == 0 || step == total) {
      double vl = validation_loss(model, corpus.val, batch, 8);
      metrics.write({{"step", step}, {"val_loss", vl}});
      summary.best_metric = std::min(summary.best_metric, vl);
      summary.final_metric = vl;
    }
    if (opt.ckpt_every > 0 && step % opt.ckpt_every == 0) save();
    if (stop_requested()) {
      progress.finish();
      save();
      std::printf("interrupted at step %lld: checkpoint saved to %s (continue with --resume)\n",
                  (long long)step, ckpt_path.c_str());
      summary.steps = step;
      return summary;
    }
  }
  progress.finish();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  save();

  // --- results ------------------------------------------------------------------------
  summary.steps = step;
  summary.ms_per_step = 1e3 * seconds / std::max<int64_t>(step - first_step, 1);
  summary.items_per_s = static_cast<double>((step - first_step) * batch * cfg.context) / seconds;
  for (auto& blk : model.blocks())
    summary.a_frob_sqrt_n.push_back(blk->attn->stats().a_frob_sqrt_n());
  std::printf("validation loss %.4f nats/char (best %.4f), %.1f ms/step, %.0f tok/s\n",
              summary.final_metric, summary.best_metric, summary.ms_per_step, summary.items_per_s);
  if (!opt.quiet) {
    Generator gen(opt.seed);
    auto prompt = corpus.vocab.encode(utf8_decode("\n"));
    std::printf("\nsample (temperature 0.8, top-k 20):\n%s\n",
                corpus.vocab.decode(model.generate(prompt, 300, 0.8, 20, gen)).c_str());
    write_curves(opt.out);
  }
  return summary;
}

}  // namespace pg::tools
