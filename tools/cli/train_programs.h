// The training programs behind `polygrad train gpt|vit` and `polygrad compare`.
#pragma once
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/mnist.h"
#include "tools/cli/train_options.h"

namespace pg::tools {

/// Test-split loss, accuracy and per-image predictions of a ViT (no graph recorded).
struct EvalResult {
  double loss = 0, accuracy = 0;
  std::vector<int64_t> predictions;
};
/// Evaluates `model` on a whole split in batches of 500.
EvalResult evaluate(Vit& model, const ImageSet& split);
/// Mean validation loss in nats per character over `batches` fixed windows of `val`.
double validation_loss(Gpt& model, const std::vector<int32_t>& val, int64_t batch, int64_t batches);

/// Trains (or resumes) a ViT; prints progress and results, writes OUT/.
RunSummary train_vit(const TrainOptions& options, VitConfig config);
/// Trains (or resumes) a GPT on a text corpus; prints progress, a sample, writes OUT/.
RunSummary train_gpt(const TrainOptions& options, GptConfig config);

}  // namespace pg::tools
