// Kernel-call profiling of the CPU backend: while a profile is recording, backend_for(cpu)
// serves a decorator that times every kernel call (wall clock and the process's CPU time) and
// counts it under its kind, a GEMM under its shape. What a step spends outside kernels (the
// autograd engine, allocation, op dispatch) is its wall time less the kernels'.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pg {
class Backend;
}

namespace pg::profile {

/// One kind of kernel call and what it cost while the profile recorded.
struct Entry {
  std::string category;  ///< "GEMM", "element-wise", "attention", "optimizer", ...
  std::string name;      ///< the kernel, and for a GEMM its batch and shape
  int64_t calls = 0;
  double wall_ms = 0;  ///< summed wall time of the calls
  double cpu_ms = 0;   ///< the process's CPU time during the calls (every thread's)
};

/// Forgets what was recorded.
void reset();
/// Starts (true) or pauses (false) recording the CPU kernel calls this thread makes; the
/// entries add up across recording windows until reset().
void record(bool on);
/// True while this thread's kernel calls are recorded.
bool recording();
/// What was recorded, largest wall time first.
std::vector<Entry> entries();
/// The CPU backend wrapped in the recording decorator (used by backend_for while recording).
Backend& recording_backend(Backend& cpu);
/// Seconds of CPU time this process has used so far (all threads).
double process_cpu_seconds();

}  // namespace pg::profile
