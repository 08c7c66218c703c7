#include "autograd/grad_ready.h"

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace pg {

namespace {

struct Registry {
  std::mutex mutex;
  uint64_t next_id = 1;
  std::atomic<int64_t> count{0};
  struct Entry {
    uint64_t id;
    std::weak_ptr<TensorImpl> leaf;
    GradReadyHook hook;
  };
  std::unordered_map<const TensorImpl*, std::vector<Entry>> by_leaf;
  std::unordered_map<uint64_t, const TensorImpl*> leaf_of;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

GradReadyHookHandle& GradReadyHookHandle::operator=(GradReadyHookHandle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = 0;
  }
  return *this;
}

void GradReadyHookHandle::reset() {
  if (id_ == 0) return;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.leaf_of.find(id_);
  if (it != r.leaf_of.end()) {
    auto& entries = r.by_leaf[it->second];
    std::erase_if(entries, [&](const Registry::Entry& e) { return e.id == id_; });
    if (entries.empty()) r.by_leaf.erase(it->second);
    r.leaf_of.erase(it);
    r.count.fetch_sub(1);
  }
  id_ = 0;
}

GradReadyHookHandle add_grad_ready_hook(const Tensor& leaf, GradReadyHook hook) {
  PG_CHECK(leaf.defined() && leaf.requires_grad() && !leaf.grad_fn(), "add_grad_ready_hook",
           "expected a leaf tensor that requires grad (a parameter)");
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  const uint64_t id = r.next_id++;
  r.by_leaf[leaf.impl_ptr().get()].push_back({id, leaf.impl_ptr(), std::move(hook)});
  r.leaf_of[id] = leaf.impl_ptr().get();
  r.count.fetch_add(1);
  return GradReadyHookHandle(id);
}

namespace detail {

bool any_grad_ready_hooks() { return registry().count.load() > 0; }

void run_grad_ready_hooks(const std::shared_ptr<TensorImpl>& leaf) {
  Registry& r = registry();
  std::vector<GradReadyHook> hooks;
  {
    std::lock_guard lock(r.mutex);
    auto it = r.by_leaf.find(leaf.get());
    if (it == r.by_leaf.end()) return;
    for (const auto& e : it->second)
      if (e.leaf.lock() == leaf) hooks.push_back(e.hook);  // not a new tensor at a reused address
  }
  Tensor t(leaf);
  for (const auto& h : hooks) h(t);
}

}  // namespace detail

}  // namespace pg
