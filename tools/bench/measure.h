// What the attention benchmarks share: the median time and the peak of polygrad's CPU allocator
// over repeats of one step, after a warm-up.
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

#include "core/allocator.h"

namespace pg::bench {

struct Result {
  double ms;        ///< median over the repeats
  double peak_mib;  ///< largest rise of allocated memory during one repeat
};

template <typename F>
Result measure(int repeats, F&& step) {
  step();  // warm-up fills the allocator cache
  std::vector<double> t;
  size_t peak = 0;
  for (int i = 0; i < repeats; ++i) {
    size_t base = cpu_allocator().stats().allocated;
    cpu_allocator().reset_peak();
    auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    peak = std::max(peak, cpu_allocator().stats().peak_allocated - base);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], static_cast<double>(peak) / (1 << 20)};
}

}  // namespace pg::bench
