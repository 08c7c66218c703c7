// GEMM throughput through polygrad vs a direct cblas_sgemm call, side by side in one run.
// Usage: bench_matmul [M K N] [repeats]   (default 2048 512 512, 30 repeats; median reported)
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "polygrad.h"
#include "tools/cli/omp_env.h"

namespace {

template <typename F>
double median_seconds(int repeats, F&& f) {
  f();  // warm-up: first-touch pages, BLAS thread start-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  pg::tools::ensure_passive_omp_wait(argv);
  int64_t m = 2048, k = 512, n = 512;
  int repeats = 30;
  if (argc >= 4) m = std::atoll(argv[1]), k = std::atoll(argv[2]), n = std::atoll(argv[3]);
  if (argc >= 5) repeats = std::atoi(argv[4]);
  pg::manual_seed(0);
  pg::Tensor a = pg::randn({m, k}), b = pg::randn({k, n});
  std::vector<float> c(static_cast<size_t>(m * n));
  double flops = 2.0 * m * n * k;
  // Interleave the two so that machine noise hits both alike.
  std::vector<double> ours, blas;
  for (int r = 0; r < 3; ++r) {
    ours.push_back(median_seconds(repeats, [&] { pg::Tensor o = pg::matmul(a, b); }));
    blas.push_back(median_seconds(repeats, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data<float>(), k,
                  b.data<float>(), n, 0.0f, c.data(), n);
    }));
  }
  std::sort(ours.begin(), ours.end());
  std::sort(blas.begin(), blas.end());
  double to = ours[1], tb = blas[1];
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  std::printf("matmul %lldx%lldx%lld f32, %d threads, OPENBLAS_CORETYPE=%s\n", (long long)m,
              (long long)k, (long long)n, pg::get_num_threads(), core ? core : "(unset)");
  std::printf("  polygrad matmul : %8.2f GFLOP/s (%.3f ms)\n", flops / to * 1e-9, to * 1e3);
  std::printf("  cblas_sgemm     : %8.2f GFLOP/s (%.3f ms)\n", flops / tb * 1e-9, tb * 1e3);
  std::printf("  ratio polygrad/cblas: %.3f\n", tb / to);
  return 0;
}
