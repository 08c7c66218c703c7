// A node of the backward graph: the backward rule of one op application plus its inputs.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pg {

using TensorList = std::vector<Tensor>;
/// Maps the gradient of an op's output to the gradients of its inputs (undefined = none).
using BackwardFn = std::function<TensorList(const Tensor& grad_output)>;

/// Where an input's gradient goes: into another node, or into a leaf's .grad.
struct Edge {
  std::shared_ptr<Node> fn;
  std::shared_ptr<TensorImpl> leaf;
  Shape shape;  ///< shape of the input, to validate the gradient
  DType dtype = DType::F32;
  bool active() const { return fn || leaf; }
};

/// One recorded op application.
class Node {
 public:
  Node(std::string name, BackwardFn fn, std::vector<Edge> next)
      : name_(std::move(name)), fn_(std::move(fn)), next_(std::move(next)) {}
  /// The op's name, e.g. "matmul".
  const std::string& name() const { return name_; }
  /// One edge per input of the op.
  const std::vector<Edge>& next() const { return next_; }
  /// Runs the backward rule; throws pg::Error if its saved tensors were already freed.
  TensorList apply(const Tensor& grad_output);
  /// Frees the saved tensors (the graph can no longer be differentiated through).
  void release() { fn_ = nullptr; }

 private:
  std::string name_;
  BackwardFn fn_;
  std::vector<Edge> next_;
};

/// Attaches a backward rule to `out`, computed by op `name` from `inputs`, when grad mode is on
/// and some input requires a gradient. Returns `out`.
Tensor record(const char* name, Tensor out, const TensorList& inputs, BackwardFn fn);

/// A backward rule that reads the op's own output y instead of its inputs.
using OutputBackwardFn = std::function<TensorList(const Tensor& grad_output, const Tensor& y)>;

/// record() for ops whose rule needs only their output (exp, tanh, softmax, ...): keeps y and
/// not the inputs. Under create_graph, y reaches the rule as a differentiable tensor (the output
/// itself, through a weak reference to this node, so there is no reference cycle).
Tensor record_with_output(const char* name, Tensor out, const TensorList& inputs,
                          OutputBackwardFn fn);

/// Throws pg::Error when a fused op's backward is itself being differentiated.
void forbid_double_backward(const char* op);

}  // namespace pg
