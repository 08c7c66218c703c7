#include "autograd/node.h"

#include "autograd/grad_mode.h"

namespace pg {

namespace {

// Deleting a long chain recursively (node -> saved tensor -> its node -> ...) would overflow
// the stack; nodes released during another node's deletion are queued and deleted in a loop.
void delete_node(Node* node) {
  thread_local std::vector<Node*> queue;
  thread_local bool draining = false;
  queue.push_back(node);
  if (draining) return;
  draining = true;
  while (!queue.empty()) {
    Node* n = queue.back();
    queue.pop_back();
    delete n;
  }
  draining = false;
}

}  // namespace

TensorList Node::apply(const Tensor& grad_output) {
  PG_CHECK(fn_ != nullptr, name_,
           "trying to backward through the graph a second time (its saved tensors were freed); "
           "pass retain_graph=true to the first backward");
  return fn_(grad_output);
}

Tensor record(const char* name, Tensor out, const TensorList& inputs, BackwardFn fn) {
  if (!GradMode::is_enabled()) return out;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return out;
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined()) {
      e.shape = t.shape();
      e.dtype = t.dtype();
      if (t.requires_grad()) {
        if (t.grad_fn())
          e.fn = t.grad_fn();
        else
          e.leaf = t.impl_ptr();
      }
    }
    edges.push_back(std::move(e));
  }
  out.impl().grad_fn =
      std::shared_ptr<Node>(new Node(name, std::move(fn), std::move(edges)), delete_node);
  out.impl().requires_grad = true;
  return out;
}

Tensor record_with_output(const char* name, Tensor out, const TensorList& inputs,
                          OutputBackwardFn fn) {
  struct Saved {
    Tensor values;
    std::weak_ptr<Node> node;
  };
  auto saved = std::make_shared<Saved>();
  saved->values = out.detach();
  out = record(name, out, inputs, [saved, fn = std::move(fn)](const Tensor& g) -> TensorList {
    std::shared_ptr<Node> node = saved->node.lock();
    if (!GradMode::is_enabled() || !node) return fn(g, saved->values);
    // Double backward: the output as the result of this node, so its gradient reaches x.
    auto impl = std::make_shared<TensorImpl>(saved->values.impl());
    impl->requires_grad = true;
    impl->grad_fn = std::move(node);
    return fn(g, Tensor(std::move(impl)));
  });
  saved->node = out.grad_fn();
  return out;
}

void forbid_double_backward(const char* op) {
  PG_CHECK(!GradMode::is_enabled(), op,
           "double backward (create_graph=true) is not supported through this fused op; "
           "build it from elementary ops to take second derivatives");
}

}  // namespace pg
