// Named tensors: what modules, optimizers and checkpoints exchange.
#pragma once
#include <map>
#include <string>

#include "core/tensor.h"

namespace pg {

/// Tensors by dotted name ("blocks.0.attn.qkv.weight").
using StateDict = std::map<std::string, Tensor>;

}  // namespace pg
