// Fused attention vs the composite path (matmul -> activation -> matmul through autograd):
// forward + backward time and peak memory, side by side in one run, medians over repeats.
// Usage: bench_attention [B H T d] [repeats]   (default 32 4 128 32, 20 repeats)
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "nn/attention_op.h"
#include "polygrad.h"
#include "tools/bench/measure.h"
#include "tools/cli/omp_env.h"

using namespace pg;

using bench::measure;
using bench::Result;

int main(int argc, char** argv) {
  pg::tools::ensure_passive_omp_wait(argv);
  int64_t B = 32, H = 4, T = 128, d = 32;
  int repeats = 20;
  if (argc >= 5)
    B = std::atoll(argv[1]), H = std::atoll(argv[2]), T = std::atoll(argv[3]),
    d = std::atoll(argv[4]);
  if (argc >= 6) repeats = std::atoi(argv[5]);
  manual_seed(0);
  Tensor q = randn({B, H, T, d}).requires_grad_(), k = randn({B, H, T, d}).requires_grad_();
  Tensor v = randn({B, H, T, d}).requires_grad_(), g = randn({B, H, T, d});
  double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  std::printf(
      "attention forward+backward, B=%lld H=%lld T=%lld d=%lld, causal, f32, %d threads, "
      "OPENBLAS_CORETYPE=%s, median of %d\n",
      (long long)B, (long long)H, (long long)T, (long long)d, get_num_threads(),
      core ? core : "(unset)", repeats);
  std::printf("%-10s %12s %12s %8s %14s %14s\n", "policy", "fused ms", "composite ms", "speedup",
              "fused MiB", "composite MiB");
  for (AttnActivation kind : attn::kBuiltinActivations) {
    const char* spec = attn::activation_name(kind);
    auto act = AttentionActivation::parse(spec);
    auto run = [&](bool fused) {
      return measure(repeats, [&] {
        Tensor out = attention(q, k, v, act, true, scale, Tensor(), nullptr,
                               fused ? AttentionPath::Fused : AttentionPath::Composite);
        grad(sum(mul(out, g)), {q, k, v});
      });
    };
    Result f = run(true), c = run(false);
    std::printf("%-10s %12.2f %12.2f %7.2fx %14.1f %14.1f\n", spec, f.ms, c.ms, c.ms / f.ms,
                f.peak_mib, c.peak_mib);
  }
  return 0;
}
