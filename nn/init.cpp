#include "nn/init.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

namespace {

void check_target(const Tensor& t, const char* op) {
  PG_CHECK(t.defined(), op, "the tensor to initialise is undefined");
  PG_CHECK(is_floating(t.dtype()), op, "expected a floating tensor, got ", dtype_name(t.dtype()),
           " ", shape_str(t.shape()));
}

// Values are drawn on the host in f64 and converted by copy_, so every dtype and device sees the
// same stream for the same seed.
void assign(Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values.to(t.device()));
}

double fan_for(const Tensor& t, FanMode mode) {
  auto [in, out] = fans(t);
  return static_cast<double>(mode == FanMode::FanIn ? in : out);
}

}  // namespace

double calculate_gain(Nonlinearity nl, double negative_slope) {
  switch (nl) {
    case Nonlinearity::Linear:
    case Nonlinearity::Sigmoid:
      return 1.0;
    case Nonlinearity::Tanh:
      return 5.0 / 3.0;
    case Nonlinearity::ReLU:
      return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU:
      return std::sqrt(2.0 / (1.0 + negative_slope * negative_slope));
    case Nonlinearity::SELU:
      return 0.75;
  }
  return 1.0;
}

void normal_(Tensor& t, double mean, double std, Generator* gen) {
  check_target(t, "normal_");
  PG_CHECK(std >= 0, "normal_", "std must be >= 0, got ", std);
  assign(t, add(mul(randn(t.shape(), {DType::F64}, gen), std), mean));
}

void uniform_(Tensor& t, double a, double b, Generator* gen) {
  check_target(t, "uniform_");
  PG_CHECK(a <= b, "uniform_", "expected a <= b, got [", a, ", ", b, "]");
  assign(t, add(mul(rand(t.shape(), {DType::F64}, gen), b - a), a));
}

void zeros_(Tensor& t) {
  PG_CHECK(t.defined(), "zeros_", "the tensor to initialise is undefined");
  NoGradGuard no_grad;
  t.fill_(0);
}

void ones_(Tensor& t) {
  PG_CHECK(t.defined(), "ones_", "the tensor to initialise is undefined");
  NoGradGuard no_grad;
  t.fill_(1);
}

std::pair<int64_t, int64_t> fans(const Tensor& t) {
  PG_CHECK(t.defined() && t.dim() >= 2, "init",
           "fan in/out need a weight of rank >= 2 shaped [out, in, ...], got ",
           t.defined() ? shape_str(t.shape()) : std::string("an undefined tensor"));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  int64_t in = t.size(1) * receptive, out = t.size(0) * receptive;
  PG_CHECK(in > 0 && out > 0, "init", "fan in/out of an empty weight ", shape_str(t.shape()),
           " are zero");
  return {in, out};
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

void kaiming_uniform_(Tensor& t, double a, FanMode mode, Nonlinearity nonlinearity,
                      Generator* gen) {
  double b = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / fan_for(t, mode));
  uniform_(t, -b, b, gen);
}

void kaiming_uniform_(Tensor& t, double a, FanMode mode, Generator* gen) {
  kaiming_uniform_(t, a, mode, Nonlinearity::LeakyReLU, gen);
}

void kaiming_normal_(Tensor& t, double a, FanMode mode, Nonlinearity nonlinearity, Generator* gen) {
  normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(fan_for(t, mode)), gen);
}

void kaiming_normal_(Tensor& t, double a, FanMode mode, Generator* gen) {
  kaiming_normal_(t, a, mode, Nonlinearity::LeakyReLU, gen);
}

}  // namespace pg
