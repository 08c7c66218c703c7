#include "nn/rope.h"

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

Tensor apply_rope(const Tensor& x, int64_t first_position, double base) {
  PG_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope",
           "expected [B, H, T, d] with an even head size d, got ", shape_str(x.shape()));
  PG_CHECK(first_position >= 0 && base > 1, "rope", "expected a position >= 0 and a base > 1, got ",
           first_position, " and ", base);
  const int64_t T = x.size(2), half = x.size(3) / 2;
  // The angles in f64, then rounded once to x's dtype.
  std::vector<double> c(static_cast<size_t>(T * half)), s(c.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle =
          static_cast<double>(first_position + t) *
          std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(2 * half));
      c[static_cast<size_t>(t * half + i)] = std::cos(angle);
      s[static_cast<size_t>(t * half + i)] = std::sin(angle);
    }
  const TensorOptions opts{x.dtype(), x.device()};
  const Tensor cos = from_vector(c, {T, half}).to(opts.dtype).to(opts.device);
  const Tensor sin = from_vector(s, {T, half}).to(opts.dtype).to(opts.device);
  const Tensor x1 = x.narrow(3, 0, half), x2 = x.narrow(3, half, half);
  return cat({sub(mul(x1, cos), mul(x2, sin)), add(mul(x2, cos), mul(x1, sin))}, 3);
}

}  // namespace pg
