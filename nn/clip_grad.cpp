#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "kernels/backend.h"
#include "kernels/factory.h"
#include "nn/optim.h"

namespace pg {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  PG_CHECK(max_norm >= 0, "clip_grad_norm", "max_norm must be >= 0, got ", max_norm);
  NoGradGuard no_grad;
  // The gradients of each device, in one batch: a GPU sums them in two launches, syncs once
  // per call, and scales them in a few more.
  struct DeviceGrads {
    Device device;
    std::vector<size_t> owners;  // indices into params
    std::vector<Tensor> grads;   // contiguous
  };
  std::vector<DeviceGrads> per_device;
  for (size_t i = 0; i < params.size(); ++i) {
    PG_CHECK(params[i].defined(), "clip_grad_norm", "parameter ", i, " is undefined");
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    PG_CHECK(g.dtype() == DType::F32 || g.dtype() == DType::F64, "clip_grad_norm",
             "the gradient of parameter ", i, " is ", dtype_name(g.dtype()),
             "; expected f32 or f64");
    auto same = std::find_if(per_device.begin(), per_device.end(),
                             [&](const DeviceGrads& d) { return d.device == g.device(); });
    if (same == per_device.end()) same = per_device.insert(per_device.end(), {g.device(), {}, {}});
    same->owners.push_back(i);
    same->grads.push_back(g.contiguous());
  }
  std::vector<Tensor> sums;
  for (const DeviceGrads& d : per_device) {
    Tensor s = empty({}, {DType::F64, d.device});
    backend_for(d.device).sum_of_squares(d.grads, s);
    sums.push_back(s);
  }
  double sq = 0;
  for (const Tensor& s : sums) sq += s.item();
  double norm = std::sqrt(sq);
  if (norm > max_norm) {
    double scale = max_norm / (norm + 1e-6);
    for (const DeviceGrads& d : per_device) {
      std::vector<Tensor> scaled;
      for (const Tensor& g : d.grads) scaled.push_back(empty_like(g));
      backend_for(d.device).scale(d.grads, scale, scaled);
      for (size_t k = 0; k < scaled.size(); ++k) {
        Tensor p = params[d.owners[k]];  // a copy of the handle: set_grad acts on the shared impl
        p.set_grad(scaled[k]);
      }
    }
  }
  return norm;
}

}  // namespace pg
