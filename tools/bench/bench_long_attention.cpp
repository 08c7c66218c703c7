// Long context: forward + backward time and peak memory of causal attention against the sequence
// length T at a fixed number of tokens per batch (B = TOKENS / T), 4 heads of d = 32 and 64:
// softmax and poly:2 on the fused quadratic kernel, poly:2 and poly:3 on the linear path. Then,
// per head size, the T where the linear poly:2 overtakes the fused one beside the FLOP model's
// 2D + C, and each curve's growth exponent (log-log slope of the time per sequence, T >= 1024).
// Last, decoding one token at a time: time per token against position, KV cache against state.
// Usage: bench_long_attention [TOKENS [REPEATS [MAX_T]]]   (default 16384, 3, 16384)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/symmetric_power.h"
#include "nn/attention.h"
#include "nn/attention_op.h"
#include "polygrad.h"
#include "tools/bench/measure.h"
#include "tools/cli/omp_env.h"

using namespace pg;

namespace {

struct Arm {
  std::string label, spec;
  AttentionPath path;
};

// Least-squares slope of log(y) against log(x).
double log_slope(const std::vector<double>& x, const std::vector<double>& y) {
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = std::log(x[i]), b = std::log(y[i]);
    n += 1, sx += a, sy += b, sxx += a * a, sxy += a * b;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

}  // namespace

int main(int argc, char** argv) {
  pg::tools::ensure_passive_omp_wait(argv);
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 16384;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 3;
  const int64_t max_t = argc > 3 ? std::atoll(argv[3]) : 16384;
  const int64_t H = 4;
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  std::printf(
      "causal attention forward+backward, %lld tokens per batch (B = tokens / T), %lld heads, "
      "f32, %d threads, OPENBLAS_CORETYPE=%s, median of %d; ms and peak MiB per batch\n",
      (long long)tokens, (long long)H, get_num_threads(), core ? core : "(unset)", repeats);
  for (int64_t d : {32, 64}) {
    std::vector<Arm> arms{{"softmax fused", "softmax", AttentionPath::Fused},
                          {"poly:2 fused", "poly:2", AttentionPath::Fused},
                          {"poly:2 linear", "poly:2", AttentionPath::Linear}};
    const int64_t d2 = SymmetricPower::feature_count(d, 2),
                  d3 = SymmetricPower::feature_count(d, 3);
    // poly:3's state at d = 64 (45,760 features) costs more than the quadratic kernel below
    // T = 2D + C = 91,584: not measured.
    if (d3 < 10000) arms.push_back({"poly:3 linear", "poly:3", AttentionPath::Linear});
    std::printf("\nd = %lld (features: p=2 %lld, p=3 %lld)\n%7s %5s", (long long)d, (long long)d2,
                (long long)d3, "T", "B");
    for (const Arm& a : arms) std::printf(" %16s %9s", (a.label + " ms").c_str(), "MiB");
    std::printf("\n");
    std::vector<double> ts, per_seq[4];
    double crossover = 0, prev_ratio = 0, prev_t = 0;
    for (int64_t T = 128; T <= max_t && T <= tokens; T *= 2) {
      const int64_t B = tokens / T;
      manual_seed(0);
      Tensor q = randn({B, H, T, d}).requires_grad_(), k = randn({B, H, T, d}).requires_grad_();
      Tensor v = randn({B, H, T, d}).requires_grad_(), g = randn({B, H, T, d});
      const double scale = 1.0 / std::sqrt(static_cast<double>(d));
      std::printf("%7lld %5lld", (long long)T, (long long)B);
      std::vector<double> ms;
      for (size_t a = 0; a < arms.size(); ++a) {
        const auto act = AttentionActivation::parse(arms[a].spec);
        bench::Result r = bench::measure(repeats, [&] {
          Tensor out = attention(q, k, v, act, true, scale, Tensor(), nullptr, arms[a].path);
          grad(sum(mul(out, g)), {q, k, v});
        });
        std::printf(" %16.1f %9.1f", r.ms, r.peak_mib);
        std::fflush(stdout);
        ms.push_back(r.ms);
        if (T >= 1024) per_seq[a].push_back(r.ms / static_cast<double>(B));
      }
      std::printf("\n");
      if (T >= 1024) ts.push_back(static_cast<double>(T));
      // Where linear / fused poly:2 crosses 1, interpolated in log T.
      const double ratio = ms[2] / ms[1];
      if (crossover == 0 && ratio < 1 && prev_t > 0)
        crossover = std::exp(std::log(prev_t) +
                             (std::log(static_cast<double>(T)) - std::log(prev_t)) *
                                 std::log(prev_ratio) / (std::log(prev_ratio) - std::log(ratio)));
      prev_ratio = ratio, prev_t = static_cast<double>(T);
    }
    const int64_t model = 2 * d2 + kLinearChunk;
    if (crossover > 0)
      std::printf("poly:2 linear overtakes poly:2 fused at T = %.0f (FLOP model 2D + C = %lld)\n",
                  crossover, (long long)model);
    else
      std::printf(
          "poly:2 linear does not overtake poly:2 fused up to T = %lld (FLOP model 2D + C "
          "= %lld)\n",
          (long long)prev_t, (long long)model);
    if (ts.size() >= 2) {
      std::printf("growth exponent of the time per sequence, T >= 1024:");
      for (size_t a = 0; a < arms.size(); ++a)
        std::printf(" %s %.2f%s", arms[a].label.c_str(), log_slope(ts, per_seq[a]),
                    a + 1 < arms.size() ? "," : "\n");
    }
  }
  // Decoding: one TransformerBlock (dim 128, 4 heads of 32, causal), one sequence, one token at a
  // time up to max_t: softmax keeps keys and values, poly:2 the linear path's state.
  std::printf(
      "\ndecoding, one block of dim 128 (4 heads of 32), batch 1: ms per token at position i "
      "(median of the 16 up to it), and the bytes each keeps per block\n%-16s",
      "policy");
  std::vector<int64_t> marks;
  for (int64_t i = 128; i <= max_t; i *= 4) marks.push_back(i);
  for (int64_t i : marks) std::printf(" %9s%-6lld", "i = ", (long long)i);
  std::printf(" %14s\n", "cache bytes");
  for (const char* spec : {"softmax", "poly:2"}) {
    AttentionConfig cfg;
    cfg.dim = 128;
    cfg.heads = 4;
    cfg.causal = true;
    cfg.activation = AttentionActivation::parse(spec);
    manual_seed(0);
    TransformerBlock block(cfg, 4 * cfg.dim);
    block.eval();
    NoGradGuard no_grad;
    Tensor x = randn({1, max_t, cfg.dim});
    KvCache cache;
    std::printf("%-16s", spec);
    size_t mark = 0;
    std::vector<double> window;  // the 16 tokens up to the mark: their median
    for (int64_t i = 0; i < max_t && mark < marks.size(); ++i) {
      auto t0 = std::chrono::steady_clock::now();
      block.forward_cached(x.narrow(1, i, 1).contiguous(), cache, max_t);
      if (i + 16 >= marks[mark])
        window.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
      if (i + 1 == marks[mark]) {
        std::sort(window.begin(), window.end());
        std::printf(" %15.3f", window[window.size() / 2]);
        window.clear();
        ++mark;
      }
    }
    const int64_t bytes =
        (cache.state.defined() ? cache.state.numel() : cache.k.numel() + cache.v.numel()) * 4;
    std::printf(" %14lld\n", (long long)bytes);
  }
  return 0;
}
