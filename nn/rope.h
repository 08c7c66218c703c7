// Rotary position embeddings (Su et al. 2021, RoFormer): queries and keys rotated by their
// absolute position, so that q_i . k_j depends on i - j only.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace pg {

/// x [B, H, T, d] (d even) with row t rotated to position first_position + t: the halves
/// x1 = x[..., :d/2] and x2 = x[..., d/2:] become x1 cos - x2 sin and x2 cos + x1 sin, at angles
/// position * base^(-2i/d), i < d/2 (the rotate-half layout of GPT-NeoX and LLaMA). Through
/// autograd ops (mul, add, cat): differentiable in x; the angles are constants.
Tensor apply_rope(const Tensor& x, int64_t first_position, double base = 10000.0);

}  // namespace pg
