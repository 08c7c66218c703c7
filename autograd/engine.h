// The backward engine: reverse topological walk over the recorded graph, without recursion.
#pragma once
#include "autograd/node.h"

namespace pg {

/// Accumulates d(output)/d(leaf) into every leaf's .grad (see Tensor::backward).
void backward(const Tensor& output, const Tensor& grad_output = Tensor(), bool retain_graph = false,
              bool create_graph = false);

/// Returns d(output)/d(inputs) without touching any .grad (like torch.autograd.grad).
/// Inputs the output does not depend on get an undefined Tensor.
TensorList grad(const Tensor& output, const TensorList& inputs,
                const Tensor& grad_output = Tensor(), bool retain_graph = false,
                bool create_graph = false);

}  // namespace pg
