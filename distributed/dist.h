// pg::dist: the processes of a data-parallel job and the collectives between them, on MPI
// (`mpirun -np N ...`). Started without mpirun (or with one process) the job is a world of one:
// every call below works and none of them touches MPI. Sits above nn/: the library below it
// never calls it.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pg::dist {

/// How all_reduce combines the ranks' values.
enum class ReduceOp { Sum, Mean, Max, Min };

/// The process's membership of the job, for main()'s lifetime: initialises MPI (thread level
/// MULTIPLE) when mpirun started more than one process, finalizes it on destruction. One per
/// process; a build without MPI started by mpirun with several processes is a pg::Error.
class Session {
 public:
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
};

/// How this process was started: the launcher and the world size it announced.
struct Launch {
  std::string launcher;  ///< "" when no launcher started it
  int world = 1;         ///< 0: the launcher (PMIx) leaves the size to MPI
};
/// Reads the launchers' variables: Open MPI's mpirun, PMI (MPICH, Intel MPI, srun --mpi=pmi2),
/// MVAPICH, Slurm's srun (SLURM_STEP_NUM_TASKS) and PMIx. Session starts MPI for any world but
/// one and refuses a world MPI does not see (srun's tasks that each think they are alone).
/// `env` looks a variable up (tests pass their own).
Launch detect_launch(const std::function<const char*(const char*)>& env = std::getenv);

/// This process's rank in [0, world_size()).
int rank();
/// Number of processes in the job (1 without mpirun).
int world_size();
/// Rank among the processes on this machine (picks the GPU of a CUDA run).
int local_rank();
/// True when this build can run several processes (built with MPI).
bool mpi_built();

/// Combines each tensor element-wise across ranks, in place; every rank gets the same bytes.
/// Tensors must be contiguous; CUDA tensors go through NCCL where built, else through the host.
void all_reduce(const std::vector<Tensor>& tensors, ReduceOp op = ReduceOp::Sum);
/// Combines doubles across ranks in place (losses, counts, flags).
void all_reduce(std::vector<double>& values, ReduceOp op = ReduceOp::Sum);
/// Sums `input` element-wise across ranks and leaves this rank's piece of the sum in `output`:
/// rank r gets the counts[r] elements after the first counts[0] + ... + counts[r-1]. `counts`
/// (one per rank, the same on every rank) adds up to input's size; output (distinct from input)
/// has counts[rank()] elements. Contiguous CPU tensors of one dtype.
void reduce_scatter(const Tensor& input, const Tensor& output, const std::vector<int64_t>& counts);
/// In place: each rank's piece of `buffer` (counts[r] elements laid out as for reduce_scatter)
/// reaches every rank. A contiguous CPU tensor.
void all_gather(const Tensor& buffer, const std::vector<int64_t>& counts);
/// Copies root's values into each tensor on every other rank.
void broadcast(const std::vector<Tensor>& tensors, int root = 0);
/// Waits until every rank arrives.
void barrier();
/// Every rank's `value`, indexed by rank.
std::vector<std::string> all_gather(const std::string& value);

/// Throws the same pg::Error on every rank when `value` (e.g. the flags of the run) differs
/// between ranks, naming `what`, the first differing rank and both values, then `hint` (what
/// to do); call on all ranks.
void check_same_on_all_ranks(const std::string& what, const std::string& value,
                             const std::string& hint = "every rank must run the same program");

/// A 64-bit hash of the tensors' bytes (shapes and dtypes included), for replica checks.
uint64_t fingerprint(const std::vector<Tensor>& tensors);
/// Throws the same pg::Error on every rank unless every rank's tensors have the same bytes.
void check_replicas(const std::vector<Tensor>& tensors, const std::string& what);

/// Seconds a collective may take before the watchdog prints what it was waiting for and ends
/// the job (0: no watchdog, the default).
void set_timeout(double seconds);
/// What the next collectives belong to, for the watchdog's message ("step 17").
void set_context(const std::string& context);

/// A communicator of its own (MPI_Comm_dup of the world, where MPI runs): collectives on
/// different channels never pair with each other, so one thread's collectives may be in flight
/// on a channel while another thread issues its own on the world's. DataParallel sends its
/// gradient buckets over one, so a program may all-reduce its loss between backward and
/// sync_gradients(). Created and destroyed collectively: on every rank, in the same order.
class Channel {
 public:
  Channel();
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

 private:
  friend class ChannelScope;
  int id_ = -1;
};

/// While alive, the collectives this thread issues go over `channel` (else the world's).
class ChannelScope {
 public:
  explicit ChannelScope(const Channel& channel);
  ~ChannelScope();
  ChannelScope(const ChannelScope&) = delete;
  ChannelScope& operator=(const ChannelScope&) = delete;

 private:
  int previous_;
};

/// Names the collectives this thread issues while it lives ("bucket 2 of 5"), for the watchdog.
class CollectiveLabel {
 public:
  explicit CollectiveLabel(std::string label);
  ~CollectiveLabel();
  CollectiveLabel(const CollectiveLabel&) = delete;
  CollectiveLabel& operator=(const CollectiveLabel&) = delete;

 private:
  std::string previous_;
};

/// Ends the whole job with `code` (MPI_Abort when several processes run, else exit).
[[noreturn]] void abort_job(int code);

}  // namespace pg::dist
