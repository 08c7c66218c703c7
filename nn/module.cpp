#include "nn/module.h"

#include <set>

#include "autograd/grad_mode.h"

namespace pg {

Tensor Module::forward(const Tensor&) {
  throw Error(type_name(), "this module has no single-input forward");
}

void Module::register_parameter(const std::string& name, Tensor* slot) {
  PG_CHECK(slot && slot->defined(), type_name(), "parameter '", name, "' is undefined");
  if (!slot->requires_grad()) slot->requires_grad_(true);
  params_.emplace_back(name, slot);
}

void Module::register_buffer(const std::string& name, Tensor* slot) {
  PG_CHECK(slot && slot->defined(), type_name(), "buffer '", name, "' is undefined");
  buffers_.emplace_back(name, slot);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  PG_CHECK(child != nullptr, type_name(), "sub-module '", name, "' is null");
  children_.emplace_back(name, std::move(child));
}

// Calls f(dotted name, slot) for every parameter and/or buffer, depth first.
template <typename F>
void Module::visit_slots(F&& f, const std::string& prefix, bool params, bool buffers) const {
  if (params)
    for (auto& [n, s] : params_) f(prefix + n, s);
  if (buffers)
    for (auto& [n, s] : buffers_) f(prefix + n, s);
  for (auto& [n, c] : children_) c->visit_slots(f, prefix + n + ".", params, buffers);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  std::set<const TensorImpl*> seen;  // tied weights are listed once
  visit_slots(
      [&](const std::string& n, Tensor* t) {
        if (seen.insert(t->impl_ptr().get()).second) out.emplace_back(n, *t);
      },
      "", true, false);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  visit_slots([&](const std::string& n, Tensor* t) { out.emplace_back(n, *t); }, "", false, true);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [n, c] : children_)
    for (auto& [cn, m] : c->named_modules()) out.emplace_back(cn.empty() ? n : n + "." + cn, m);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::zero_grad() {
  visit_slots([](const std::string&, Tensor* t) { t->set_grad(Tensor()); }, "", true, false);
}

void Module::to(Device device) {
  visit_slots(
      [&](const std::string&, Tensor* t) {
        bool rg = t->requires_grad();
        *t = t->detach().to(device);
        if (rg) t->requires_grad_(true);
      },
      "", true, true);
}

void Module::to(DType dtype) {
  visit_slots(
      [&](const std::string&, Tensor* t) {
        if (!is_floating(t->dtype())) return;
        bool rg = t->requires_grad();
        *t = t->detach().to(dtype);
        if (rg) t->requires_grad_(true);
      },
      "", true, true);
}

StateDict Module::state_dict() const {
  StateDict out;
  visit_slots([&](const std::string& n, Tensor* t) { out[n] = t->detach(); }, "", true, true);
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NoGradGuard no_grad;
  std::set<std::string> used;
  visit_slots(
      [&](const std::string& n, Tensor* t) {
        auto it = state.find(n);
        if (it == state.end()) {
          PG_CHECK(!strict, "load_state_dict", "missing tensor '", n, "' of shape ",
                   shape_str(t->shape()), " for ", type_name());
          return;
        }
        PG_CHECK(it->second.shape() == t->shape(), "load_state_dict", "tensor '", n, "' has shape ",
                 shape_str(it->second.shape()), " but ", type_name(), " expects ",
                 shape_str(t->shape()));
        t->copy_(it->second.to(t->device()));
        used.insert(n);
      },
      "", true, true);
  if (!strict) return;
  for (auto& [n, t] : state)
    PG_CHECK(used.count(n), "load_state_dict", "unexpected tensor '", n, "' of shape ",
             shape_str(t.shape()), " (", type_name(), " has no such parameter or buffer)");
}

}  // namespace pg
