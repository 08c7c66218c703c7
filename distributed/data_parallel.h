// DataParallel: one model replica per process, gradients averaged across processes in buckets
// while backward runs (the role of PyTorch's DistributedDataParallel).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "autograd/grad_ready.h"
#include "distributed/dist.h"
#include "nn/module.h"

namespace pg::dist {

/// How gradients are grouped and when they are sent.
struct DataParallelOptions {
  /// Largest bucket: gradients are copied into flat buffers of about this size and each buffer
  /// is all-reduced as one message.
  int64_t bucket_bytes = int64_t(4) << 20;
  /// The first bucket (the last layers' gradients, ready first) is smaller, so that
  /// communication starts early in backward.
  int64_t first_bucket_bytes = int64_t(1) << 20;
  /// All-reduce each bucket on the communication thread as soon as backward has filled it;
  /// false: all of them after backward, in sync_gradients() (for measuring the overlap).
  bool overlap = true;
  /// Called with a bucket's index on the thread that sends it, just before its all-reduce
  /// (instrumentation: tests see when buckets go out, and inject a failure by throwing).
  std::function<void(int64_t bucket)> before_all_reduce;
  /// ZeRO stage: 0, every rank holds the whole optimizer state; 1, each rank holds the state of
  /// its shard of the parameters (about 1/N of it): buckets are reduce-scattered, a
  /// DistributedOptimizer updates the shard and all-gathers the parameters.
  int zero = 0;
};

class DistributedOptimizer;

/// Keeps a Module's replicas identical across the processes of a job. Construction (on every
/// rank, collectively) checks that every rank built the same model and broadcasts rank 0's
/// parameters and buffers. Then, per step: backward() on each rank's own slice of the batch,
/// sync_gradients(), and every rank holds the mean gradient (bit-identical on all ranks), so
/// gradient clipping and the optimizer step stay identical too. In a world of one it does
/// nothing. After sync_gradients() a parameter's .grad views a bucket until the next backward.
///
/// The buckets travel over a communicator of their own (a dist::Channel), so the program's own
/// collectives (all-reducing a loss to log it) may come anywhere, between backward and
/// sync_gradients() included. A failed all-reduce stops the communication thread: no later
/// bucket is sent (it could pair with a different bucket on another rank), sync_gradients()
/// rethrows the failure, and every later call refuses to run; the job must end.
///
/// With `zero = 1` (and several processes) each rank receives only its shard of the mean
/// gradient: the parameters' .grad stay undefined after sync_gradients(), and a
/// DistributedOptimizer (required) clips, updates and all-gathers.
class DataParallel {
 public:
  explicit DataParallel(Module& module, DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// Waits for every bucket's all-reduce (sending, after backward, those whose parameters got
  /// no gradient: as zeros) and sets each parameter's .grad to the mean over ranks. A
  /// parameter no rank computed a gradient for keeps an undefined .grad on every rank.
  void sync_gradients();

  /// While alive, backward passes only accumulate into .grad locally (gradient accumulation):
  /// the backward after it sends the accumulated gradients.
  class NoSync {
   public:
    explicit NoSync(DataParallel& dp) : dp_(dp), was_(dp.enabled_) { dp_.enabled_ = false; }
    ~NoSync() { dp_.enabled_ = was_; }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DataParallel& dp_;
    bool was_;
  };
  /// See NoSync.
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }

  /// Time accounting, summed over sync_gradients() calls.
  struct Stats {
    int64_t syncs = 0;
    double comm_seconds = 0;     ///< inside the all-reduces
    double exposed_seconds = 0;  ///< sync_gradients() waiting: communication not hidden
  };
  const Stats& stats() const { return stats_; }
  /// Number of buckets (0 in a world of one).
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  /// True when the optimizer state is sharded over several processes (ZeRO-1).
  bool sharded() const { return options_.zero == 1 && world_size() > 1; }

 private:
  friend class DistributedOptimizer;
  struct Bucket {
    Tensor flat;  // the gradients, then one presence count per parameter
    std::vector<size_t> params;
    std::vector<int64_t> offsets;
    int64_t values = 0;  // elements before the presence counts
    int pending = 0;     // parameters not yet copied in this round
    // ZeRO-1: rank r owns values [bounds[r], bounds[r + 1]) and holds their mean in `shard`.
    std::vector<int64_t> bounds;
    Tensor shard;
    std::vector<int64_t> counts() const;  // elements per rank
  };
  /// ZeRO-1: this rank's part of a parameter, flattened: elements [begin, begin + count).
  struct Piece {
    int64_t begin = 0, count = 0;
    Tensor grad;  // its mean gradient after sync_gradients(); undefined when no rank had one
  };
  void make_shards();  // ZeRO-1: cuts each bucket into the ranks' pieces
  /// ZeRO-1: elements of parameter `param` each rank owns.
  std::vector<int64_t> piece_counts(size_t param) const;
  /// ZeRO-1: every rank's updated pieces to every rank.
  void gather_parameters();
  void on_ready(size_t param);
  void fill(size_t param);  // copies the parameter's gradient (or zeros) into its bucket
  void communicate();       // the communication thread
  void reduce(Bucket& b, size_t index);

  std::optional<Channel> channel_;             // the buckets' communicator (several processes only)
  std::vector<Tensor> module_params_;          // in registration order
  std::vector<Tensor> params_;                 // in bucket order (reverse registration)
  std::vector<Piece> pieces_;                  // ZeRO-1, by bucket-order index
  DistributedOptimizer* optimizer_ = nullptr;  // ZeRO-1: the one that updates the shards
  bool pieces_fresh_ = false;  // ZeRO-1: sync_gradients() ran since the last gather_parameters()
  std::vector<std::pair<size_t, size_t>> where_;  // param -> (bucket, slot)
  std::vector<Bucket> buckets_;
  std::vector<GradReadyHookHandle> hooks_;
  DataParallelOptions options_;
  bool enabled_ = true;
  Stats stats_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<bool> filled_;
  size_t next_ = 0;  // next bucket to send: buckets go out in index order on every rank
  bool shutdown_ = false;
  bool broken_ = false;         // an all-reduce failed: nothing more is sent
  std::exception_ptr failure_;  // its error, until sync_gradients() rethrows it
  std::thread thread_;
};

}  // namespace pg::dist
