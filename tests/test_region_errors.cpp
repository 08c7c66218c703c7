// Errors inside OpenMP regions. An exception that escapes a parallel region's body terminates
// the process, so regions whose bodies call code that can throw carry it out (RegionErrors) and
// rethrow it on the calling thread as the pg::Error it was.
#include <doctest/doctest.h>

#include <atomic>

#include "helpers.h"
#include "kernels/cpu/loops.h"
#include "polygrad.h"

using namespace pg;

TEST_CASE("an exception inside a parallel region reaches the caller instead of terminating") {
  const int before = get_num_threads();
  set_num_threads(2);
  // The strided loop every element-wise kernel runs on, with a functor that throws in one run.
  const int64_t n = 1 << 20;
  Shape shape{n}, strides{1};
  pg::Layout<1> layout = pg::coalesce<1>(shape, {&strides});
  std::atomic<int64_t> runs{0};
  CHECK_PG_ERROR(cpu::for_each_run(layout,
                                   [&](const std::array<int64_t, 1>& off, int64_t, auto) {
                                     ++runs;
                                     if (off[0] >= n / 2)
                                       throw Error("kernel", "element " + std::to_string(off[0]));
                                   }),
                 "kernel", "element");
  CHECK(runs > 0);
  // The region is left in a usable state: the next one runs normally.
  int64_t covered = 0;
  cpu::for_each_run(layout, [&](const std::array<int64_t, 1>&, int64_t len, auto) {
#pragma omp atomic
    covered += len;
  });
  CHECK(covered == n);
  set_num_threads(before);
}
