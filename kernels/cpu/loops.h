// Shared machinery of the CPU kernels: parallel strided iteration.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "core/tensor.h"
#include "kernels/cpu/region_errors.h"
#include "kernels/kernel_common.h"

namespace pg::cpu {

/// Below this many elements a loop runs on one thread.
inline constexpr int64_t kParallelGrain = 32768;

/// Runs f(offsets, n, inner_strides) over contiguous runs of the innermost dim, in parallel.
/// offsets are the element offsets of each operand at the run's start.
template <size_t N, typename F>
void for_each_run(const Layout<N>& l, F&& f) {
  using Off = std::array<int64_t, N>;
  int64_t rank = static_cast<int64_t>(l.shape.size());
  if (rank == 0) {
    f(Off{}, 1, Off{});
    return;
  }
  int64_t inner = l.shape.back();
  int64_t outer = 1;
  for (int64_t d = 0; d + 1 < rank; ++d) outer *= l.shape[d];
  Off istr;
  for (size_t k = 0; k < N; ++k) istr[k] = l.strides[k].back();
  auto row_start = [&](int64_t r) {
    Off off{};
    for (int64_t d = rank - 2; d >= 0; --d) {
      int64_t i = r % l.shape[d];
      r /= l.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * l.strides[k][d];
    }
    return off;
  };
  int64_t total = outer * inner;
  int threads = omp_get_max_threads();
  if (total < kParallelGrain || threads == 1) {
    for (int64_t r = 0; r < outer; ++r) f(row_start(r), inner, istr);
    return;
  }
  // Split rows into pieces so that a few long rows still spread over all threads.
  int64_t piece = std::max<int64_t>(4096, total / (8 * threads));
  piece = std::min(piece, inner);
  int64_t per_row = (inner + piece - 1) / piece;
  int64_t chunks = outer * per_row;
  RegionErrors errors;  // f is any kernel's functor
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    if (errors.failed()) continue;
    try {
      int64_t r = c / per_row, j = (c % per_row) * piece;
      Off off = row_start(r);
      for (size_t k = 0; k < N; ++k) off[k] += j * istr[k];
      f(off, std::min(piece, inner - j), istr);
    } catch (...) {
      errors.capture();
    }
  }
  errors.rethrow();
}

}  // namespace pg::cpu
