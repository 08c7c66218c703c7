// Hooks that run when a leaf's gradient is complete for the current backward pass: where
// data-parallel training starts communicating while the rest of backward still runs.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "core/tensor.h"

namespace pg {

/// Called on the backward thread, once per backward() for each hooked leaf the pass reaches,
/// after the pass's last contribution was added to the leaf's .grad (still undefined when
/// every contribution was). Leaves the pass does not reach get no call; grad() calls none.
using GradReadyHook = std::function<void(const Tensor& leaf)>;

/// Owns one registered hook and removes it when destroyed.
class GradReadyHookHandle {
 public:
  GradReadyHookHandle() = default;
  explicit GradReadyHookHandle(uint64_t id) : id_(id) {}
  ~GradReadyHookHandle() { reset(); }
  GradReadyHookHandle(GradReadyHookHandle&& o) noexcept : id_(o.id_) { o.id_ = 0; }
  GradReadyHookHandle& operator=(GradReadyHookHandle&& o) noexcept;
  GradReadyHookHandle(const GradReadyHookHandle&) = delete;
  GradReadyHookHandle& operator=(const GradReadyHookHandle&) = delete;
  /// Removes the hook now.
  void reset();

 private:
  uint64_t id_ = 0;
};

/// Registers `hook` for the leaf tensor `leaf` (one that requires grad and has no grad_fn).
[[nodiscard]] GradReadyHookHandle add_grad_ready_hook(const Tensor& leaf, GradReadyHook hook);

namespace detail {
/// True when any hook is registered (the engine then counts each leaf's incoming edges).
bool any_grad_ready_hooks();
/// Runs the hooks registered for `leaf`.
void run_grad_ready_hooks(const std::shared_ptr<TensorImpl>& leaf);
}  // namespace detail

}  // namespace pg
