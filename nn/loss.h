// Loss functions: scalar means over the batch, differentiable with respect to the prediction.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace pg {

/// Mean cross-entropy of logits [..., C] against integer class targets [...]; positions whose
/// target is ignore_index are left out of the mean; label_smoothing in [0, 1] mixes the one-hot
/// target with the uniform distribution (PyTorch's definition).
Tensor cross_entropy_loss(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                          double label_smoothing = 0.0);
/// Mean of (pred - target)^2; the shapes must match exactly (no broadcasting).
Tensor mse_loss(const Tensor& pred, const Tensor& target);

}  // namespace pg
