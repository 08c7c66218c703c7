#include "distributed/dist.h"

#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <thread>

#include "autograd/grad_mode.h"
#include "distributed/nccl.h"
#include "kernels/backend.h"

#ifdef PG_WITH_MPI
#include <mpi.h>
#endif

namespace pg::dist {

namespace {

using Clock = std::chrono::steady_clock;

// A communicator and what the watchdog knows of the collective in flight on it.
struct ChannelState {
#ifdef PG_WITH_MPI
  MPI_Comm comm = MPI_COMM_WORLD;
#endif
  std::mutex mpi;  // one collective at a time on this communicator, in program order

  // Guarded by State::watch.
  std::string label;           // the issuing thread's CollectiveLabel
  const char* in_flight = "";  // the collective
  int64_t bytes = -1;          // its message size (-1: none)
  Clock::time_point since;
  bool busy = false;
  bool in_use = false;  // channels other than the world's: created and not yet freed
};

// Channels are few (the world's and one per DataParallel): a fixed array keeps their addresses
// stable while other threads read them.
constexpr int kMaxChannels = 16;

struct State {
  bool active = false;  // MPI initialised by the Session: more than one process
  int rank = 0, world = 1, local_rank = 0;
  std::array<ChannelState, kMaxChannels> channels;  // 0: the world's, always in use

  // The watchdog: which collectives are waiting, since when, and what the program was doing.
  std::mutex watch;
  std::string context;
  std::atomic<double> timeout{0};
  std::thread watchdog;
  std::atomic<bool> stop{false};
};

State& state() {
  static State s;
  return s;
}

thread_local std::string t_label;
thread_local int t_channel = 0;

ChannelState& current_channel() { return state().channels[static_cast<size_t>(t_channel)]; }

// Marks a collective as in flight for the watchdog while it lives.
class InFlight {
 public:
  // Cheap: the watchdog formats the message only if it fires.
  explicit InFlight(const char* what, int64_t bytes = -1) : c_(current_channel()) {
    std::lock_guard lock(state().watch);
    c_.in_flight = what;
    c_.bytes = bytes;
    if (c_.label != t_label) c_.label = t_label;
    c_.since = Clock::now();
    c_.busy = true;
  }
  ~InFlight() {
    std::lock_guard lock(state().watch);
    c_.busy = false;
  }

 private:
  ChannelState& c_;
};

#ifdef PG_WITH_MPI
std::string bytes_text(int64_t bytes) {
  std::ostringstream os;
  if (bytes >= (1 << 20))
    os << static_cast<double>(bytes) / (1 << 20) << " MiB";
  else
    os << bytes << " B";
  return os.str();
}

void watchdog_loop() {
  State& s = state();
  while (!s.stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const double limit = s.timeout.load();
    if (limit <= 0) continue;
    std::lock_guard lock(s.watch);
    for (const ChannelState& c : s.channels) {
      if (!c.busy) continue;
      const double waited = std::chrono::duration<double>(Clock::now() - c.since).count();
      if (waited < limit) continue;
      std::fprintf(stderr,
                   "polygrad: rank %d/%d: error: %s%s%s has waited %.0f s for the other ranks "
                   "(--dist-timeout %g): a rank stalled, or the ranks took different paths; "
                   "ending the job\n",
                   s.rank, s.world,
                   detail::concat(c.in_flight, c.bytes >= 0 ? " (" + bytes_text(c.bytes) + ")" : "",
                                  c.label.empty() ? "" : " of " + c.label)
                       .c_str(),
                   s.context.empty() ? "" : " at ", s.context.c_str(), waited, limit);
      std::fflush(stderr);
      abort_job(3);
    }
  }
}

void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw Error("dist", detail::concat(call, " failed on rank ", state().rank, ": ",
                                     std::string(text, static_cast<size_t>(len))));
}

MPI_Datatype mpi_type(DType dt, const char* op) {
  switch (dt) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I64:
      return MPI_INT64_T;
    case DType::I32:
      return MPI_INT32_T;
    default:
      break;
  }
  throw Error(op, detail::concat("cannot send ", dtype_name(dt),
                                 " tensors (expected f32, f64, i32 or i64)"));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max:
      return MPI_MAX;
    case ReduceOp::Min:
      return MPI_MIN;
    default:
      return MPI_SUM;
  }
}

// MPI counts are ints: a tensor past 2^31 - 1 elements goes in pieces.
template <class F>
void in_chunks(char* data, int64_t count, size_t elem, F&& f) {
  while (count > 0) {
    const int n = static_cast<int>(std::min<int64_t>(count, INT_MAX));
    f(data, n);
    data += static_cast<size_t>(n) * elem;
    count -= n;
  }
}
#endif

void check_contiguous(const Tensor& t, const char* op) {
  PG_CHECK(t.defined(), op, "got an undefined tensor");
  PG_CHECK(t.is_contiguous(), op, "expected contiguous tensors, got shape ", shape_str(t.shape()),
           " with strides ", shape_str(t.strides()));
}

}  // namespace

Launch detect_launch(const std::function<const char*(const char*)>& env) {
  // Launchers that announce the world's size, then PMIx, which leaves it to MPI.
  static const std::pair<const char*, const char*> kSized[] = {
      {"OMPI_COMM_WORLD_SIZE", "mpirun (Open MPI)"},
      {"PMI_SIZE", "a PMI launcher (MPICH, Intel MPI, srun --mpi=pmi2)"},
      {"MV2_COMM_WORLD_SIZE", "mpirun (MVAPICH)"},
      {"SLURM_STEP_NUM_TASKS", "srun (Slurm)"},
  };
  for (const auto& [var, who] : kSized)
    if (const char* v = env(var)) return {who, std::max(1, std::atoi(v))};
  if (env("PMIX_RANK")) return {"a PMIx launcher", 0};
  return {};
}

Session::Session() {
  const Launch launch = detect_launch();
  if (launch.launcher.empty() || launch.world == 1) return;  // a world of one: no MPI at all
#ifdef PG_WITH_MPI
  State& s = state();
  int provided = 0;
  check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  s.active = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &s.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &s.world);
  if (launch.world > 1 && s.world != launch.world) {
    // Each process would train alone and all would write the same OUT.
    const int seen = s.world;
    MPI_Finalize();
    s.active = false;
    s.world = 1;
    s.rank = 0;
    throw Error("dist", detail::concat(launch.launcher, " started ", launch.world,
                                       " processes, but MPI sees a world of ", seen,
                                       ": this MPI cannot reach the launcher (under Slurm: srun "
                                       "--mpi=pmix with an MPI built for it, or mpirun inside "
                                       "the allocation)"));
  }
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, s.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &s.local_rank);
  MPI_Comm_free(&local);
  if (provided < MPI_THREAD_MULTIPLE)
    throw Error("dist", detail::concat("this MPI library offers thread level ", provided,
                                       "; polygrad's communication thread needs "
                                       "MPI_THREAD_MULTIPLE (Open MPI 4.1 has it)"));
  s.watchdog = std::thread(watchdog_loop);
#else
  throw Error("dist", detail::concat(launch.launcher, " started ",
                                     launch.world > 0 ? std::to_string(launch.world) : "several",
                                     " processes, but this polygrad was built without MPI "
                                     "(install libopenmpi-dev and rebuild with -DPG_MPI=ON)"));
#endif
}

Session::~Session() {
  State& s = state();
  if (!s.active) return;
  s.stop = true;
  if (s.watchdog.joinable()) s.watchdog.join();
  nccl_finalize();
#ifdef PG_WITH_MPI
  MPI_Finalize();
#endif
  s.active = false;
}

int rank() { return state().rank; }
int world_size() { return state().world; }
int local_rank() { return state().local_rank; }
bool mpi_built() {
#ifdef PG_WITH_MPI
  return true;
#else
  return false;
#endif
}

void all_reduce(const std::vector<Tensor>& tensors, ReduceOp op) {
  for (const Tensor& t : tensors) {
    check_contiguous(t, "all_reduce");
    PG_CHECK(op != ReduceOp::Mean || t.dtype() == DType::F32 || t.dtype() == DType::F64,
             "all_reduce", "Mean needs floating tensors, got ", dtype_name(t.dtype()));
  }
  State& s = state();
  if (!s.active) return;
#ifdef PG_WITH_MPI
  for (const Tensor& t : tensors) {
    if (t.numel() == 0) continue;
    InFlight flight("all_reduce", t.numel() * int64_t(dtype_size(t.dtype())));
    if (t.device().is_cuda() && nccl_all_reduce(t, op == ReduceOp::Mean ? ReduceOp::Sum : op)) {
    } else {
      // Host-staged for CUDA tensors without NCCL; in place for CPU ones.
      Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
      const MPI_Datatype type = mpi_type(t.dtype(), "all_reduce");
      ChannelState& c = current_channel();
      std::lock_guard lock(c.mpi);
      in_chunks(static_cast<char*>(host.raw_data()), host.numel(), dtype_size(t.dtype()),
                [&](char* p, int n) {
                  check_mpi(MPI_Allreduce(MPI_IN_PLACE, p, n, type, mpi_op(op), c.comm),
                            "MPI_Allreduce");
                });
      if (!t.device().is_cpu()) {
        Tensor dst = t;
        dst.copy_(host);
      }
    }
    if (op == ReduceOp::Mean) {
      NoGradGuard no_grad;
      std::vector<Tensor> xs{t};
      backend_for(t.device()).scale(xs, 1.0 / s.world, xs);
    }
  }
#endif
}

void all_reduce(std::vector<double>& values, ReduceOp op) {
  if (!state().active || values.empty()) return;
  Tensor t = empty({static_cast<int64_t>(values.size())}, {DType::F64});
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(double));
  all_reduce({t}, op);
  std::memcpy(values.data(), t.raw_data(), values.size() * sizeof(double));
}

namespace {

// The checks reduce_scatter and all_gather share: `counts` splits `t` over the ranks, each
// piece small enough for an MPI count. Returns the pieces' offsets.
std::vector<int64_t> check_pieces(const Tensor& t, const std::vector<int64_t>& counts,
                                  const char* op) {
  check_contiguous(t, op);
  PG_CHECK(t.device().is_cpu(), op, "expected CPU tensors, got one on ", t.device().str());
  const int world = state().world;
  PG_CHECK(static_cast<int>(counts.size()) == world, op, "expected one count per rank (", world,
           "), got ", counts.size());
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (int64_t c : counts) {
    PG_CHECK(c >= 0 && c < INT_MAX, op, "a rank's piece must have 0 to 2^31 - 2 elements, got ", c);
    offsets.push_back(total);
    total += c;
  }
  PG_CHECK(total == t.numel(), op, "the counts add up to ", total, " elements but the tensor ",
           shape_str(t.shape()), " has ", t.numel());
  return offsets;
}

}  // namespace

void reduce_scatter(const Tensor& input, const Tensor& output, const std::vector<int64_t>& counts) {
  const std::vector<int64_t> offsets = check_pieces(input, counts, "reduce_scatter");
  check_contiguous(output, "reduce_scatter");
  State& s = state();
  const int64_t mine = counts[static_cast<size_t>(s.rank)];
  PG_CHECK(output.numel() == mine && output.dtype() == input.dtype() && output.device().is_cpu(),
           "reduce_scatter", "output must be a CPU ", dtype_name(input.dtype()), " tensor of ",
           mine, " elements, got ", dtype_name(output.dtype()), " ", shape_str(output.shape()));
  PG_CHECK(output.raw_data() != input.raw_data() || mine == 0, "reduce_scatter",
           "output must not share memory with input");
  if (!s.active) {
    Tensor out = output;
    out.copy_(input.view({-1})
                  .narrow(0, offsets[static_cast<size_t>(s.rank)], mine)
                  .view(output.shape()));
    return;
  }
#ifdef PG_WITH_MPI
  InFlight flight("reduce_scatter", input.numel() * int64_t(dtype_size(input.dtype())));
  std::vector<int> sizes(counts.begin(), counts.end());
  const MPI_Datatype type = mpi_type(input.dtype(), "reduce_scatter");
  ChannelState& c = current_channel();
  std::lock_guard lock(c.mpi);
  check_mpi(
      MPI_Reduce_scatter(input.raw_data(), output.raw_data(), sizes.data(), type, MPI_SUM, c.comm),
      "MPI_Reduce_scatter");
#endif
}

void all_gather(const Tensor& buffer, const std::vector<int64_t>& counts) {
  const std::vector<int64_t> offsets = check_pieces(buffer, counts, "all_gather");
  State& s = state();
  if (!s.active || buffer.numel() == 0) return;
#ifdef PG_WITH_MPI
  InFlight flight("all_gather", buffer.numel() * int64_t(dtype_size(buffer.dtype())));
  std::vector<int> sizes(counts.begin(), counts.end()), displs(offsets.begin(), offsets.end());
  PG_CHECK(buffer.numel() < INT_MAX, "all_gather", "a buffer of ", buffer.numel(),
           " elements is too large for one MPI call (at most 2^31 - 2)");
  const MPI_Datatype type = mpi_type(buffer.dtype(), "all_gather");
  ChannelState& c = current_channel();
  std::lock_guard lock(c.mpi);
  check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer.raw_data(), sizes.data(),
                           displs.data(), type, c.comm),
            "MPI_Allgatherv");
#endif
}

void broadcast(const std::vector<Tensor>& tensors, int root) {
  for (const Tensor& t : tensors) check_contiguous(t, "broadcast");
  State& s = state();
  PG_CHECK(root >= 0 && root < s.world, "broadcast", "root ", root, " is not a rank (world of ",
           s.world, ")");
  if (!s.active) return;
#ifdef PG_WITH_MPI
  for (const Tensor& t : tensors) {
    if (t.numel() == 0) continue;
    InFlight flight("broadcast", t.numel() * int64_t(dtype_size(t.dtype())));
    Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
    const MPI_Datatype type = mpi_type(t.dtype(), "broadcast");
    {
      ChannelState& c = current_channel();
      std::lock_guard lock(c.mpi);
      in_chunks(
          static_cast<char*>(host.raw_data()), host.numel(), dtype_size(t.dtype()),
          [&](char* p, int n) { check_mpi(MPI_Bcast(p, n, type, root, c.comm), "MPI_Bcast"); });
    }
    if (!t.device().is_cpu()) {
      Tensor dst = t;
      dst.copy_(host);
    }
  }
#endif
}

void barrier() {
  State& s = state();
  if (!s.active) return;
#ifdef PG_WITH_MPI
  InFlight flight("barrier");
  ChannelState& c = current_channel();
  std::lock_guard lock(c.mpi);
  check_mpi(MPI_Barrier(c.comm), "MPI_Barrier");
#endif
}

std::vector<std::string> all_gather(const std::string& value) {
  State& s = state();
  if (!s.active) return {value};
  std::vector<std::string> out(static_cast<size_t>(s.world));
#ifdef PG_WITH_MPI
  InFlight flight("all_gather");
  ChannelState& c = current_channel();
  std::lock_guard lock(c.mpi);
  PG_CHECK(value.size() < INT_MAX, "all_gather", "a value of ", value.size(), " bytes is too long");
  int len = static_cast<int>(value.size());
  std::vector<int> lens(out.size()), offsets(out.size());
  check_mpi(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, c.comm), "MPI_Allgather");
  int64_t total = 0;
  for (size_t r = 0; r < out.size(); ++r) {
    offsets[r] = static_cast<int>(total);
    total += lens[r];
  }
  PG_CHECK(total < INT_MAX, "all_gather", "the ranks' values add up to ", total,
           " bytes, too many");
  std::string all(static_cast<size_t>(total), '\0');
  check_mpi(MPI_Allgatherv(value.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(),
                           MPI_CHAR, c.comm),
            "MPI_Allgatherv");
  for (size_t r = 0; r < out.size(); ++r)
    out[r] = all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(lens[r]));
#endif
  return out;
}

void check_same_on_all_ranks(const std::string& what, const std::string& value,
                             const std::string& hint) {
  if (world_size() == 1) return;
  std::vector<std::string> values = all_gather(value);
  for (size_t r = 1; r < values.size(); ++r) {
    if (values[r] == values[0]) continue;
    // Name the first line that differs: a model description or a command line is long.
    std::istringstream a(values[0]), b(values[r]);
    std::string la, lb;
    while (true) {
      const bool more_a = static_cast<bool>(std::getline(a, la));
      const bool more_b = static_cast<bool>(std::getline(b, lb));
      if (!more_a) la = "(nothing)";
      if (!more_b) lb = "(nothing)";
      if (la != lb || (!more_a && !more_b)) break;
    }
    throw Error("dist", detail::concat(what, " differs between ranks: rank 0 has '", la,
                                       "' where rank ", r, " has '", lb, "' (", hint, ")"));
  }
}

uint64_t fingerprint(const std::vector<Tensor>& tensors) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const Tensor& t : tensors) {
    if (!t.defined()) {
      mix("undefined", 9);
      continue;
    }
    Tensor c = t.to(Device::cpu()).contiguous();
    mix(t.shape().data(), t.shape().size() * sizeof(int64_t));
    const auto dt = static_cast<uint8_t>(t.dtype());
    mix(&dt, 1);
    mix(c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
  }
  return h;
}

void check_replicas(const std::vector<Tensor>& tensors, const std::string& what) {
  if (world_size() == 1) return;
  std::vector<std::string> prints = all_gather(std::to_string(fingerprint(tensors)));
  for (size_t r = 1; r < prints.size(); ++r)
    PG_CHECK(prints[r] == prints[0], "dist",
             detail::concat(what, " of rank ", r, " differ from rank 0's (fingerprint ", prints[r],
                            " vs ", prints[0], "): the replicas have drifted apart"));
}

void set_timeout(double seconds) {
  PG_CHECK(seconds >= 0, "--dist-timeout", "expected 0 or more seconds, got ", seconds);
  state().timeout = seconds;
}

void set_context(const std::string& context) {
  State& s = state();
  std::lock_guard lock(s.watch);
  s.context = context;
}

Channel::Channel() {
  State& s = state();
  // Collective like every call here: every rank creates and frees its channels in the same
  // order, so MPI_Comm_dup pairs them up.
  std::lock_guard watch(s.watch);
  for (int i = 1; i < kMaxChannels && id_ < 0; ++i)
    if (!s.channels[static_cast<size_t>(i)].in_use) id_ = i;
  PG_CHECK(id_ > 0, "dist", "at most ", kMaxChannels - 1,
           " channels (one per DataParallel) can be open at once in one process");
  ChannelState& c = s.channels[static_cast<size_t>(id_)];
#ifdef PG_WITH_MPI
  if (s.active) {
    std::lock_guard lock(s.channels[0].mpi);
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &c.comm), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(c.comm, MPI_ERRORS_RETURN);
  }
#endif
  c.in_use = true;
  c.busy = false;
}

Channel::~Channel() {
  State& s = state();
  std::lock_guard watch(s.watch);
  ChannelState& c = s.channels[static_cast<size_t>(id_)];
#ifdef PG_WITH_MPI
  if (s.active && c.comm != MPI_COMM_WORLD) MPI_Comm_free(&c.comm);
  c.comm = MPI_COMM_WORLD;
#endif
  c.in_use = false;
}

ChannelScope::ChannelScope(const Channel& channel) : previous_(t_channel) {
  t_channel = channel.id_;
}
ChannelScope::~ChannelScope() { t_channel = previous_; }

CollectiveLabel::CollectiveLabel(std::string label) : previous_(std::move(t_label)) {
  t_label = std::move(label);
}
CollectiveLabel::~CollectiveLabel() { t_label = std::move(previous_); }

void abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef PG_WITH_MPI
  if (state().active) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

}  // namespace pg::dist
