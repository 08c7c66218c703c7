// The training programs behind `polygrad train gpt|vit` and `polygrad compare`.
#pragma once
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/mnist.h"
#include "nn/recall.h"
#include "tools/cli/train_options.h"

namespace pg::tools {

/// Test-split loss, accuracy and per-image predictions of a ViT (no graph recorded).
struct EvalResult {
  double loss = 0, accuracy = 0;
  std::vector<int64_t> predictions;
};
/// Evaluates `model` on a whole split in batches of 500.
EvalResult evaluate(Vit& model, const ImageSet& split);
/// Position buckets of a context of T tokens: [0, 127], [128, 511], [512, 2047], ... (each 4
/// times the last's end), the last one ending at T - 1.
std::vector<std::pair<int64_t, int64_t>> position_buckets(int64_t context);
/// A GPT's validation loss in nats per character: the mean over every position of the windows,
/// and the mean over each position bucket (position_buckets(context)): how much a model uses
/// distant context shows as a lower loss at later positions.
struct TextLoss {
  double mean = 0;
  std::vector<double> by_position;
};
/// The loss over `batches` fixed windows of `val`. Under mpirun the ranks share the batches
/// (batch i on rank i mod N), so each batch's loss is the one a single process computes.
TextLoss validation_loss(Gpt& model, const std::vector<int32_t>& val, int64_t batch,
                         int64_t batches);

/// Loss over the query positions and the share of queries whose most likely token is the value.
struct RecallResult {
  double loss = 0, accuracy = 0;
};
/// Sequences of a recall run's test set (the stream kRecallTestSeed, the same for every run).
inline constexpr int64_t kRecallTestSequences = 256;
/// Evaluates `model` on the first `sequences` test sequences of `task`, `batch` at a time
/// (under mpirun the ranks share the batches).
RecallResult evaluate_recall(Gpt& model, const RecallTask& task, int64_t sequences, int64_t batch);

/// Trains (or resumes) a ViT; prints progress and results, writes OUT/.
RunSummary train_vit(const TrainOptions& options, VitConfig config);
/// Trains (or resumes) a GPT on a text corpus; prints progress, a sample, writes OUT/.
RunSummary train_gpt(const TrainOptions& options, GptConfig config);
/// Trains (or resumes) a causal transformer on associative recall (task.vocab and task.context
/// set the model's); prints progress and the test accuracy, writes OUT/.
RunSummary train_recall(const TrainOptions& options, GptConfig config, RecallTask task);

}  // namespace pg::tools
