#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/optim.h"

namespace pg {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  PG_CHECK(max_norm >= 0, "clip_grad_norm", "max_norm must be >= 0, got ", max_norm);
  NoGradGuard no_grad;
  // One running sum per device, read back once: a GPU then syncs once per call, not per tensor.
  std::vector<Tensor> per_device;
  for (size_t i = 0; i < params.size(); ++i) {
    PG_CHECK(params[i].defined(), "clip_grad_norm", "parameter ", i, " is undefined");
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    Tensor g64 = g.to(DType::F64);
    Tensor s = sum(mul(g64, g64));
    auto same = std::find_if(per_device.begin(), per_device.end(),
                             [&](const Tensor& t) { return t.device() == s.device(); });
    if (same == per_device.end())
      per_device.push_back(s);
    else
      *same = add(*same, s);
  }
  double sq = 0;
  for (const Tensor& t : per_device) sq += t.item();
  double norm = std::sqrt(sq);
  if (norm > max_norm) {
    double scale = max_norm / (norm + 1e-6);
    for (Tensor p : params) {  // a copy of the handle: set_grad acts on the shared impl
      Tensor g = p.grad();
      if (g.defined()) p.set_grad(mul(g, scale));
    }
  }
  return norm;
}

}  // namespace pg
