// The update rules: one fused loop over each parameter's elements (no chain of tensor ops,
// no temporaries), run by Optimizer::step without recording a graph.
#include <omp.h>

#include <cmath>

#include "kernels/factory.h"
#include "nn/optim.h"

namespace pg {

namespace {

// Calls f(T{}) for the floating dtype of a parameter (the base class checked it).
template <typename F>
void with_float(const Tensor& p, F&& f) {
  if (p.dtype() == DType::F32)
    f(float{});
  else
    f(double{});
}

// Threads only pay off for large parameters; small ones stay on the calling thread.
bool big(int64_t n) { return n > 32768; }

}  // namespace

SGD::SGD(std::vector<ParamGroup> groups, double momentum, bool nesterov)
    : Optimizer(std::move(groups), "SGD"), momentum_(momentum), nesterov_(nesterov) {
  PG_CHECK(momentum >= 0, "SGD", "momentum must be >= 0, got ", momentum);
  PG_CHECK(!nesterov || momentum > 0, "SGD", "Nesterov momentum needs momentum > 0");
}

std::vector<std::string> SGD::state_names() const {
  if (momentum_ > 0) return {"momentum"};
  return {};
}

void SGD::update(Tensor& param, const Tensor& grad, const ParamGroup& group,
                 std::map<std::string, Tensor>& state) {
  // PyTorch seeds the momentum buffer with the first (decayed) gradient, not with zeros.
  bool first = momentum_ > 0 && !state.count("momentum");
  if (first) state["momentum"] = empty_like(param);
  with_float(param, [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* buf = momentum_ > 0 ? state["momentum"].data<T>() : nullptr;
    const T lr = static_cast<T>(group.lr), wd = static_cast<T>(group.weight_decay),
            mom = static_cast<T>(momentum_);
    const bool nesterov = nesterov_;
    const int64_t n = param.numel();
#pragma omp parallel for if (big(n))
    for (int64_t i = 0; i < n; ++i) {
      T d = g[i] + wd * p[i];
      if (buf) {
        buf[i] = first ? d : mom * buf[i] + d;
        d = nesterov ? d + mom * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  });
}

Adam::Adam(std::vector<ParamGroup> groups, double beta1, double beta2, double eps, bool decoupled)
    : Optimizer(std::move(groups), decoupled ? "AdamW" : "Adam"),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps),
      decoupled_(decoupled) {
  PG_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, name(),
           "betas must be in [0, 1), got ", beta1, ", ", beta2);
  PG_CHECK(eps >= 0, name(), "eps must be >= 0, got ", eps);
}

std::vector<std::string> Adam::state_names() const { return {"exp_avg", "exp_avg_sq", "step"}; }

void Adam::update(Tensor& param, const Tensor& grad, const ParamGroup& group,
                  std::map<std::string, Tensor>& state) {
  if (!state.count("exp_avg")) {
    state["exp_avg"] = zeros_like(param);
    state["exp_avg_sq"] = zeros_like(param);
    state["step"] = scalar_tensor(0, {DType::F64});
  }
  // A step count per parameter (as in PyTorch): a parameter that skipped steps (no gradient)
  // gets the bias correction of the updates it actually had.
  Tensor& st = state["step"];
  const double t = st.item() + 1;
  st.fill_(t);
  with_float(param, [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* m = state["exp_avg"].data<T>();
    T* v = state["exp_avg_sq"].data<T>();
    // The bias corrections are folded into two scalars, the way torch.optim computes them:
    // p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
    const double bc1 = 1 - std::pow(beta1_, t), bc2 = 1 - std::pow(beta2_, t);
    const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_), eps = static_cast<T>(eps_);
    const T step_size = static_cast<T>(group.lr / bc1), sqrt_bc2 = static_cast<T>(std::sqrt(bc2));
    const T decay = static_cast<T>(1 - group.lr * group.weight_decay);
    const T l2 = decoupled_ ? T(0) : static_cast<T>(group.weight_decay);
    const bool decoupled = decoupled_;
    const int64_t n = param.numel();
#pragma omp parallel for if (big(n))
    for (int64_t i = 0; i < n; ++i) {
      const T gi = g[i] + l2 * p[i];
      if (decoupled) p[i] *= decay;
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
    }
  });
}

}  // namespace pg
