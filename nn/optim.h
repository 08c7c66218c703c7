// Optimizers with one fused update loop per parameter, and gradient clipping.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/lr_schedule.h"  // training programs that include the optimizers use schedules too
#include "nn/state_dict.h"

namespace pg {

/// Parameters that share a learning rate and weight decay.
struct ParamGroup {
  std::vector<Tensor> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

class Module;

/// The usual AdamW split: matrices (dim >= 2) decay with `weight_decay`; vectors (biases, norm
/// weights) and the parameters named in `no_decay` (for example positions) do not.
std::vector<ParamGroup> decay_groups(const Module& model, double lr, double weight_decay,
                                     const std::vector<std::string>& no_decay = {});

/// What restore_checkpoint needs of an optimizer: an Optimizer, or one sharded over the
/// processes of a data-parallel job (pg::dist::DistributedOptimizer); both read the format of
/// Optimizer::state_dict.
class RestorableOptimizer {
 public:
  virtual ~RestorableOptimizer() = default;
  /// Calls of step() so far.
  virtual int64_t steps() const = 0;
  /// A pg::Error where load_state_dict would refuse `state`, and no change either way.
  virtual void check_state_dict(const StateDict& state) const = 0;
  /// Restores a state dict (strict: a pg::Error naming the entry, and no change, if refused).
  virtual void load_state_dict(const StateDict& state) = 0;
};

/// Base of every optimizer: groups, per-parameter state, state dicts.
class Optimizer : public RestorableOptimizer {
 public:
  /// Parameters must be floating, contiguous leaves, each in at most one group.
  explicit Optimizer(std::vector<ParamGroup> groups) : Optimizer(std::move(groups), "optimizer") {}
  virtual ~Optimizer() = default;
  /// Updates every parameter that has a gradient, in place on its storage, without recording
  /// a graph; parameters whose gradient is undefined are skipped.
  virtual void step();
  /// Clears the gradients of all parameters (sets them to undefined).
  void zero_grad();
  /// The groups; lr and weight_decay may be changed between steps.
  std::vector<ParamGroup>& param_groups() { return groups_; }
  /// Sets the learning rate of every group.
  void set_lr(double lr);
  /// Calls of step() so far.
  int64_t steps() const override { return steps_; }
  /// "step" (0-d i64), "group.<g>.lr" (0-d f64) and per-parameter buffers
  /// "state.<g>.<i>.<name>" (copies), so that a resumed run repeats the original bit for bit.
  StateDict state_dict() const;
  /// Restores state_dict(); strict: a missing, unexpected or wrongly shaped entry raises a
  /// pg::Error naming it, and the optimizer is left unchanged.
  void load_state_dict(const StateDict& state) override;
  /// The checks of load_state_dict alone: a pg::Error where it would refuse `state`, and no
  /// change to the optimizer either way.
  void check_state_dict(const StateDict& state) const override;
  /// The buffers step() keeps per updated parameter: "step" a 0-d count, the others shaped like
  /// the parameter.
  virtual std::vector<std::string> state_names() const = 0;

 protected:
  /// Same, with the optimizer's name for error messages (a base constructor cannot ask a
  /// virtual function for it).
  Optimizer(std::vector<ParamGroup> groups, const char* name);
  /// The optimizer's name in error messages.
  const char* name() const { return name_; }
  /// One parameter's share of a step.
  struct Update {
    Tensor param;  ///< contiguous; a handle on the parameter's own storage
    Tensor grad;   ///< contiguous, of the parameter's shape, dtype and device
    const ParamGroup* group;
    std::map<std::string, Tensor>* state;  ///< its buffers (empty before its first update)
  };
  /// Updates parameters that all live on one device, in place (one batched kernel call, so
  /// that a GPU step costs a few launches rather than one per parameter).
  virtual void update(const std::vector<Update>& updates) = 0;

 private:
  /// Validates the groups (they may have been edited) and sizes the state to match.
  void check_groups();
  /// The checks of check_groups alone.
  void validate_groups() const;
  /// A checked state dict, not yet applied: the step, each group's lr, and per parameter the
  /// entries of `state` for its buffers (not yet copied).
  struct Staged {
    double steps;
    std::vector<double> lrs;
    std::vector<std::vector<std::map<std::string, Tensor>>> state;
  };
  Staged stage(const StateDict& state) const;

  const char* name_;
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<std::map<std::string, Tensor>>> state_;
  int64_t steps_ = 0;
};

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay added to
/// the gradient (torch.optim.SGD semantics with dampening 0).
class SGD : public Optimizer {
 public:
  /// momentum >= 0; nesterov needs momentum > 0.
  SGD(std::vector<ParamGroup> groups, double momentum = 0.0, bool nesterov = false);
  std::vector<std::string> state_names() const override;

 protected:
  void update(const std::vector<Update>& updates) override;

 private:
  double momentum_;
  bool nesterov_;
};

/// Adam (torch.optim.Adam: weight decay added to the gradient as L2) or, with decoupled =
/// true, AdamW (torch.optim.AdamW: p -= lr * wd * p). One fused pass over each parameter.
class Adam : public Optimizer {
 public:
  /// betas in [0, 1), eps >= 0.
  Adam(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
       bool decoupled = false);
  std::vector<std::string> state_names() const override;

 protected:
  void update(const std::vector<Update>& updates) override;

 private:
  double beta1_, beta2_, eps_;
  bool decoupled_;
};

/// Adam with decoupled weight decay (torch.optim.AdamW semantics).
class AdamW : public Adam {
 public:
  /// betas in [0, 1), eps >= 0.
  AdamW(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
      : Adam(std::move(groups), beta1, beta2, eps, true) {}
};

/// Global L2 norm of all defined gradients (accumulated in f64); when it exceeds max_norm,
/// every gradient is replaced by a new tensor scaled by max_norm / (norm + 1e-6), never
/// scaled in place (gradients may alias). Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace pg
