// The optimizer base: parameter groups, stepping, and strict state dicts.
#include "nn/optim.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <string_view>

#include "autograd/grad_mode.h"
#include "kernels/factory.h"
#include "nn/module.h"

namespace pg {

std::vector<ParamGroup> decay_groups(const Module& model, double lr, double weight_decay,
                                     const std::vector<std::string>& no_decay) {
  ParamGroup decay{{}, lr, weight_decay}, rest{{}, lr, 0.0};
  for (auto& [name, p] : model.named_parameters()) {
    bool listed = std::find(no_decay.begin(), no_decay.end(), name) != no_decay.end();
    (p.dim() >= 2 && !listed ? decay : rest).params.push_back(p);
  }
  return {decay, rest};
}

namespace {

constexpr const char* kLoad = "optimizer.load_state_dict";

// Reads a decimal index at s[pos...] up to the next '.'; strict (no sign, no spaces).
bool parse_index(std::string_view s, size_t& pos, size_t& out) {
  size_t dot = s.find('.', pos);
  if (dot == std::string_view::npos || dot == pos) return false;
  auto [end, ec] = std::from_chars(s.data() + pos, s.data() + dot, out);
  if (ec != std::errc() || end != s.data() + dot) return false;
  pos = dot + 1;
  return true;
}

// The single value of a state entry that must hold one number.
double scalar_entry(const std::string& key, const Tensor& t) {
  PG_CHECK(t.numel() == 1, kLoad, "entry '", key, "' must hold one value, got shape ",
           shape_str(t.shape()));
  double v = t.item();
  PG_CHECK(std::isfinite(v) && v >= 0, kLoad, "entry '", key, "' must be finite and >= 0, got ", v);
  return v;
}

// A step counter: a whole number from 0 to 2^53 (above that a double, which holds it during
// the update, no longer counts in ones; an int64_t cast of a larger value is undefined).
double step_entry(const std::string& key, const Tensor& t) {
  double v = scalar_entry(key, t);
  PG_CHECK(v == std::floor(v) && v <= 9007199254740992.0, kLoad, "entry '", key,
           "' must be an integer from 0 to 2^53, got ", v);
  return v;
}

}  // namespace

Optimizer::Optimizer(std::vector<ParamGroup> groups, const char* name)
    : name_(name), groups_(std::move(groups)) {
  check_groups();
}

void Optimizer::check_groups() {
  validate_groups();
  state_.resize(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) state_[g].resize(groups_[g].params.size());
}

void Optimizer::validate_groups() const {
  std::set<const TensorImpl*> seen;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    PG_CHECK(group.lr >= 0 && group.weight_decay >= 0, name(), "group ", g,
             " needs lr >= 0 and weight_decay >= 0, got lr ", group.lr, ", weight_decay ",
             group.weight_decay);
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor& p = group.params[i];
      PG_CHECK(p.defined(), name(), "group ", g, " parameter ", i, " is undefined");
      PG_CHECK(p.is_leaf() && is_floating(p.dtype()), name(), "group ", g, " parameter ", i,
               " must be a floating leaf tensor, got ", dtype_name(p.dtype()),
               p.is_leaf() ? "" : " produced by an op");
      // The fused update kernels walk a parameter as one flat array, on whichever device.
      PG_CHECK(p.is_contiguous(), name(), "group ", g, " parameter ", i,
               " must be a contiguous tensor, got shape ", shape_str(p.shape()), " on ",
               p.device().str(), " (not contiguous)");
      // Updating one tensor twice per step would silently double its learning rate.
      PG_CHECK(seen.insert(p.impl_ptr().get()).second, name(), "group ", g, " parameter ", i,
               " appears more than once in the parameter groups");
    }
  }
}

void Optimizer::step() {
  check_groups();
  NoGradGuard no_grad;
  // Every gradient is checked before any parameter changes, so a bad one leaves all intact;
  // the updates go in one batch per device, in the order the devices first appear.
  std::vector<std::vector<Update>> batches;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& p = groups_[g].params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      PG_CHECK(grad.dtype() == p.dtype() && grad.device() == p.device(), name(), "group ", g,
               " parameter ", i, " is ", dtype_name(p.dtype()), " on ", p.device().str(),
               " but its gradient is ", dtype_name(grad.dtype()), " on ", grad.device().str());
      PG_CHECK(grad.shape() == p.shape(), name(), "group ", g, " parameter ", i, " has shape ",
               shape_str(p.shape()), " but its gradient has shape ", shape_str(grad.shape()));
      auto same = std::find_if(batches.begin(), batches.end(), [&](const std::vector<Update>& b) {
        return b[0].param.device() == p.device();
      });
      if (same == batches.end()) same = batches.insert(batches.end(), std::vector<Update>{});
      same->push_back({p, grad.contiguous(), &groups_[g], &state_[g][i]});
    }
  for (const auto& batch : batches) update(batch);
  ++steps_;
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.set_grad(Tensor());
}

void Optimizer::set_lr(double lr) {
  PG_CHECK(lr >= 0, name(), "learning rate must be >= 0, got ", lr);
  for (auto& g : groups_) g.lr = lr;
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  out["step"] = scalar_tensor(static_cast<double>(steps_), {DType::I64});
  for (size_t g = 0; g < groups_.size(); ++g) {
    out["group." + std::to_string(g) + ".lr"] = scalar_tensor(groups_[g].lr, {DType::F64});
    if (g >= state_.size()) continue;  // a group added since the last step has no state yet
    for (size_t i = 0; i < state_[g].size(); ++i)
      for (auto& [buf, t] : state_[g][i])
        out["state." + std::to_string(g) + "." + std::to_string(i) + "." + buf] = t.clone();
  }
  return out;
}

Optimizer::Staged Optimizer::stage(const StateDict& state) const {
  validate_groups();
  auto need = [&](const std::string& key) -> const Tensor& {
    auto it = state.find(key);
    PG_CHECK(it != state.end(), kLoad, "missing entry '", key, "'");
    return it->second;
  };
  // Everything is checked before load_state_dict changes anything.
  const double steps = step_entry("step", need("step"));
  std::vector<double> lrs;
  for (size_t g = 0; g < groups_.size(); ++g) {
    std::string key = "group." + std::to_string(g) + ".lr";
    lrs.push_back(scalar_entry(key, need(key)));
  }
  std::vector<std::string> names = state_names();
  std::vector<std::vector<std::map<std::string, Tensor>>> loaded(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) loaded[g].resize(groups_[g].params.size());
  for (const auto& [key, t] : state) {
    if (key == "step") continue;
    std::string_view k = key;
    size_t pos = 0, g = 0, i = 0;
    if (k.starts_with("group.")) {
      pos = 6;
      PG_CHECK(parse_index(k, pos, g) && k.substr(pos) == "lr" && g < groups_.size(), kLoad,
               "unexpected entry '", key, "' (this optimizer has ", groups_.size(), " groups)");
      continue;
    }
    pos = 6;
    bool ok = k.starts_with("state.") && parse_index(k, pos, g) && g < groups_.size() &&
              parse_index(k, pos, i) && i < groups_[g].params.size();
    std::string buf = ok ? std::string(k.substr(pos)) : "";
    ok = ok && std::find(names.begin(), names.end(), buf) != names.end();
    PG_CHECK(ok, kLoad, "unexpected entry '", key, "' for ", name());
    const Tensor& p = groups_[g].params[i];
    PG_CHECK(t.defined(), kLoad, "entry '", key, "' is undefined");
    if (buf == "step") {  // a per-parameter step counter: at most the optimizer's own
      double v = step_entry(key, t);
      PG_CHECK(v <= steps, kLoad, "entry '", key, "' is ", v, ", more than the optimizer's 'step' ",
               steps, " (a parameter cannot have been updated more often than the optimizer)");
      loaded[g][i][buf] = scalar_tensor(v, {DType::F64});
    } else {
      PG_CHECK(t.shape() == p.shape(), kLoad, "entry '", key, "' has shape ", shape_str(t.shape()),
               " but its parameter has shape ", shape_str(p.shape()));
      // Copying would convert silently; a buffer of another dtype was not saved for this model.
      PG_CHECK(t.dtype() == p.dtype(), kLoad, "entry '", key, "' is ", dtype_name(t.dtype()),
               " but its parameter is ", dtype_name(p.dtype()));
      loaded[g][i][buf] = t;
    }
  }
  // A parameter has either no state (never updated) or all of it.
  for (size_t g = 0; g < loaded.size(); ++g)
    for (size_t i = 0; i < loaded[g].size(); ++i) {
      if (loaded[g][i].empty()) continue;
      for (const std::string& buf : names)
        PG_CHECK(loaded[g][i].count(buf), kLoad, "missing entry 'state.", g, ".", i, ".", buf, "'");
    }
  return {steps, std::move(lrs), std::move(loaded)};
}

void Optimizer::check_state_dict(const StateDict& state) const { (void)stage(state); }

void Optimizer::load_state_dict(const StateDict& state) {
  Staged staged = stage(state);  // the groups validated; state_ is replaced whole below
  // Copies, on the parameters' devices: the state must not share storage with `state`.
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i)
      for (auto& [buf, t] : staged.state[g][i]) {
        if (buf == "step") continue;  // already a fresh scalar
        Tensor c = empty_like(groups_[g].params[i]);
        c.copy_(t.detach().to(c.device()));
        t = c;
      }
  for (size_t g = 0; g < groups_.size(); ++g) groups_[g].lr = staged.lrs[g];
  state_ = std::move(staged.state);
  steps_ = static_cast<int64_t>(staged.steps);
}

}  // namespace pg
