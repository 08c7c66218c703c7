// Fused optimizer updates: one loop over each parameter's elements, no temporaries.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace pg::cpu {

namespace {
// Threads only pay off for large parameters; small ones stay on the calling thread.
bool big(int64_t n) { return n > 32768; }
}  // namespace

void CpuBackend::adam_update(const std::vector<AdamParam>& params) {
  for (const AdamParam& a : params)
    dispatch_floating(a.param.dtype(), "adam_update", [&](auto tag) {
      using T = decltype(tag);
      const AdamStep& s = a.step;
      T* p = a.param.data<T>();
      const T* g = a.grad.data<T>();
      T *mp = a.m.data<T>(), *vp = a.v.data<T>();
      const T b1 = static_cast<T>(s.beta1), b2 = static_cast<T>(s.beta2),
              eps = static_cast<T>(s.eps);
      // 1 - beta in double, then rounded (as PyTorch): 1 - 0.999f in f32 is 1.3e-5 off 0.001.
      const T c1 = static_cast<T>(1 - s.beta1), c2 = static_cast<T>(1 - s.beta2);
      const T step_size = static_cast<T>(s.step_size), sqrt_bc2 = static_cast<T>(s.sqrt_bc2);
      const T decay = static_cast<T>(s.decay), l2 = static_cast<T>(s.l2);
      const int64_t n = a.param.numel();
#pragma omp parallel for if (big(n))
      for (int64_t i = 0; i < n; ++i) {
        const T gi = g[i] + l2 * p[i];
        p[i] *= decay;
        mp[i] = b1 * mp[i] + c1 * gi;
        vp[i] = b2 * vp[i] + c2 * gi * gi;
        p[i] -= step_size * mp[i] / (std::sqrt(vp[i]) / sqrt_bc2 + eps);
      }
    });
}

void CpuBackend::sgd_update(const std::vector<SgdParam>& params) {
  for (const SgdParam& a : params)
    dispatch_floating(a.param.dtype(), "sgd_update", [&](auto tag) {
      using T = decltype(tag);
      const SgdStep& s = a.step;
      T* p = a.param.data<T>();
      const T* g = a.grad.data<T>();
      T* b = a.buf.defined() ? a.buf.data<T>() : nullptr;
      const T lr = static_cast<T>(s.lr), wd = static_cast<T>(s.weight_decay),
              mom = static_cast<T>(s.momentum);
      const bool nesterov = s.nesterov, first = s.first;
      const int64_t n = a.param.numel();
#pragma omp parallel for if (big(n))
      for (int64_t i = 0; i < n; ++i) {
        T d = g[i] + wd * p[i];
        if (b) {
          b[i] = first ? d : mom * b[i] + d;
          d = nesterov ? d + mom * b[i] : b[i];
        }
        p[i] -= lr * d;
      }
    });
}

void CpuBackend::sum_of_squares(const std::vector<Tensor>& xs, Tensor& out) {
  // Fixed chunks summed in order: the result does not depend on the thread count.
  constexpr int64_t kChunk = kSumOfSquaresChunk;
  double total = 0;
  for (const Tensor& x : xs)
    dispatch_floating(x.dtype(), "sum_of_squares", [&](auto tag) {
      using T = decltype(tag);
      const T* v = x.data<T>();
      const int64_t n = x.numel(), chunks = (n + kChunk - 1) / kChunk;
      std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for if (big(n))
      for (int64_t c = 0; c < chunks; ++c) {
        double acc = 0;
        for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i)
          acc += static_cast<double>(v[i]) * static_cast<double>(v[i]);
        partial[static_cast<size_t>(c)] = acc;
      }
      for (double s : partial) total += s;
    });
  out.data<double>()[0] = total;
}

void CpuBackend::scale(const std::vector<Tensor>& xs, double scale,
                       const std::vector<Tensor>& outs) {
  for (size_t k = 0; k < xs.size(); ++k)
    dispatch_floating(xs[k].dtype(), "scale", [&](auto tag) {
      using T = decltype(tag);
      const T* x = xs[k].data<T>();
      T* o = outs[k].data<T>();
      const T s = static_cast<T>(scale);
      const int64_t n = xs[k].numel();
#pragma omp parallel for if (big(n))
      for (int64_t i = 0; i < n; ++i) o[i] = x[i] * s;
    });
}

}  // namespace pg::cpu
