// What every training program builds around its model, and the optimizer step they share.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "distributed/data_parallel.h"
#include "distributed/distributed_optimizer.h"
#include "nn/checkpoint.h"
#include "nn/lr_schedule.h"
#include "tools/cli/train_options.h"
#include "tools/cli/train_run.h"

namespace pg::tools {

/// The model's data-parallel replicas (under mpirun), AdamW over `groups` (sharded with
/// --zero 1), the warm-up + cosine schedule from `lr` down to `lr * floor`, and with a
/// checkpoint to resume its weights, optimizer state and step. Build it after model.to(device):
/// the optimizer holds the parameters' handles.
class Trainer {
 public:
  Trainer(const TrainOptions& opt, Module& model, std::vector<ParamGroup> groups, double lr,
          const RunLength& length, double floor, const Checkpoint* resumed);
  /// Steps done before this run: the checkpoint's, or 0.
  int64_t first_step() const { return first_step_; }
  /// Optimizer step `step` (0-based) on `loss`: backward, the gradients averaged over the
  /// ranks and clipped to --grad-clip, then AdamW at the schedule's rate. Returns {learning
  /// rate, gradient norm before clipping}.
  std::pair<double, double> step(const Tensor& loss, int64_t step);
  /// TrainingRun's `save`: every rank gathers the optimizer state (ZeRO-1), rank 0 writes
  /// `model` to `path` with `metadata` and the schedule's length.
  std::function<void(int64_t)> saver(const std::string& path, const Module& model,
                                     std::map<std::string, std::string> metadata);
  /// Under mpirun, rank 0 prints the gradient all-reduce's cost (report_data_parallel).
  void report() const;

 private:
  double grad_clip_;
  bool overlap_;
  int64_t schedule_steps_;
  dist::DataParallel replicas_;
  dist::DistributedOptimizer optimizer_;
  WarmupCosineLR schedule_;
  int64_t first_step_;
};

}  // namespace pg::tools
