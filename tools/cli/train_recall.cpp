// Trains a small causal transformer on multi-query associative recall (nn/recall.h): the loss
// and the accuracy count only the query positions, where the model must name the value that
// followed the same key earlier in the sequence.
#include <cstdio>

#include "autograd/grad_mode.h"
#include "distributed/data_parallel.h"
#include "distributed/dist.h"
#include "models/gpt.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/recall.h"
#include "polygrad.h"
#include "tools/cli/checkpoint_fields.h"
#include "tools/cli/train_programs.h"
#include "tools/cli/train_run.h"
#include "tools/cli/trainer.h"

namespace pg::tools {

namespace {

// The flattened positions of `targets` [B, T] that carry a query, and their values.
std::pair<Tensor, Tensor> query_rows(const Tensor& targets) {
  const std::vector<int64_t> all = targets.contiguous().to_vector<int64_t>();
  std::vector<int64_t> rows, values;
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] != kRecallNoTarget) {
      rows.push_back(static_cast<int64_t>(i));
      values.push_back(all[i]);
    }
  const int64_t n = static_cast<int64_t>(rows.size());
  return {from_vector(rows, {n}), from_vector(values, {n})};
}

}  // namespace

RecallResult evaluate_recall(Gpt& model, const RecallTask& task, int64_t sequences, int64_t batch) {
  NoGradGuard no_grad;
  model.eval();
  const Device device = model.parameters().front().device();
  const int64_t batches = (sequences + batch - 1) / batch;
  std::vector<double> totals{0, 0, 0};  // loss * queries, correct, queries
  for (int64_t i = dist::rank(); i < batches; i += dist::world_size()) {
    const int64_t first = i * batch, count = std::min(batch, sequences - first);
    Batch b = recall_batch(task, kRecallTestSeed, first, count);
    auto [rows, values] = query_rows(b.targets);
    Tensor logits = model.forward(b.inputs.to(device), rows.to(device));
    const double n = static_cast<double>(rows.numel());
    totals[0] += cross_entropy(logits, values.to(device)).item() * n;
    const std::vector<int64_t> guess = argmax(logits, -1).to(Device::cpu()).to_vector<int64_t>();
    const std::vector<int64_t> truth = values.to_vector<int64_t>();
    for (size_t q = 0; q < guess.size(); ++q) totals[1] += guess[q] == truth[q];
    totals[2] += n;
  }
  dist::all_reduce(totals);
  model.train();
  return {totals[0] / totals[2], totals[1] / totals[2]};
}

RunSummary train_recall(const TrainOptions& opt, GptConfig cfg, RecallTask task) {
  PG_CHECK(opt.data.empty() && opt.glob.empty(), "train recall",
           "--data and --glob do not apply: the task generates its sequences (size them with "
           "--vocab, --context and --pairs)");
  RunSetup setup(opt);
  const std::string& ckpt_path = setup.checkpoint_path();
  Checkpoint resumed;
  if (opt.resume) {
    resumed = load_checkpoint(ckpt_path);
    std::tie(cfg, task) = recall_config(resumed);  // every field checked, naming the file
  }
  cfg.attn = opt.resume ? cfg.attn : opt.attn;
  cfg.vocab_size = task.vocab;
  cfg.context = task.context;
  task.check("recall task");
  const int64_t batch = opt.batch > 0 ? opt.batch : 32;
  const RunLength length =
      run_length(opt.steps > 0 ? opt.steps : 2000, opt.steps > 0, opt.resume ? &resumed : nullptr);
  cfg.check("recall model");
  check_batch_divides(batch);
  check_step_memory(batch / dist::world_size(), cfg.context,
                    static_cast<double>(cfg.layers * cfg.mlp_ratio * cfg.dim) * 2,
                    parse_device(opt.device));

  manual_seed(opt.seed);
  Gpt model(cfg);
  use_attention_path(model.blocks(), opt);
  const Device device = parse_device(opt.device, dist::local_rank());
  model.to(device);
  const double lr = opt.lr > 0 ? opt.lr : 3e-3;
  Trainer trainer(opt, model, decay_groups(model, lr, opt.weight_decay), lr, length, 0.1,
                  opt.resume ? &resumed : nullptr);
  const int64_t first_step = trainer.first_step();
  if (dist::rank() == 0)
    std::printf("recall %s, model %s: %lld parameters, %lld steps of %lld sequences, %s, %s\n",
                task.to_json().c_str(), cfg.to_json().c_str(), (long long)model.num_parameters(),
                (long long)length.stop, (long long)batch, processes_and_threads().c_str(),
                device.str().c_str());

  Prefetcher loader(
      [&](int64_t s) { return local_rows(recall_batch(task, opt.seed, s * batch, batch)); },
      first_step);
  TrainingRun run(
      opt, setup,
      {.first_step = first_step,
       .total = length.stop,
       .evals = 10,
       .unit = "seq",
       .items_per_step = batch,
       .lower_is_better = false,
       .replicas = model.parameters()},
      trainer.saver(ckpt_path, model,
                    {{"model", "recall"}, {"config", cfg.to_json()}, {"task", task.to_json()}}));
  if (run.finished_before()) return run.summary();
  while (run.step() < length.stop) {
    Batch b = loader.next();
    const BatchRows rows_for_dropout = dropout_rows(batch);
    auto [rows, values] = query_rows(b.targets);
    const Tensor loss =
        cross_entropy(model.forward(b.inputs.to(device), rows.to(device)), values.to(device));
    const auto [lr_used, grad_norm] = trainer.step(loss, run.step());
    run.end_step(loss.item(), lr_used, grad_norm, attention_norms(model.blocks()));
    if (run.eval_due()) {
      const RecallResult r = evaluate_recall(model, task, kRecallTestSequences, batch);
      run.record_eval({{"test_loss", r.loss}, {"test_accuracy", r.accuracy}}, r.accuracy);
    }
    if (run.save_or_stop()) return run.summary();
  }
  RunSummary summary = run.finish(attention_norms(model.blocks()));
  trainer.report();
  if (dist::rank() == 0) {
    std::printf("recall accuracy %.2f%% (best %.2f%%) on %lld test sequences, %.1f ms/step\n",
                100 * summary.final_metric, 100 * summary.best_metric,
                (long long)kRecallTestSequences, summary.ms_per_step);
    if (!opt.quiet) write_curves(opt.out);
  }
  return summary;
}

}  // namespace pg::tools
