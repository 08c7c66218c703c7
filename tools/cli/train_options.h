// Flags shared by the training programs (parsed by tools/cli/cli_flags.cpp with CLI11).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pg::tools {

/// What a training run is asked to do.
struct TrainOptions {
  std::string attn = "softmax";    ///< attention-activation spec
  std::string attn_path = "auto";  ///< "auto", "quadratic" (fused kernel) or "linear" (poly:p)
  int64_t steps = 0;               ///< total optimizer steps (0: derive from epochs)
  double epochs = 0;               ///< ViT: passes over the training set (used when steps == 0)
  int64_t batch = 0;               ///< 0: the model's default
  double lr = 0;                   ///< 0: the model's default
  int64_t warmup = -1;             ///< warm-up steps (-1: 5% of the run)
  double weight_decay = 0.05;
  double grad_clip = 1.0;
  double label_smoothing = 0.0;  ///< ViT: mixes the one-hot target with the uniform one
  bool flip = false;             ///< ViT: random left-right mirroring of training images
  int64_t shift = 0;             ///< ViT: random translation of training images, in pixels
  bool normalize = true;         ///< ViT: standardise pixels by the training set's mean and std
  uint64_t seed = 1337;
  int threads = 0;                ///< 0: all cores
  std::string device = "cpu";     ///< "cpu" or "cuda[:N]": where the model and batches live
  std::string precision = "f32";  ///< matmul precision: "f32" or "bf16" (MatmulPrecision)
  std::string out = "out/run";    ///< run directory: metrics, checkpoints, plots
  std::string data;               ///< data path ("" = the model's default)
  std::string glob;               ///< GPT: files of the folder `data` to read, split by file
  bool resume = false;            ///< continue from OUT/checkpoint.safetensors
  int64_t eval_every = 0;         ///< 0: a few times per run
  int64_t ckpt_every = 0;         ///< 0: only at the end (and on Ctrl-C)
  bool quiet = false;             ///< no terminal drawings at the end (compare uses it)
  bool profile = false;           ///< time the kernels of every step: OUT/profile.md
  // Under `mpirun -np N`: data-parallel training (pg::dist).
  double dist_timeout = 300;  ///< seconds a collective may wait before the job ends (0: never)
  double bucket_mb = 4;       ///< gradient bucket size, in MiB
  bool overlap = true;        ///< all-reduce buckets while backward runs
  int zero = 0;               ///< ZeRO stage: 1 shards the optimizer state over the processes
};

/// What a finished run reports (compare builds its table from these).
struct RunSummary {
  double final_metric = 0;  ///< ViT: test accuracy; GPT: validation loss (nats/char)
  double best_metric = 0;
  double ms_per_step = 0;   ///< training time per step: evaluations and saves excluded
  double items_per_s = 0;   ///< training throughput, on the same time
  double eval_seconds = 0;  ///< evaluations during training, in all
  int64_t steps = 0;
  std::vector<double> a_frob_sqrt_n;  ///< per layer, at the end
};

}  // namespace pg::tools
