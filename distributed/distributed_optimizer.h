// DistributedOptimizer: the optimizer of a data-parallel job, whole on every rank or sharded
// over the ranks (ZeRO stage 1, as llm.c's and DeepSpeed's).
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "distributed/data_parallel.h"
#include "nn/optim.h"

namespace pg::dist {

/// Drives a data-parallel job's optimizer. Per step, after `replicas.sync_gradients()`:
/// clip_grad_norm(), then step(). With plain replicas (or one process) it is the optimizer
/// `make` builds over `groups`, on every rank. With ZeRO-1 replicas (DataParallelOptions::zero
/// = 1) `make` builds it over this rank's pieces of the parameters (flat views), so that each
/// rank keeps about 1/N of the optimizer state; step() updates the pieces and all-gathers the
/// parameters. Both give the parameters of plain data parallel bit for bit with two processes
/// (with more, MPI may add a reduce-scatter's terms in another order than an all-reduce's).
/// Construct it on every rank, after the DataParallel; one per DataParallel.
class DistributedOptimizer : public RestorableOptimizer {
 public:
  /// Builds an optimizer over parameter groups (e.g. a lambda returning a unique_ptr<AdamW>).
  using Make = std::function<std::unique_ptr<Optimizer>(std::vector<ParamGroup>)>;
  /// The parameters in `groups` must be the replicas' module's.
  DistributedOptimizer(DataParallel& replicas, std::vector<ParamGroup> groups, const Make& make);
  ~DistributedOptimizer() override;
  DistributedOptimizer(const DistributedOptimizer&) = delete;
  DistributedOptimizer& operator=(const DistributedOptimizer&) = delete;

  /// pg::clip_grad_norm over all of the module's parameters, in its registration order, on the
  /// mean gradients: the same norm (bit for bit) on every rank and as one process. Returns the
  /// norm before clipping.
  double clip_grad_norm(double max_norm);
  /// Updates the parameters with their mean gradients; under ZeRO-1 this rank's pieces, then
  /// every rank's pieces to every rank (a collective).
  void step();
  /// Clears the gradients of the parameters (and of the pieces).
  void zero_grad();
  /// Sets the learning rate of every group.
  void set_lr(double lr);
  int64_t steps() const override;
  /// The whole state in Optimizer::state_dict's format, independent of the number of processes
  /// (a checkpoint resumes on any number). A collective: under ZeRO-1 rank 0 receives it and the
  /// other ranks an empty dict; plain, every rank has it.
  StateDict state_dict() const;
  /// Checks a state dict in Optimizer::state_dict's format (as the whole optimizer would).
  void check_state_dict(const StateDict& state) const override;
  /// Loads a state dict in Optimizer::state_dict's format: under ZeRO-1 each rank takes its
  /// pieces (every rank must pass the same dict; not a collective).
  void load_state_dict(const StateDict& state) override;
  /// Bytes of optimizer state this rank holds.
  int64_t state_bytes() const;

 private:
  // Where the parameter groups[g].params[i] is: its index in the replicas' bucket order, and its
  // index in this rank's shard groups (-1: no piece here).
  struct Slot {
    size_t param = 0;
    int64_t shard_index = -1;
  };
  bool sharded() const { return shard_ != nullptr; }
  void check_synced(const char* call) const;

  DataParallel& replicas_;
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<Slot>> slots_;
  // Plain: the optimizer. ZeRO-1: a checker of whole state dicts that never steps (it holds no
  // state), beside shard_, the optimizer of this rank's pieces.
  std::unique_ptr<Optimizer> whole_;
  std::unique_ptr<Optimizer> shard_;
};

}  // namespace pg::dist
