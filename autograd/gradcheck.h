// Numerical gradient checking: central differences in f64 against the analytic gradient.
#pragma once
#include <functional>
#include <string>

#include "autograd/node.h"

namespace pg {

/// Outcome of gradcheck; `message` names the failing input and element.
struct GradcheckReport {
  bool ok = true;
  std::string message;
  double max_abs_error = 0;
  explicit operator bool() const { return ok; }
};

/// Options of gradcheck.
struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 1234;  ///< seed of the random projection of the output
};

/// Checks d(fn)/d(inputs) for every floating input that requires grad. The output is
/// projected on a fixed random tensor w, and d<w, fn(x)>/dx from backward is compared with
/// central differences element by element. Inputs should be f64. The numerical evaluations
/// run under NoGradGuard: a function that itself calls pg::grad (to check a second
/// derivative) must enable recording inside with GradModeGuard(true).
GradcheckReport gradcheck(const std::function<Tensor(const TensorList&)>& fn,
                          const TensorList& inputs, GradcheckOptions opts = {});

}  // namespace pg
