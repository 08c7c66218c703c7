#include "nn/optim.h"

#include <omp.h>

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

namespace {

// Calls f(T{}) for the floating dtype of a parameter.
template <typename F>
void with_float(const Tensor& p, F&& f) {
  if (p.dtype() == DType::F32)
    f(float{});
  else if (p.dtype() == DType::F64)
    f(double{});
  else
    throw Error("optimizer",
                "parameters must be f32 or f64, got " + std::string(dtype_name(p.dtype())));
}

bool big(int64_t n) { return n > 32768 && omp_get_max_threads() > 1; }

}  // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (auto& p : groups_[g].params) {
      PG_CHECK(p.defined() && p.is_leaf() && is_floating(p.dtype()), "optimizer", "group ", g,
               " holds a tensor that is not a floating leaf parameter");
      PG_CHECK(p.is_contiguous() && p.device().is_cpu(), "optimizer",
               "parameters must be contiguous CPU tensors (got shape ", shape_str(p.shape()), ")");
    }
    state_.emplace_back(groups_[g].params.size());
  }
}

void Optimizer::step() {
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      Tensor& p = groups_[g].params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      grad = grad.contiguous();
      update(p, grad, groups_[g], state_[g][i]);
    }
  ++steps_;
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.set_grad(Tensor());
}

void Optimizer::set_lr(double lr) {
  for (auto& g : groups_) g.lr = lr;
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  out["step"] = scalar_tensor(static_cast<double>(steps_), {DType::I64});
  for (size_t g = 0; g < groups_.size(); ++g) {
    out["group." + std::to_string(g) + ".lr"] = scalar_tensor(groups_[g].lr, {DType::F64});
    for (size_t i = 0; i < state_[g].size(); ++i)
      for (auto& [name, t] : state_[g][i])
        out["state." + std::to_string(g) + "." + std::to_string(i) + "." + name] = t.clone();
  }
  return out;
}

void Optimizer::load_state_dict(const StateDict& state) {
  auto need = [&](const std::string& key) -> const Tensor& {
    auto it = state.find(key);
    PG_CHECK(it != state.end(), "optimizer.load_state_dict", "missing entry '", key, "'");
    return it->second;
  };
  int64_t steps = static_cast<int64_t>(need("step").item());
  std::vector<std::vector<std::map<std::string, Tensor>>> loaded(groups_.size());
  size_t used = 1;
  for (size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].lr = need("group." + std::to_string(g) + ".lr").item();
    ++used;
    loaded[g].resize(groups_[g].params.size());
  }
  for (auto& [key, t] : state) {
    if (key == "step" || key.rfind("group.", 0) == 0) continue;
    size_t g, i;
    char name[64];
    PG_CHECK(std::sscanf(key.c_str(), "state.%zu.%zu.%63s", &g, &i, name) == 3 &&
                 g < groups_.size() && i < groups_[g].params.size(),
             "optimizer.load_state_dict", "unexpected entry '", key, "'");
    const Tensor& p = groups_[g].params[i];
    bool counter = std::string(name) == "step";
    PG_CHECK(counter ? t.numel() == 1 : t.shape() == p.shape(), "optimizer.load_state_dict",
             "entry '", key, "' has shape ", shape_str(t.shape()), " but the parameter has shape ",
             shape_str(p.shape()));
    loaded[g][i][name] = (counter ? t.to(DType::F64) : t.to(p.dtype())).clone().detach();
    ++used;
  }
  PG_CHECK(used == state.size(), "optimizer.load_state_dict", "unexpected entries in the state");
  state_ = std::move(loaded);
  steps_ = steps;
}

SGD::SGD(std::vector<ParamGroup> groups, double momentum, bool nesterov)
    : Optimizer(std::move(groups)), momentum_(momentum), nesterov_(nesterov) {
  PG_CHECK(momentum >= 0, "SGD", "momentum must be >= 0, got ", momentum);
  PG_CHECK(!nesterov || momentum > 0, "SGD", "Nesterov momentum needs momentum > 0");
}

void SGD::update(Tensor& param, const Tensor& grad, const ParamGroup& group,
                 std::map<std::string, Tensor>& state) {
  bool first = !state.count("momentum");
  if (momentum_ > 0 && first) state["momentum"] = zeros_like(param);
  with_float(param, [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* buf = momentum_ > 0 ? state["momentum"].data<T>() : nullptr;
    T lr = static_cast<T>(group.lr), wd = static_cast<T>(group.weight_decay),
      mom = static_cast<T>(momentum_);
    int64_t n = param.numel();
#pragma omp parallel for if (big(n))
    for (int64_t i = 0; i < n; ++i) {
      T d = g[i] + wd * p[i];
      if (buf) {
        buf[i] = first ? d : mom * buf[i] + d;
        d = nesterov_ ? d + mom * buf[i] : buf[i];
      }
      p[i] -= lr * d;
    }
  });
}

Adam::Adam(std::vector<ParamGroup> groups, double beta1, double beta2, double eps, bool decoupled)
    : Optimizer(std::move(groups)), beta1_(beta1), beta2_(beta2), eps_(eps), decoupled_(decoupled) {
  PG_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, decoupled ? "AdamW" : "Adam",
           "betas must be in [0, 1), got ", beta1, ", ", beta2);
}

void Adam::update(Tensor& param, const Tensor& grad, const ParamGroup& group,
                  std::map<std::string, Tensor>& state) {
  if (!state.count("exp_avg")) {
    state["exp_avg"] = zeros_like(param);
    state["exp_avg_sq"] = zeros_like(param);
    state["step"] = scalar_tensor(0, {DType::F64});
  }
  // A step count per parameter (as in PyTorch): parameters that skip steps stay correct.
  Tensor& st = state["step"];
  double t = st.item() + 1;
  st.fill_(t);
  with_float(param, [&](auto tag) {
    using T = decltype(tag);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* m = state["exp_avg"].data<T>();
    T* v = state["exp_avg_sq"].data<T>();
    double bc1 = 1 - std::pow(beta1_, t), bc2 = 1 - std::pow(beta2_, t);
    T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_), eps = static_cast<T>(eps_);
    T step_size = static_cast<T>(group.lr / bc1), sqrt_bc2 = static_cast<T>(std::sqrt(bc2));
    T decay = static_cast<T>(1 - group.lr * group.weight_decay);
    T l2 = decoupled_ ? T(0) : static_cast<T>(group.weight_decay);
    bool dec = decoupled_;
    int64_t n = param.numel();
#pragma omp parallel for if (big(n))
    for (int64_t i = 0; i < n; ++i) {
      T gi = g[i] + l2 * p[i];
      if (dec) p[i] *= decay;
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
    }
  });
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard no_grad;
  double sq = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor g64 = g.to(DType::F64);
    sq += sum(mul(g64, g64)).item();
  }
  double norm = std::sqrt(sq);
  if (norm > max_norm && norm > 0) {
    double scale = max_norm / (norm + 1e-6);
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) const_cast<Tensor&>(p).set_grad(mul(g, scale));
    }
  }
  return norm;
}

WarmupCosineLR::WarmupCosineLR(double base, int64_t warmup, int64_t total, double min_lr)
    : base_(base), min_(min_lr), warmup_(warmup), total_(total) {
  PG_CHECK(warmup >= 0 && total > 0, "WarmupCosineLR", "need warmup >= 0 and total > 0, got ",
           warmup, ", ", total);
}

double WarmupCosineLR::lr_at(int64_t step) const {
  if (step < warmup_) return base_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  if (step >= total_) return min_;
  double progress = static_cast<double>(step - warmup_) /
                    static_cast<double>(std::max<int64_t>(total_ - warmup_, 1));
  return min_ + 0.5 * (base_ - min_) * (1 + std::cos(M_PI * progress));
}

}  // namespace pg
