// The run skeleton the training programs share: setup, per-step records, evaluation and
// checkpoint cadence, Ctrl-C, timing and the summary. Each program writes its own loop body
// (batch, forward, loss, backward, optimizer, evaluation) and calls these around it.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "autograd/batch_rows.h"
#include "distributed/data_parallel.h"
#include "distributed/distributed_optimizer.h"
#include "kernels/matmul_precision.h"
#include "nn/attention.h"
#include "nn/checkpoint.h"
#include "nn/data_loader.h"
#include "nn/lr_schedule.h"
#include "tools/cli/run_lock.h"
#include "tools/cli/step_profile.h"
#include "tools/cli/train_common.h"
#include "tools/cli/train_options.h"

namespace pg::tools {

/// What a run sets before anything else and keeps until it returns: the matmul precision, the
/// thread count and the run directory OUT/, locked (rank 0) so that no other run writes there.
class RunSetup {
 public:
  explicit RunSetup(const TrainOptions& opt);
  /// OUT/checkpoint.safetensors: where the run saves and --resume reads.
  const std::string& checkpoint_path() const { return checkpoint_path_; }

 private:
  MatmulPrecisionGuard precision_;
  std::string checkpoint_path_;
  std::optional<RunLock> lock_;
};

/// How long a run is: the learning-rate schedule's length and the step this invocation stops at.
/// A new run's schedule is `requested` steps (from --steps or --epochs, else the program's
/// default). A resumed run keeps the schedule its checkpoint records ('schedule_steps'), so the
/// learning rate of every step is the one the uninterrupted run has; there `requested_given`
/// (--steps or --epochs on the command line) only moves where this invocation stops, and a stop
/// before the checkpoint's step is a pg::Error naming both.
struct RunLength {
  int64_t schedule = 0;  ///< steps of the warm-up + cosine schedule
  int64_t stop = 0;      ///< steps done when this invocation ends
};
RunLength run_length(int64_t requested, bool requested_given, const Checkpoint* resumed);

/// The warm-up + cosine learning rate of a run: from 0 to `lr` over --warmup steps (5% of the
/// schedule by default), then down to `lr * floor` at the schedule's end.
WarmupCosineLR run_schedule(const TrainOptions& opt, double lr, const RunLength& length,
                            double floor);

/// Refuses a CPU run (pg::Error naming --batch) whose one step cannot fit in this machine's
/// memory: `batch` sequences of `tokens` tokens, each needing at least `bytes_per_token` bytes
/// of activations. A GPU run meets the device allocator's own error instead.
void check_step_memory(int64_t batch, int64_t tokens, double bytes_per_token, Device device);

/// What the skeleton needs to know of a program's run.
struct RunPlan {
  int64_t first_step = 0;        ///< steps done before this run (a resumed run)
  int64_t total = 0;             ///< steps done at its end
  int64_t evals = 10;            ///< evaluations per run unless --eval-every says how often
  std::string unit;              ///< what the throughput counts: "tok", "img"
  int64_t items_per_step = 0;    ///< units one step processes
  bool lower_is_better = true;   ///< of the evaluation metric: a loss (true), an accuracy (false)
  std::vector<Tensor> replicas;  ///< under mpirun: checked identical on every rank at each save
};

/// The gradient buckets and overlap the flags ask for.
dist::DataParallelOptions data_parallel_options(const TrainOptions& opt);
/// "2 threads", or under mpirun "2 processes x 1 thread".
std::string processes_and_threads();
/// The training programs' optimizer: AdamW over `groups`.
std::unique_ptr<Optimizer> make_adamw(std::vector<ParamGroup> groups);
/// Under mpirun (call on every rank), rank 0 prints the gradient all-reduce's cost per step
/// (buckets, time inside the collectives and the part of it backward did not hide) and each
/// rank's optimizer state and peak memory.
void report_data_parallel(const dist::DataParallel& replicas,
                          const dist::DistributedOptimizer& optimizer, bool overlap);
/// restore_run for --resume; under mpirun, where every rank read OUT/checkpoint.safetensors on
/// its own, first the same error on every rank unless all read the same step, weights,
/// optimizer state and generator state (a stale copy on one machine would resume with other
/// moments and another schedule position).
void resume_from(const Checkpoint& ck, Module& model, RestorableOptimizer& optimizer);
/// Refuses (pg::Error naming --batch) a global batch the processes cannot share equally.
void check_batch_divides(int64_t batch);
/// This process's rows [rB/N, (r+1)B/N) of global batch B, for N processes (all in a world of
/// one): every rank slices the same global batch, so the data is that of one process.
Batch local_rows(const Batch& global);
/// Dropout's randomness for one step on this process's rows of a global batch of `batch`: a key
/// from the default generator (the same draw on every rank) and the rank's first row, so that
/// the masks are those one process draws for the whole batch.
BatchRows dropout_rows(int64_t batch);

/// The bookkeeping around a training loop that the program writes itself. Per step, in order:
/// end_step() after the optimizer step, record_eval() when eval_due(), then save_or_stop().
/// Under mpirun every rank runs it: rank 0 alone prints, writes metrics and saves (then all
/// wait for it), and the ranks agree on the reported loss and on stopping.
class TrainingRun {
 public:
  /// Opens OUT/metrics.jsonl (when resuming: keeps the lines up to the checkpoint's step, drops
  /// those a killed run wrote after it, and appends), starts the progress line, the Ctrl-C
  /// handler and the clocks; `save(step)`, called on every rank (a sharded optimizer gathers
  /// its state), writes the program's checkpoint on rank 0.
  TrainingRun(const TrainOptions& opt, const RunSetup& setup, RunPlan plan,
              std::function<void(int64_t step)> save);
  /// Optimizer steps finished so far (first_step at the start).
  int64_t step() const { return step_; }
  /// True for a --resume of a run that had already reached its last step (compare continuing
  /// a comparison), after saying so on rank 0: the program then returns summary().
  bool finished_before() const;
  /// Counts a finished optimizer step and records it: a metrics line with its loss (this
  /// rank's, averaged over the ranks), seconds since the run started ("time_s") and of training
  /// alone ("train_s": without evaluations and checkpoint saves), learning rate, gradient norm and
  /// each layer's ||A||_F/sqrt(N), and the progress line. The step's time runs from the end of
  /// the previous save_or_stop().
  void end_step(double loss, double lr, double grad_norm, const std::vector<double>& a_frob_sqrt_n);
  /// True when the step just finished is due an evaluation: every eval_every steps, and the last.
  bool eval_due() const;
  /// Writes an evaluation's metrics line (with the step and "eval_s", the seconds since
  /// end_step(), added) and keeps the last and the best `metric` in the summary.
  void record_eval(nlohmann::json record, double metric);
  /// Saves every --ckpt-every steps. After Ctrl-C it also ends the progress line, saves, says
  /// how to resume and returns true: the program then returns summary().
  bool save_or_stop();
  /// The summary so far: evaluation metrics and, after Ctrl-C, the steps done.
  const RunSummary& summary() const { return summary_; }
  /// Ends the progress line, stops the clock, saves, and returns the summary with the timing
  /// (training time per step and throughput without evaluations; evaluation seconds apart) and
  /// each layer's final ||A||_F/sqrt(N). With --profile, rank 0 prints the step profile and
  /// writes it to OUT/profile.md.
  RunSummary finish(std::vector<double> a_frob_sqrt_n);

 private:
  void save(int64_t step);  // rank 0 writes, every rank waits for it

  RunPlan plan_;
  std::function<void(int64_t)> save_;
  std::string checkpoint_path_;
  int64_t ckpt_every_, eval_every_, step_;
  bool lead_;          // rank 0: the one that prints and writes
  bool stop_ = false;  // some rank saw Ctrl-C
  std::optional<MetricsWriter> metrics_;
  std::optional<ProgressLine> progress_;
  std::optional<StepProfile> profile_;  // --profile
  std::string out_;
  RunSummary summary_;
  std::chrono::steady_clock::time_point start_, step_start_, step_end_;
  double train_seconds_ = 0;  // inside steps: from save_or_stop() (or the start) to end_step()
};

/// Sets every block's attention implementation from --attn-path; "linear" with an activation
/// that has no linear form is a pg::Error naming both flags.
void use_attention_path(const std::vector<std::shared_ptr<TransformerBlock>>& blocks,
                        const TrainOptions& opt);
/// Each block's ||A||_F/sqrt(N), from the attention's last forward (NaN on the linear path,
/// which never forms A).
std::vector<double> attention_norms(const std::vector<std::shared_ptr<TransformerBlock>>& blocks);

}  // namespace pg::tools
