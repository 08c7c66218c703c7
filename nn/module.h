// Module: named parameters, buffers and sub-modules registered once, state dicts, modes.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "nn/state_dict.h"

namespace pg {

/// Tensors with their dotted names, in registration order.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

/// Base of every layer and model. Subclasses register their tensor members and children in
/// the constructor; listing, saving, loading, moving and mode switches follow from that.
/// Non-copyable and non-movable (registered slots point into the object): hold modules in
/// std::shared_ptr.
class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Single-input forward; the default throws pg::Error (modules with other inputs overload).
  virtual Tensor forward(const Tensor& x);
  /// Calls forward(x).
  Tensor operator()(const Tensor& x) { return forward(x); }
  /// Name of the module type, for messages.
  virtual std::string type_name() const { return "Module"; }

  /// Trainable tensors with dotted names ("blocks.3.attn.qkv.weight"), in registration order;
  /// a tensor registered in several places (tied weights) is listed once, under its first name.
  NamedTensors named_parameters() const;
  /// Trainable tensors, each listed once.
  std::vector<Tensor> parameters() const;
  /// Non-trainable state with dotted names, in registration order.
  NamedTensors named_buffers() const;
  /// This module (named "") and every sub-module with dotted names, depth first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  /// Number of trainable scalars (tied weights counted once).
  int64_t num_parameters() const;

  /// Sets training mode here and in every sub-module.
  void train(bool on = true);
  /// Sets evaluation mode here and in every sub-module (train(false)).
  void eval() { train(false); }
  /// Whether this module is in training mode.
  bool is_training() const { return training_; }
  /// Clears every parameter's gradient (to an undefined tensor).
  void zero_grad();
  /// Moves parameters and buffers to `device` as fresh leaves (keeping requires_grad, tied
  /// weights stay tied, gradients dropped); tensors already there keep their handles. All or
  /// nothing: a failed move (e.g. to CUDA in a CPU-only build) changes nothing.
  void to(Device device);
  /// Converts floating parameters and buffers to `dtype` (e.g. f64 for gradcheck) the same
  /// way; integer buffers keep their dtype.
  void to(DType dtype);

  /// Parameters and buffers by dotted name: detached handles sharing storage with the module.
  StateDict state_dict() const;
  /// Copies values into the module's tensors in place (converting dtype and device). strict:
  /// a missing or unexpected name is a pg::Error; a wrong shape always is. Everything is
  /// checked before anything is copied, so a refused load leaves the module unchanged.
  void load_state_dict(const StateDict& state, bool strict = true);
  /// The checks of load_state_dict alone: a pg::Error where it would refuse `state`, and no
  /// change to the module either way.
  void check_state_dict(const StateDict& state, bool strict = true) const;

 protected:
  /// Registers a tensor member as a trainable parameter (turns on requires_grad).
  void register_parameter(const std::string& name, Tensor* slot);
  /// Registers a tensor member as non-trainable state (saved in state_dict, moved by to).
  void register_buffer(const std::string& name, Tensor* slot);
  /// Registers a child module under `name` ("fc1", or "blocks.0" for a list) and returns it.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }

 private:
  /// A registered tensor member.
  struct Slot {
    std::string name;
    Tensor* tensor;
    bool trainable;
  };

  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void check_new_name(const std::string& name, const char* what) const;
  /// Calls f(dotted name, slot) for every parameter and/or buffer, depth first.
  void visit_slots(const std::function<void(const std::string&, const Slot&)>& f,
                   const std::string& prefix = "") const;
  /// What load_state_dict copies, (module tensor, value), once every check has passed.
  std::vector<std::pair<Tensor*, Tensor>> plan_load(const StateDict& state, bool strict) const;
  /// Replaces every slot by convert(slot), keeping tied slots tied; all or nothing.
  void replace_slots(const std::function<Tensor(const Tensor&)>& convert);

  std::vector<Slot> slots_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace pg
