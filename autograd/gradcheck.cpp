#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

namespace {

// <w, fn(inputs)> as a double, without recording.
double projected(const std::function<Tensor(const TensorList&)>& fn, const TensorList& inputs,
                 const Tensor& w) {
  NoGradGuard guard;
  Tensor out = fn(inputs);
  return sum(mul(out.to(DType::F64), w)).item();
}

}  // namespace

GradcheckReport gradcheck(const std::function<Tensor(const TensorList&)>& fn,
                          const TensorList& inputs, GradcheckOptions opts) {
  GradcheckReport report;
  Tensor out = fn(inputs);
  Generator gen(opts.seed);
  Tensor w = randn(out.shape(), {DType::F64, out.device()}, &gen);

  TensorList wrt;
  std::vector<size_t> wrt_index;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined() && inputs[i].requires_grad()) {
      wrt.push_back(inputs[i]);
      wrt_index.push_back(i);
    }
  PG_CHECK(!wrt.empty(), "gradcheck", "no input requires grad");
  PG_CHECK(out.requires_grad(), "gradcheck", "the output does not depend on any input");
  Tensor loss = sum(mul(out.to(DType::F64), w));
  TensorList analytic = grad(loss, wrt, Tensor(), true);

  for (size_t k = 0; k < wrt.size(); ++k) {
    const Tensor& x = wrt[k];
    PG_CHECK(x.device().is_cpu(), "gradcheck", "inputs must be on the CPU");
    Tensor a = analytic[k].defined() ? analytic[k].to(DType::F64).contiguous()
                                     : zeros(x.shape(), {DType::F64});
    std::vector<double> av = a.to_vector<double>();
    // Perturb each element through a strided view so non-contiguous inputs work as given.
    int64_t n = x.numel();
    Shape idx(x.dim(), 0);
    for (int64_t e = 0; e < n; ++e) {
      int64_t off = x.offset();
      for (int64_t d = 0; d < x.dim(); ++d) off += idx[d] * x.strides()[d];
      Tensor cell = x.detach().as_strided({}, {}, off);
      double orig = cell.item();
      cell.fill_(orig + opts.eps);
      double fp = projected(fn, inputs, w);
      cell.fill_(orig - opts.eps);
      double fm = projected(fn, inputs, w);
      cell.fill_(orig);
      double numeric = (fp - fm) / (2 * opts.eps);
      double err = std::fabs(numeric - av[e]);
      report.max_abs_error = std::max(report.max_abs_error, err);
      if (report.ok && !(err <= opts.atol + opts.rtol * std::fabs(numeric))) {
        std::ostringstream os;
        os << "gradient mismatch for input " << wrt_index[k] << " (shape " << shape_str(x.shape())
           << ") at element " << shape_str(idx) << ": analytic " << av[e] << ", numeric " << numeric
           << ", |diff| " << err;
        report.ok = false;
        report.message = os.str();
      }
      for (int64_t d = x.dim() - 1; d >= 0; --d) {
        if (++idx[d] < x.shape()[d]) break;
        idx[d] = 0;
      }
    }
  }
  return report;
}

}  // namespace pg
