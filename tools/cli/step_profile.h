// `--profile`: where the milliseconds of a training step go, kernel by kernel (kernels/profile.h).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace pg::tools {

/// Records the kernels of a run's steps, evaluations and saves left out, and renders the table.
class StepProfile {
 public:
  /// Steps before the profile starts: the first ones fill the allocator's cache and the
  /// BLAS library's buffers.
  static constexpr int64_t kWarmupSteps = 2;
  /// Opens a step's window (a step that begins after the warm-up).
  void begin_step();
  /// Closes it (nothing when no window is open).
  void end_step();
  /// The profile as markdown: the step's wall and CPU time, each part's share (GEMM,
  /// element-wise, attention, ... and what happens outside kernels), then the `kernels`
  /// costliest kernels (-1: all).
  std::string table(int threads, int kernels = -1) const;

 private:
  bool open_ = false;
  int64_t steps_ = 0;
  double wall_ms_ = 0, cpu_ms_ = 0;
  double cpu_start_ = 0;
  std::chrono::steady_clock::time_point wall_start_;
  size_t allocs_ = 0, system_allocs_ = 0, allocs_start_ = 0, system_allocs_start_ = 0;
};

}  // namespace pg::tools
