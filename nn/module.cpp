#include "nn/module.h"

#include <map>
#include <set>

#include "autograd/grad_mode.h"

namespace pg {

Tensor Module::forward(const Tensor&) {
  throw Error("forward",
              type_name() + " has no single-input forward; call the forward overload it defines");
}

void Module::check_new_name(const std::string& name, const char* what) const {
  PG_CHECK(!name.empty(), type_name(), what, " name must not be empty");
  for (auto& s : slots_)
    PG_CHECK(s.name != name, type_name(), what, " name '", name, "' is already registered");
  for (auto& [n, c] : children_)
    PG_CHECK(n != name, type_name(), what, " name '", name,
             "' is already registered as a sub-module");
}

void Module::register_parameter(const std::string& name, Tensor* slot) {
  check_new_name(name, "parameter");
  PG_CHECK(slot && slot->defined(), type_name(), "parameter '", name, "' is undefined");
  PG_CHECK(is_floating(slot->dtype()), type_name(), "parameter '", name,
           "' must be floating point, got ", dtype_name(slot->dtype()));
  if (!slot->requires_grad()) slot->requires_grad_(true);
  slots_.push_back({name, slot, true});
}

void Module::register_buffer(const std::string& name, Tensor* slot) {
  check_new_name(name, "buffer");
  PG_CHECK(slot && slot->defined(), type_name(), "buffer '", name, "' is undefined");
  slots_.push_back({name, slot, false});
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name, "sub-module");
  PG_CHECK(child != nullptr, type_name(), "sub-module '", name, "' is null");
  PG_CHECK(child.get() != this, type_name(), "sub-module '", name, "' is the module itself");
  children_.emplace_back(name, std::move(child));
}

void Module::visit_slots(const std::function<void(const std::string&, const Slot&)>& f,
                         const std::string& prefix) const {
  for (auto& s : slots_) f(prefix + s.name, s);
  for (auto& [n, c] : children_) c->visit_slots(f, prefix + n + ".");
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  std::set<const TensorImpl*> seen;  // optimizers must not step a tied weight twice
  visit_slots([&](const std::string& n, const Slot& s) {
    if (s.trainable && seen.insert(s.tensor->impl_ptr().get()).second)
      out.emplace_back(n, *s.tensor);
  });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  visit_slots([&](const std::string& n, const Slot& s) {
    if (!s.trainable) out.emplace_back(n, *s.tensor);
  });
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
  visit_slots([](const std::string&, const Slot& s) {
    if (s.trainable) s.tensor->set_grad(Tensor());
  });
}

void Module::replace_slots(const std::function<Tensor(const Tensor&)>& convert) {
  // Convert every distinct tensor first (a throw leaves the module as it was), keyed by impl so
  // that tied slots (GPT's embedding and head) receive one shared result. The map keeps the
  // old handles alive, so no freed impl address can be reused as a key.
  std::map<const TensorImpl*, std::pair<Tensor, Tensor>> converted;
  std::vector<Tensor*> slots;
  visit_slots([&](const std::string&, const Slot& s) {
    slots.push_back(s.tensor);
    auto [it, fresh] = converted.try_emplace(s.tensor->impl_ptr().get());
    if (!fresh) return;
    Tensor out = convert(s.tensor->detach());
    if (out.shares_storage(*s.tensor)) {
      out = *s.tensor;  // nothing to do: keep the handle, so optimizers still hold it
    } else if (s.tensor->requires_grad()) {
      out.requires_grad_(true);
    }
    it->second = {*s.tensor, out};
  });
  for (Tensor* t : slots) *t = converted.at(t->impl_ptr().get()).second;
}

void Module::to(Device device) {
  replace_slots([&](const Tensor& t) { return t.to(device); });
}

void Module::to(DType dtype) {
  replace_slots([&](const Tensor& t) { return is_floating(t.dtype()) ? t.to(dtype) : t; });
}

StateDict Module::state_dict() const {
  StateDict out;
  visit_slots([&](const std::string& n, const Slot& s) { out[n] = s.tensor->detach(); });
  return out;
}

std::vector<std::pair<Tensor*, Tensor>> Module::plan_load(const StateDict& state,
                                                          bool strict) const {
  std::vector<std::pair<Tensor*, Tensor>> plan;
  std::set<std::string> used;
  std::string missing;
  visit_slots([&](const std::string& n, const Slot& s) {
    Tensor& t = *s.tensor;
    auto it = state.find(n);
    if (it == state.end()) {
      missing += (missing.empty() ? "'" : ", '") + n + "' " + shape_str(t.shape());
      return;
    }
    const Tensor& src = it->second;
    PG_CHECK(src.defined(), "load_state_dict", "tensor '", n, "' is undefined");
    PG_CHECK(src.shape() == t.shape(), "load_state_dict", "tensor '", n, "' has shape ",
             shape_str(src.shape()), " but ", type_name(), " expects ", shape_str(t.shape()));
    plan.emplace_back(&t, src);
    used.insert(n);
  });
  if (strict) {
    PG_CHECK(missing.empty(), "load_state_dict", "missing tensor(s) ", missing, " expected by ",
             type_name());
    std::string unexpected;
    for (auto& [n, t] : state)
      if (!used.count(n))
        unexpected += (unexpected.empty() ? "'" : ", '") + n + "' " +
                      (t.defined() ? shape_str(t.shape()) : std::string("(undefined)"));
    PG_CHECK(unexpected.empty(), "load_state_dict", "unexpected tensor(s) ", unexpected, " (",
             type_name(), " has no such parameter or buffer)");
  }
  return plan;
}

void Module::check_state_dict(const StateDict& state, bool strict) const {
  (void)plan_load(state, strict);
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NoGradGuard no_grad;
  for (auto& [t, src] : plan_load(state, strict)) t->copy_(src.detach().to(t->device()));
}

}  // namespace pg
