#include "nn/loss.h"

#include "autograd/ops.h"

namespace pg {

Tensor cross_entropy_loss(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                          double label_smoothing) {
  return cross_entropy(logits, target, ignore_index, label_smoothing);
}

Tensor mse_loss(const Tensor& pred, const Tensor& target) {
  PG_CHECK(pred.defined() && target.defined(), "mse_loss", "prediction and target must be defined");
  // Broadcasting here is almost always a bug ([N, 1] against [N] silently becomes [N, N]).
  PG_CHECK(pred.shape() == target.shape(), "mse_loss", "prediction ", shape_str(pred.shape()),
           " and target ", shape_str(target.shape()), " must have the same shape");
  Tensor d = sub(pred, target);
  return mean(mul(d, d));
}

}  // namespace pg
