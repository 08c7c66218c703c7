// The update rules: the parameters of a device go to its fused update kernel as one batch (no
// chain of tensor ops, no temporaries), run by Optimizer::step without recording a graph.
#include <cmath>

#include "kernels/backend.h"
#include "kernels/factory.h"
#include "nn/optim.h"

namespace pg {

SGD::SGD(std::vector<ParamGroup> groups, double momentum, bool nesterov)
    : Optimizer(std::move(groups), "SGD"), momentum_(momentum), nesterov_(nesterov) {
  PG_CHECK(momentum >= 0, "SGD", "momentum must be >= 0, got ", momentum);
  PG_CHECK(!nesterov || momentum > 0, "SGD", "Nesterov momentum needs momentum > 0");
}

std::vector<std::string> SGD::state_names() const {
  if (momentum_ > 0) return {"momentum"};
  return {};
}

void SGD::update(const std::vector<Update>& updates) {
  std::vector<SgdParam> batch;
  for (const Update& u : updates) {
    auto& state = *u.state;
    // PyTorch seeds the momentum buffer with the first (decayed) gradient, not with zeros.
    bool first = momentum_ > 0 && !state.count("momentum");
    if (first) state["momentum"] = empty_like(u.param);
    Tensor buf = momentum_ > 0 ? state["momentum"] : Tensor();
    batch.push_back(
        {u.param, u.grad, buf, {u.group->lr, u.group->weight_decay, momentum_, nesterov_, first}});
  }
  backend_for(updates[0].param.device()).sgd_update(batch);
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

void Adam::update(const std::vector<Update>& updates) {
  std::vector<AdamParam> batch;
  for (const Update& u : updates) {
    auto& state = *u.state;
    if (!state.count("exp_avg")) {
      state["exp_avg"] = zeros_like(u.param);
      state["exp_avg_sq"] = zeros_like(u.param);
      state["step"] = scalar_tensor(0, {DType::F64});
    }
    // A step count per parameter (as in PyTorch): a parameter that skipped steps (no gradient)
    // gets the bias correction of the updates it actually had.
    Tensor& st = state["step"];
    const double t = st.item() + 1;
    st.fill_(t);
    // The bias corrections are folded into two scalars, the way torch.optim computes them:
    // p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
    const double bc1 = 1 - std::pow(beta1_, t), bc2 = 1 - std::pow(beta2_, t);
    const ParamGroup& group = *u.group;
    AdamStep s{beta1_,
               beta2_,
               eps_,
               group.lr / bc1,
               std::sqrt(bc2),
               decoupled_ ? 1 - group.lr * group.weight_decay : 1.0,
               decoupled_ ? 0.0 : group.weight_decay};
    batch.push_back({u.param, u.grad, state["exp_avg"], state["exp_avg_sq"], s});
  }
  backend_for(updates[0].param.device()).adam_update(batch);
}

}  // namespace pg
