// Fused optimizer updates: one loop over each parameter's elements, no temporaries.
#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace pg::cpu {

namespace {
// Threads only pay off for large parameters; small ones stay on the calling thread.
bool big(int64_t n) { return n > 32768; }
}  // namespace

void CpuBackend::adam_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                             const AdamStep& s) {
  dispatch_floating(param.dtype(), "adam_update", [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T *mp = m.data<T>(), *vp = v.data<T>();
    const T b1 = static_cast<T>(s.beta1), b2 = static_cast<T>(s.beta2), eps = static_cast<T>(s.eps);
    // 1 - beta in double, then rounded (as PyTorch): 1 - 0.999f in f32 is 1.3e-5 off 0.001.
    const T c1 = static_cast<T>(1 - s.beta1), c2 = static_cast<T>(1 - s.beta2);
    const T step_size = static_cast<T>(s.step_size), sqrt_bc2 = static_cast<T>(s.sqrt_bc2);
    const T decay = static_cast<T>(s.decay), l2 = static_cast<T>(s.l2);
    const int64_t n = param.numel();
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

void CpuBackend::sgd_update(Tensor& param, const Tensor& grad, Tensor& buf, const SgdStep& s) {
  dispatch_floating(param.dtype(), "sgd_update", [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* b = buf.defined() ? buf.data<T>() : nullptr;
    const T lr = static_cast<T>(s.lr), wd = static_cast<T>(s.weight_decay),
            mom = static_cast<T>(s.momentum);
    const bool nesterov = s.nesterov, first = s.first;
    const int64_t n = param.numel();
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

}  // namespace pg::cpu
