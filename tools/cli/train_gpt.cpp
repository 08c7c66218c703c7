// Trains a character-level GPT on a text corpus (default: Debian's fortunes).
// Read top to bottom: it is also the worked example of polygrad's API.
#include <cstdio>

#include "distributed/data_parallel.h"
#include "distributed/dist.h"
#include "models/gpt.h"
#include "nn/checkpoint.h"
#include "nn/data_loader.h"
#include "nn/optim.h"
#include "nn/text.h"
#include "polygrad.h"
#include "tools/cli/checkpoint_fields.h"
#include "tools/cli/train_common.h"
#include "tools/cli/train_programs.h"
#include "tools/cli/train_run.h"
#include "tools/cli/trainer.h"

namespace pg::tools {

std::vector<std::pair<int64_t, int64_t>> position_buckets(int64_t context) {
  std::vector<std::pair<int64_t, int64_t>> buckets;
  for (int64_t first = 0, end = 128; first < context; first = end, end *= 4)
    buckets.emplace_back(first, std::min(end, context) - 1);
  return buckets;
}

TextLoss validation_loss(Gpt& model, const std::vector<int32_t>& val, int64_t batch,
                         int64_t batches) {
  NoGradGuard no_grad;
  model.eval();
  const Device device = model.parameters().front().device();
  const auto buckets = position_buckets(model.config().context);
  std::vector<double> total(1 + buckets.size(), 0.0);  // the mean, then each bucket's
  for (int64_t i = dist::rank(); i < batches; i += dist::world_size()) {
    Batch b = text_batch(val, batch, model.config().context, 0xe7a1, i);
    const Tensor logits = model(b.inputs.to(device)), targets = b.targets.to(device);
    const double window = cross_entropy(logits, targets).item();
    total[0] += window;
    for (size_t k = 0; k < buckets.size(); ++k) {
      const int64_t first = buckets[k].first, count = buckets[k].second - first + 1;
      total[k + 1] += buckets.size() == 1 ? window  // the same positions: no second pass
                                          : cross_entropy(logits.narrow(1, first, count),
                                                          targets.narrow(1, first, count))
                                                .item();
    }
  }
  dist::all_reduce(total);
  model.train();
  TextLoss loss{total[0] / static_cast<double>(batches), {}};
  for (size_t k = 0; k < buckets.size(); ++k)
    loss.by_position.push_back(total[k + 1] / static_cast<double>(batches));
  return loss;
}

RunSummary train_gpt(const TrainOptions& opt, GptConfig cfg) {
  RunSetup setup(opt);  // threads, matmul precision and OUT/, for the whole run
  const std::string& ckpt_path = setup.checkpoint_path();

  // --- data: characters of the corpus, 90% train / 10% validation ---------------------
  TextCorpus corpus = load_corpus(opt.data, opt.glob);
  Checkpoint resumed;
  if (opt.resume) {
    resumed = load_checkpoint(ckpt_path);
    cfg = gpt_config(resumed);  // every field checked, naming the file
    PG_CHECK(gpt_vocab(resumed, cfg).to_utf8() == corpus.vocab.to_utf8(), ckpt_path,
             "was trained on a different text (vocabulary differs)");
  }
  cfg.vocab_size = corpus.vocab.size();
  cfg.attn = opt.resume ? cfg.attn : opt.attn;
  int64_t batch = opt.batch > 0 ? opt.batch : 32;
  const RunLength length =
      run_length(opt.steps > 0 ? opt.steps : 2000, opt.steps > 0, opt.resume ? &resumed : nullptr);
  const int64_t total = length.stop;
  cfg.check("GPT");            // before the memory estimate, which trusts the sizes
  check_batch_divides(batch);  // under mpirun each process takes batch / N rows
  // A lower bound per token: each block's MLP activations (at least 2 bytes each, bf16 runs
  // included) and the f32 logits.
  check_step_memory(batch / dist::world_size(), cfg.context,
                    static_cast<double>(cfg.layers * cfg.mlp_ratio * cfg.dim) * 2 +
                        static_cast<double>(cfg.vocab_size) * 4,
                    parse_device(opt.device));

  // --- model and optimizer ------------------------------------------------------------
  manual_seed(opt.seed);
  Gpt model(cfg);
  use_attention_path(model.blocks(), opt);
  const Device device = parse_device(opt.device, dist::local_rank());
  model.to(device);
  const double lr = opt.lr > 0 ? opt.lr : 2e-3;
  Trainer trainer(opt, model, decay_groups(model, lr, opt.weight_decay), lr, length, 0.1,
                  opt.resume ? &resumed : nullptr);
  const int64_t first_step = trainer.first_step();
  if (dist::rank() == 0)
    std::printf(
        "GPT %s: %lld parameters, %zu train / %zu val characters, %lld steps of %lldx%lld "
        "tokens, %s, %s, %s matmuls\n",
        cfg.to_json().c_str(), (long long)model.num_parameters(), corpus.train.size(),
        corpus.val.size(), (long long)total, (long long)batch, (long long)cfg.context,
        processes_and_threads().c_str(), device.str().c_str(), opt.precision.c_str());

  // --- training loop ------------------------------------------------------------------
  Prefetcher loader(
      [&](int64_t s) {
        return local_rows(text_batch(corpus.train, batch, cfg.context, opt.seed, s));
      },
      first_step);
  TrainingRun run(
      opt, setup,
      {.first_step = first_step,
       .total = total,
       .evals = 10,
       .unit = "tok",
       .items_per_step = batch * cfg.context,
       .lower_is_better = true,
       .replicas = model.parameters()},
      trainer.saver(
          ckpt_path, model,
          {{"model", "gpt"}, {"config", cfg.to_json()}, {"vocab", corpus.vocab.to_utf8()}}));
  if (run.finished_before()) return run.summary();
  while (run.step() < total) {
    Batch b = loader.next();
    const BatchRows rows = dropout_rows(batch);  // masks by global row, on any process count
    const Tensor loss = cross_entropy(model(b.inputs.to(device)), b.targets.to(device));
    const auto [lr_used, grad_norm] = trainer.step(loss, run.step());
    run.end_step(loss.item(), lr_used, grad_norm, attention_norms(model.blocks()));
    if (run.eval_due()) {
      const TextLoss vl = validation_loss(model, corpus.val, batch, 8);
      run.record_eval({{"val_loss", vl.mean}, {"val_loss_by_position", vl.by_position}}, vl.mean);
    }
    if (run.save_or_stop()) return run.summary();
  }
  RunSummary summary = run.finish(attention_norms(model.blocks()));

  // --- results ------------------------------------------------------------------------
  trainer.report();
  if (dist::rank() != 0) return summary;
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
