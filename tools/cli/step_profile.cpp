#include "tools/cli/step_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "core/allocator.h"
#include "kernels/profile.h"

namespace pg::tools {

void StepProfile::begin_step() {
  if (open_) return;
  open_ = true;
  const AllocatorStats s = cpu_allocator().stats();
  allocs_start_ = s.system_allocs + s.cache_hits;
  system_allocs_start_ = s.system_allocs;
  cpu_start_ = profile::process_cpu_seconds();
  wall_start_ = std::chrono::steady_clock::now();
  profile::record(true);
}

void StepProfile::end_step() {
  if (!open_) return;
  profile::record(false);
  wall_ms_ +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start_)
          .count();
  cpu_ms_ += 1e3 * (profile::process_cpu_seconds() - cpu_start_);
  const AllocatorStats s = cpu_allocator().stats();
  allocs_ += s.system_allocs + s.cache_hits - allocs_start_;
  system_allocs_ += s.system_allocs - system_allocs_start_;
  ++steps_;
  open_ = false;
}

namespace {

template <typename... Args>
std::string format(const char* fmt, Args... args) {
  char buf[200];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

}  // namespace

std::string StepProfile::table(int threads, int max_kernels) const {
  if (steps_ == 0)
    return "step profile: no step to profile (the first " + std::to_string(kWarmupSteps) +
           " are warm-up)\n";
  const double n = static_cast<double>(steps_), step_ms = wall_ms_ / n;
  const std::vector<profile::Entry> entries = profile::entries();
  struct Part {
    double wall = 0, cpu = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Part> parts;
  Part kernels;
  for (const auto& e : entries) {
    Part& p = parts[e.category];
    p.wall += e.wall_ms, p.cpu += e.cpu_ms, p.calls += e.calls;
    kernels.wall += e.wall_ms, kernels.cpu += e.cpu_ms, kernels.calls += e.calls;
  }
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  std::string out = "Step profile: " + std::to_string(steps_) + " steps after " +
                    std::to_string(kWarmupSteps) + " of warm-up, " + std::to_string(threads) +
                    (threads == 1 ? " thread" : " threads") +
                    ", OPENBLAS_CORETYPE=" + (coretype ? coretype : "(unset)") + "\n\n";
  // Process CPU time counts every thread: OpenMP's, OpenBLAS's (spinning ones too) and the batch
  // prefetcher's, so "CPUs busy" can pass the thread count.
  out += format("%.1f ms a step, %.2f CPUs busy on average with %d %s; ", step_ms,
                cpu_ms_ / wall_ms_, threads, threads == 1 ? "thread" : "threads");
  out += format("%.0f kernel calls and %.0f allocations a step (%.1f from the system)\n\n",
                static_cast<double>(kernels.calls) / n, static_cast<double>(allocs_) / n,
                static_cast<double>(system_allocs_) / n);
  out += "| part of the step | ms/step | % of step | calls/step | CPUs busy |\n";
  out += "|---|---:|---:|---:|---:|\n";
  std::vector<std::pair<std::string, Part>> rows(parts.begin(), parts.end());
  rows.push_back({"outside kernels (autograd, dispatch, allocation)",
                  {wall_ms_ - kernels.wall, cpu_ms_ - kernels.cpu, 0}});
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.second.wall > b.second.wall; });
  for (const auto& [name, p] : rows)
    out += "| " + name +
           format(" | %.2f | %.1f | %.0f | %.2f |\n", p.wall / n, 100 * p.wall / wall_ms_,
                  static_cast<double>(p.calls) / n, p.wall > 0 ? p.cpu / p.wall : 0);
  out +=
      "\n| kernel (GEMM: batch x M x K @ K x N, operand layouts) | part | ms/step | % of step "
      "| calls/step | CPUs busy |\n|---|---|---:|---:|---:|---:|\n";
  const size_t top =
      max_kernels < 0 ? entries.size() : std::min(entries.size(), static_cast<size_t>(max_kernels));
  for (size_t i = 0; i < top; ++i) {
    const auto& e = entries[i];
    out += "| " + e.name + " | " + e.category +
           format(" | %.2f | %.1f | %.1f | %.2f |\n", e.wall_ms / n, 100 * e.wall_ms / wall_ms_,
                  static_cast<double>(e.calls) / n, e.wall_ms > 0 ? e.cpu_ms / e.wall_ms : 0);
  }
  return out;
}

}  // namespace pg::tools
