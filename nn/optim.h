// Optimizers with fused per-parameter update loops, gradient clipping.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/state_dict.h"

namespace pg {

/// Parameters that share a learning rate and weight decay.
struct ParamGroup {
  std::vector<Tensor> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

/// Base of every optimizer: groups, per-parameter state, state dicts.
class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  /// Updates every parameter that has a gradient, in place, without recording a graph.
  void step();
  /// Clears the gradients of all parameters.
  void zero_grad();
  std::vector<ParamGroup>& param_groups() { return groups_; }
  /// Sets the learning rate of every group.
  void set_lr(double lr);
  /// Steps taken so far.
  int64_t steps() const { return steps_; }
  /// Step count, learning rates and per-parameter state ("state.<group>.<param>.<name>").
  StateDict state_dict() const;
  /// Restores state_dict(); strict: a missing, unexpected or wrongly shaped entry is an error.
  void load_state_dict(const StateDict& state);

 protected:
  /// Updates one parameter; `state` holds its named buffers (created on first use).
  virtual void update(Tensor& param, const Tensor& grad, const ParamGroup& group,
                      std::map<std::string, Tensor>& state) = 0;

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<std::map<std::string, Tensor>>> state_;
  int64_t steps_ = 0;
};

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay
/// (torch.optim.SGD semantics, dampening 0).
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, double momentum = 0.0, bool nesterov = false);

 protected:
  void update(Tensor& param, const Tensor& grad, const ParamGroup& group,
              std::map<std::string, Tensor>& state) override;

 private:
  double momentum_;
  bool nesterov_;
};

/// Adam (torch.optim.Adam: weight decay added to the gradient) or, with decoupled = true,
/// AdamW (torch.optim.AdamW: p -= lr * wd * p). One fused loop per parameter.
class Adam : public Optimizer {
 public:
  Adam(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
       bool decoupled = false);

 protected:
  void update(Tensor& param, const Tensor& grad, const ParamGroup& group,
              std::map<std::string, Tensor>& state) override;

 private:
  double beta1_, beta2_, eps_;
  bool decoupled_;
};

/// Adam with decoupled weight decay.
class AdamW : public Adam {
 public:
  AdamW(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
      : Adam(std::move(groups), beta1, beta2, eps, true) {}
};

/// Scales all gradients so that their global L2 norm is at most max_norm; returns the norm
/// before clipping. Gradients are replaced by new tensors, never scaled in place.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

/// Learning rate as a function of the step.
class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual double lr_at(int64_t step) const = 0;
};

/// The same rate at every step.
class ConstantLR : public LrSchedule {
 public:
  explicit ConstantLR(double lr) : lr_(lr) {}
  double lr_at(int64_t) const override { return lr_; }

 private:
  double lr_;
};

/// Linear warm-up from 0 to base over `warmup` steps, cosine decay to min_lr at `total`.
class WarmupCosineLR : public LrSchedule {
 public:
  WarmupCosineLR(double base, int64_t warmup, int64_t total, double min_lr = 0.0);
  double lr_at(int64_t step) const override;

 private:
  double base_, min_;
  int64_t warmup_, total_;
};

}  // namespace pg
