// Module: named parameters, buffers and sub-modules registered once, state dicts, modes.
#pragma once
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
/// the constructor; everything else (listing, saving, moving) follows from that.
class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Single-input forward; modules that take more inputs overload it.
  virtual Tensor forward(const Tensor& x);
  /// Calls forward(x).
  Tensor operator()(const Tensor& x) { return forward(x); }
  /// Name of the module type, for messages.
  virtual std::string type_name() const { return "Module"; }

  /// Trainable tensors with dotted names ("blocks.3.attn.qkv.weight"), each listed once.
  NamedTensors named_parameters() const;
  /// Trainable tensors, each listed once.
  std::vector<Tensor> parameters() const;
  /// Non-trainable state (included in state_dict).
  NamedTensors named_buffers() const;
  /// Sub-modules with dotted names, this module first as "".
  std::vector<std::pair<std::string, Module*>> named_modules();
  /// Number of trainable scalars.
  int64_t num_parameters() const;

  /// Sets training mode here and in every sub-module.
  void train(bool on = true);
  /// Sets evaluation mode (train(false)).
  void eval() { train(false); }
  bool is_training() const { return training_; }
  /// Clears every parameter's gradient.
  void zero_grad();
  /// Moves parameters and buffers to `device` (keeping requires_grad).
  void to(Device device);
  /// Converts floating parameters and buffers to `dtype` (e.g. f64 for gradcheck).
  void to(DType dtype);

  /// Parameters and buffers by dotted name, sharing storage with the module.
  StateDict state_dict() const;
  /// Copies values into the module's tensors. strict: a missing or unexpected name is an
  /// error; a wrong shape always is.
  void load_state_dict(const StateDict& state, bool strict = true);

 protected:
  /// Registers a tensor member as a trainable parameter (turns on requires_grad).
  void register_parameter(const std::string& name, Tensor* slot);
  /// Registers a tensor member as non-trainable state.
  void register_buffer(const std::string& name, Tensor* slot);
  /// Registers a child module and returns it.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  template <typename F>
  void visit_slots(F&& f, const std::string& prefix, bool params, bool buffers) const;

  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace pg
