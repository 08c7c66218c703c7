#include "nn/init.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

namespace {
// Draws happen on the host in f64 and are converted, so every dtype sees the same stream.
void assign(Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values.to(t.device()));
}
}  // namespace

void normal_(Tensor& t, double mean, double std, Generator* gen) {
  assign(t, add(mul(randn(t.shape(), {DType::F64}, gen), std), mean));
}

void uniform_(Tensor& t, double a, double b, Generator* gen) {
  assign(t, add(mul(rand(t.shape(), {DType::F64}, gen), b - a), a));
}

void zeros_(Tensor& t) {
  NoGradGuard no_grad;
  t.fill_(0);
}

void ones_(Tensor& t) {
  NoGradGuard no_grad;
  t.fill_(1);
}

std::pair<int64_t, int64_t> fans(const Tensor& t) {
  PG_CHECK(t.dim() >= 2, "init", "fan in/out need a weight of rank >= 2, got ",
           shape_str(t.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

void xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  auto [in, out] = fans(t);
  double b = gain * std::sqrt(6.0 / static_cast<double>(in + out));
  uniform_(t, -b, b, gen);
}

void xavier_normal_(Tensor& t, double gain, Generator* gen) {
  auto [in, out] = fans(t);
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(in + out)), gen);
}

void kaiming_uniform_(Tensor& t, double a, FanMode mode, Generator* gen) {
  auto [in, out] = fans(t);
  double fan = static_cast<double>(mode == FanMode::FanIn ? in : out);
  double b = std::sqrt(2.0 / (1 + a * a)) * std::sqrt(3.0 / fan);
  uniform_(t, -b, b, gen);
}

void kaiming_normal_(Tensor& t, double a, FanMode mode, Generator* gen) {
  auto [in, out] = fans(t);
  double fan = static_cast<double>(mode == FanMode::FanIn ? in : out);
  normal_(t, 0.0, std::sqrt(2.0 / (1 + a * a)) / std::sqrt(fan), gen);
}

}  // namespace pg
