#include "autograd/engine.h"

#include <unordered_map>

#include "autograd/grad_mode.h"
#include "autograd/grad_ready.h"
#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

namespace {

Tensor accumulate(const Tensor& acc, const Tensor& g) { return acc.defined() ? add(acc, g) : g; }

// Gradients of the requested inputs, keyed by their impl (for grad()).
using Captures = std::unordered_map<const TensorImpl*, Tensor>;

void check_grad(const Node& node, size_t i, const Tensor& g) {
  const Edge& e = node.next()[i];
  PG_CHECK(g.shape() == e.shape && g.dtype() == e.dtype, node.name(),
           "internal error: backward produced a gradient of shape ", shape_str(g.shape()), " ",
           dtype_name(g.dtype()), " for input ", i, " of shape ", shape_str(e.shape), " ",
           dtype_name(e.dtype));
}

void run_backward(const Tensor& output, const Tensor& grad_output, bool retain_graph,
                  bool create_graph, Captures* captures) {
  PG_CHECK(output.requires_grad(), "backward",
           "the tensor does not require grad and has no grad_fn (did you forget "
           "requires_grad_() on an input, or run under NoGradGuard?)");
  Tensor root_grad = grad_output;
  if (!root_grad.defined()) {
    PG_CHECK(output.numel() == 1, "backward",
             "grad can be implicitly created only for one-element outputs, got shape ",
             shape_str(output.shape()), "; pass an explicit gradient");
    root_grad = ones(output.shape(), {output.dtype(), output.device()});
  }
  PG_CHECK(root_grad.shape() == output.shape(), "backward", "gradient of shape ",
           shape_str(root_grad.shape()), " does not match output of shape ",
           shape_str(output.shape()));
  GradModeGuard mode(create_graph);

  auto deliver_leaf = [&](const std::shared_ptr<TensorImpl>& leaf, const Tensor& g) {
    if (captures) {
      auto it = captures->find(leaf.get());
      if (it != captures->end()) it->second = accumulate(it->second, g);
      return;
    }
    Tensor old(leaf->grad);
    // The first gradient a leaf receives may alias other tensors (add hands its incoming
    // gradient to both inputs, sum's is a stride-0 expansion, the caller passes their own):
    // .grad gets contiguous storage of its own, since optimizers update it in place.
    Tensor ng = old.defined() ? add(old, g) : g.clone();
    leaf->grad = (create_graph ? ng : ng.detach()).impl_ptr();
  };

  // Leaves with grad-ready hooks hear once their last incoming edge has been processed.
  const bool hooks = !captures && detail::any_grad_ready_hooks();
  if (!output.grad_fn()) {
    deliver_leaf(output.impl_ptr(), root_grad);
    if (hooks) detail::run_grad_ready_hooks(output.impl_ptr());
    return;
  }

  // Count, for every reachable node, how many edges point at it.
  std::unordered_map<Node*, int> deps;
  std::unordered_map<TensorImpl*, int> leaf_deps;  // only counted when hooks are registered
  std::vector<Node*> stack{output.grad_fn().get()};
  deps[stack.back()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next()) {
      if (hooks && e.leaf) ++leaf_deps[e.leaf.get()];
      if (!e.fn) continue;
      auto [it, fresh] = deps.try_emplace(e.fn.get(), 0);
      ++it->second;
      if (fresh) stack.push_back(e.fn.get());
    }
  }

  std::unordered_map<Node*, Tensor> grads;
  grads[output.grad_fn().get()] = root_grad;
  // Keep the root alive even if `output` is the last handle to it.
  std::shared_ptr<Node> root = output.grad_fn();
  std::vector<Node*> ready{root.get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g;
    if (auto it = grads.find(n); it != grads.end()) {
      g = std::move(it->second);
      grads.erase(it);
    }
    if (captures && g.defined()) {
      // A non-leaf input is captured through the node that produced it.
      for (auto& [impl, acc] : *captures)
        if (impl->grad_fn.get() == n) acc = accumulate(acc, g);
    }
    TensorList in_grads;
    if (g.defined()) {
      in_grads = n->apply(g);
      PG_CHECK(in_grads.size() == n->next().size(), n->name(), "internal error: backward returned ",
               in_grads.size(), " gradients for ", n->next().size(), " inputs");
    }
    for (size_t i = 0; i < n->next().size(); ++i) {
      const Edge& e = n->next()[i];
      Tensor gi = i < in_grads.size() ? in_grads[i] : Tensor();
      if (gi.defined()) check_grad(*n, i, gi);
      if (e.fn) {
        if (gi.defined()) grads[e.fn.get()] = accumulate(grads[e.fn.get()], gi);
        if (--deps[e.fn.get()] == 0) ready.push_back(e.fn.get());
      } else if (e.leaf) {
        if (gi.defined()) deliver_leaf(e.leaf, gi);
        if (hooks && --leaf_deps[e.leaf.get()] == 0) detail::run_grad_ready_hooks(e.leaf);
      }
    }
    if (!retain_graph) n->release();
  }
}

}  // namespace

void backward(const Tensor& output, const Tensor& grad_output, bool retain_graph,
              bool create_graph) {
  run_backward(output, grad_output, retain_graph || create_graph, create_graph, nullptr);
}

TensorList grad(const Tensor& output, const TensorList& inputs, const Tensor& grad_output,
                bool retain_graph, bool create_graph) {
  Captures captures;
  for (const Tensor& t : inputs) {
    PG_CHECK(t.requires_grad(), "grad", "every input must require grad (input of shape ",
             shape_str(t.shape()), " does not)");
    captures[t.impl_ptr().get()] = Tensor();
  }
  run_backward(output, grad_output, retain_graph || create_graph, create_graph, &captures);
  TensorList out;
  for (const Tensor& t : inputs) out.push_back(captures[t.impl_ptr().get()]);
  return out;
}

void Tensor::backward(const Tensor& grad, bool retain_graph, bool create_graph) const {
  pg::backward(*this, grad, retain_graph, create_graph);
}

}  // namespace pg
