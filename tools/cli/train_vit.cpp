// Trains a Vision Transformer on Fashion-MNIST (or any MNIST-layout directory).
// Read top to bottom: it is also the worked example of polygrad's API.
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "distributed/data_parallel.h"
#include "distributed/dist.h"
#include "models/vit.h"
#include "nn/checkpoint.h"
#include "nn/data_loader.h"
#include "nn/mnist.h"
#include "nn/optim.h"
#include "polygrad.h"
#include "tools/cli/checkpoint_fields.h"
#include "tools/cli/train_common.h"
#include "tools/cli/train_programs.h"
#include "tools/cli/train_run.h"
#include "tools/cli/trainer.h"

namespace pg::tools {

namespace {

const char* kFashionClasses[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

// A grey image as text: two pixel rows per line, brightness as a character ramp.
std::vector<std::string> draw_image(const Tensor& img) {
  static const char* ramp = " .:-=+*#%@";
  auto px = img.to_vector<float>();
  int64_t h = img.size(0), w = img.size(1);
  std::vector<std::string> lines;
  for (int64_t r = 0; r + 1 < h; r += 2) {
    std::string line;
    for (int64_t c = 0; c < w; ++c) {
      float v = 0.5f * (px[r * w + c] + px[(r + 1) * w + c]);
      line += ramp[std::min(9, static_cast<int>(v * 10))];
    }
    lines.push_back(line);
  }
  return lines;
}

void show_results(const ImageSet& test, const EvalResult& r, int64_t classes) {
  auto truth = test.labels.to_vector<int64_t>();
  std::vector<int64_t> hit(classes, 0), total(classes, 0);
  for (size_t i = 0; i < truth.size(); ++i) {
    ++total[truth[i]];
    hit[truth[i]] += r.predictions[i] == truth[i];
  }
  std::printf("\nper-class test accuracy\n  %-12s %8s %8s\n", "class", "acc", "images");
  for (int64_t c = 0; c < classes; ++c)
    std::printf(
        "  %-12s %7.1f%% %8lld\n", classes == 10 ? kFashionClasses[c] : std::to_string(c).c_str(),
        100.0 * static_cast<double>(hit[c]) / std::max<int64_t>(total[c], 1), (long long)total[c]);
  // Six test images side by side, with the predicted and the true label.
  const int64_t shown = 6, stride = static_cast<int64_t>(truth.size()) / shown;
  std::vector<std::vector<std::string>> pics;
  for (int64_t k = 0; k < shown; ++k) pics.push_back(draw_image(test.images.select(0, k * stride)));
  std::printf("\n");
  for (size_t line = 0; line < pics[0].size(); ++line) {
    for (auto& p : pics) std::printf("%s  ", p[line].c_str());
    std::printf("\n");
  }
  auto name = [&](int64_t c) {
    return classes == 10 ? std::string(kFashionClasses[c]) : std::to_string(c);
  };
  for (int64_t k = 0; k < shown; ++k) {
    int64_t i = k * stride;
    std::string label = (r.predictions[i] == truth[i] ? "ok " : "XX ") + name(r.predictions[i]);
    std::printf("%-30s", label.c_str());
  }
  std::printf("\n");
  for (int64_t k = 0; k < shown; ++k)
    std::printf("%-30s", ("true: " + name(truth[k * stride])).c_str());
  std::printf("\n");
}

}  // namespace

// Loss and accuracy over a whole split, in batches of 500, without recording a graph. Under
// mpirun the ranks share the batches (batch i on rank i mod N): each image's logits are those of
// a single process, and the sums and predictions are combined.
EvalResult evaluate(Vit& model, const ImageSet& split) {
  NoGradGuard no_grad;
  model.eval();
  const Device device = model.parameters().front().device();
  const int64_t n = split.images.size(0), bs = 500;
  const int64_t h = split.images.size(1), w = split.images.size(2);
  std::vector<double> sums{0, 0};  // loss, correct
  Tensor predictions = zeros({n}, {DType::I64});
  int64_t* pred_out = predictions.data<int64_t>();
  for (int64_t i = bs * dist::rank(); i < n; i += bs * dist::world_size()) {
    int64_t m = std::min(bs, n - i);
    Tensor x = split.images.narrow(0, i, m).reshape({m, 1, h, w}).to(device);
    Tensor y = split.labels.narrow(0, i, m).to(device);
    Tensor logits = model(x);
    sums[0] += cross_entropy(logits, y).item() * static_cast<double>(m);
    auto pred = argmax(logits, 1).to_vector<int64_t>();
    auto truth = y.to_vector<int64_t>();
    for (int64_t j = 0; j < m; ++j) {
      sums[1] += pred[j] == truth[j];
      pred_out[i + j] = pred[j];
    }
  }
  dist::all_reduce(sums);
  dist::all_reduce({predictions});  // each image's prediction comes from one rank, zeros elsewhere
  model.train();
  EvalResult r;
  r.loss = sums[0] / static_cast<double>(n);
  r.accuracy = sums[1] / static_cast<double>(n);
  r.predictions = predictions.to_vector<int64_t>();
  return r;
}

RunSummary train_vit(const TrainOptions& opt, VitConfig cfg) {
  PG_CHECK(opt.glob.empty(), "train vit",
           "--glob applies to text (train gpt); --data names an MNIST-layout directory");
  RunSetup setup(opt);  // threads, matmul precision and OUT/, for the whole run
  const std::string& ckpt_path = setup.checkpoint_path();

  // --- data ----------------------------------------------------------------------------
  MnistData data = load_mnist(opt.data.empty() ? kFashionMnistDir : opt.data);
  cfg.image_size = data.train.images.size(1);
  cfg.channels = 1;
  cfg.attn = opt.attn;
  if (opt.normalize && !opt.resume) {  // in the config: eval and checkpoints see the same pixels
    // One pass in double over the f32 pixels, without a converted copy of the training set.
    const float* px = data.train.images.data<float>();
    const int64_t n = data.train.images.numel();
    double sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < n; ++i) sum += px[i], sum_sq += static_cast<double>(px[i]) * px[i];
    cfg.input_mean = sum / static_cast<double>(n);
    cfg.input_std = std::sqrt(sum_sq / static_cast<double>(n) - cfg.input_mean * cfg.input_mean);
  }
  int64_t batch = opt.batch > 0 ? opt.batch : 128;
  ImageBatcher batcher(data.train, batch, opt.seed, ImageAugment{opt.flip, opt.shift});
  const int64_t requested =
      opt.steps > 0 ? opt.steps
                    : static_cast<int64_t>(
                          std::ceil((opt.epochs > 0 ? opt.epochs : 1) * batcher.steps_per_epoch()));

  // --- model and optimizer --------------------------------------------------------------
  manual_seed(opt.seed);
  Checkpoint resumed;
  if (opt.resume) {
    resumed = load_checkpoint(ckpt_path);
    cfg = vit_config(resumed);  // every field checked, naming the file
    check_image_size(resumed, cfg, data.train);
  }
  const RunLength length =
      run_length(requested, opt.steps > 0 || opt.epochs > 0, opt.resume ? &resumed : nullptr);
  const int64_t total = length.stop;
  cfg.check("ViT");            // before the memory estimate, which trusts the sizes
  check_batch_divides(batch);  // under mpirun each process takes batch / N images
  // A lower bound per token: each block's MLP activations (at least 2 bytes each).
  check_step_memory(batch / dist::world_size(), cfg.patches() + 1,
                    static_cast<double>(cfg.layers * cfg.mlp_ratio * cfg.dim) * 2,
                    parse_device(opt.device));
  Vit model(cfg);
  use_attention_path(model.blocks(), opt);
  const Device device = parse_device(opt.device, dist::local_rank());
  model.to(device);
  const double lr = opt.lr > 0 ? opt.lr : 1e-3;
  Trainer trainer(opt, model, decay_groups(model, lr, opt.weight_decay, {"cls_token", "pos_embed"}),
                  lr, length, 0.05, opt.resume ? &resumed : nullptr);
  const int64_t first_step = trainer.first_step();
  if (dist::rank() == 0)
    std::printf(
        "ViT %s: %lld parameters, attention %s, %lld steps of %lld images (%.2f epochs), "
        "%s, %s, %s matmuls\n",
        cfg.to_json().c_str(), (long long)model.num_parameters(), cfg.attn.c_str(),
        (long long)total, (long long)batch, static_cast<double>(total) / batcher.steps_per_epoch(),
        processes_and_threads().c_str(), device.str().c_str(), opt.precision.c_str());

  // --- training loop --------------------------------------------------------------------
  Prefetcher loader([&](int64_t s) { return local_rows(batcher.batch(s)); }, first_step);
  TrainingRun run(opt, setup,
                  {.first_step = first_step,
                   .total = total,
                   .evals = 5,
                   .unit = "img",
                   .items_per_step = batch,
                   .lower_is_better = false,
                   .replicas = model.parameters()},
                  trainer.saver(ckpt_path, model, {{"model", "vit"}, {"config", cfg.to_json()}}));
  if (run.finished_before()) return run.summary();
  while (run.step() < total) {
    Batch b = loader.next();
    const BatchRows rows = dropout_rows(batch);  // masks by global row, on any process count
    const Tensor loss =
        cross_entropy(model(b.inputs.to(device)), b.targets.to(device), -100, opt.label_smoothing);
    const auto [lr_used, grad_norm] = trainer.step(loss, run.step());
    run.end_step(loss.item(), lr_used, grad_norm, attention_norms(model.blocks()));
    if (run.eval_due()) {
      EvalResult ev = evaluate(model, data.test);
      run.record_eval({{"test_loss", ev.loss}, {"test_accuracy", ev.accuracy}}, ev.accuracy);
      if (!opt.quiet && run.step() != total && dist::rank() == 0)
        std::printf("%sstep %lld: test accuracy %.2f%%, test loss %.4f\n", isatty(1) ? "\n" : "",
                    (long long)run.step(), 100 * ev.accuracy, ev.loss);
      std::fflush(stdout);
    }
    if (run.save_or_stop()) return run.summary();
  }
  RunSummary summary = run.finish(attention_norms(model.blocks()));

  // --- results --------------------------------------------------------------------------
  EvalResult final_eval = evaluate(model, data.test);
  summary.final_metric = final_eval.accuracy;
  summary.best_metric = std::max(summary.best_metric, final_eval.accuracy);
  trainer.report();
  if (dist::rank() != 0) return summary;
  std::printf("test accuracy %.2f%% (best %.2f%%), test loss %.4f, %.1f ms/step, %.0f img/s\n",
              100 * final_eval.accuracy, 100 * summary.best_metric, final_eval.loss,
              summary.ms_per_step, summary.items_per_s);
  if (!opt.quiet) {
    show_results(data.test, final_eval, cfg.classes);
    write_curves(opt.out);
  }
  return summary;
}

}  // namespace pg::tools
