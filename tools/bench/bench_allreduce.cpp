// All-reduce time and bandwidth against message size: polygrad's dist::all_reduce beside a raw
// MPI_Allreduce loop on the same buffer, in the same run, interleaved (nccl-tests' conventions:
// algorithm bandwidth S/t, bus bandwidth S/t * 2(N-1)/N).
// Usage: mpirun -np N bench_allreduce [MAX_BYTES] [REPEATS]   (default 256 MiB, 15; medians)
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "distributed/dist.h"
#include "polygrad.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds per call of f, timed over `calls` calls that start together on every rank; the slowest
// rank's time counts.
template <class F>
double time_calls(int calls, F&& f) {
  MPI_Barrier(MPI_COMM_WORLD);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  pg::dist::Session session;
  const int world = pg::dist::world_size();
  if (world < 2) {
    std::fprintf(stderr, "bench_allreduce: start it with mpirun -np 2 (or more)\n");
    return 2;
  }
  const int64_t max_bytes = argc > 1 ? std::atoll(argv[1]) : int64_t(256) << 20;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 15;
  const bool lead = pg::dist::rank() == 0;
  if (lead) {
    std::printf("all-reduce (sum, f32, in place), %d processes, medians of %d\n", world, repeats);
    std::printf("%12s %12s %12s %10s %12s %12s\n", "bytes", "MPI us", "polygrad us", "overhead",
                "algbw GB/s", "busbw GB/s");
  }
  for (int64_t bytes = 4; bytes <= max_bytes; bytes *= 4) {
    const int64_t n = bytes / 4;
    pg::Tensor t = pg::ones({n});
    // About 50 ms of calls per timing, at least one.
    const double once = time_calls(1, [&] {
      MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
    });
    double per = once;
    MPI_Bcast(&per, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);  // every rank the same call count
    const int calls = std::max(1, static_cast<int>(0.05 / std::max(per, 1e-7)));
    std::vector<double> raw, ours;
    for (int r = 0; r < repeats; ++r) {
      raw.push_back(time_calls(calls, [&] {
        MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                      MPI_COMM_WORLD);
      }));
      ours.push_back(time_calls(calls, [&] { pg::dist::all_reduce({t}); }));
    }
    const double tr = median(raw), to = median(ours);
    const double algbw = static_cast<double>(bytes) / to * 1e-9;
    if (lead)
      std::printf("%12lld %12.2f %12.2f %9.1f%% %12.3f %12.3f\n", (long long)bytes, tr * 1e6,
                  to * 1e6, 100 * (to / tr - 1), algbw, algbw * 2 * (world - 1) / world);
  }
  return 0;
}
