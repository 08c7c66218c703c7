// bf16 mixed precision of f32 matrix products: the rounding itself, products equal to f32
// products of rounded operands (forward and backward), bounded error against f32, a model that
// trains as well as in f32, and the CUDA tensor-core path against the CPU.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "core/bfloat16.h"
#include "device_check.h"
#include "helpers.h"
#include "kernels/matmul_precision.h"
#include "kernels/ops.h"
#include "models/gpt.h"
#include "nn/optim.h"
#include "polygrad.h"

using namespace pg;

namespace {

bool same_values(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         a.contiguous().to_vector<float>() == b.contiguous().to_vector<float>();
}

}  // namespace

TEST_CASE("bfloat16 rounding: nearest, ties to even, specials") {
  const float ulp = std::ldexp(1.0f, -7);  // bf16 spacing in [1, 2)
  CHECK(round_to_bf16(1.0f) == 1.0f);
  CHECK(round_to_bf16(1.0f + ulp / 2) == 1.0f);                   // tie, even stays
  CHECK(round_to_bf16(1.0f + 3 * ulp / 2) == 1.0f + 2 * ulp);     // tie, odd rounds up
  CHECK(round_to_bf16(1.0f + ulp / 2 + ulp / 64) == 1.0f + ulp);  // above the tie
  CHECK(round_to_bf16(-1.0f - ulp / 4) == -1.0f);
  CHECK(round_to_bf16(2.0f - ulp / 4) == 2.0f);  // carries into the exponent
  CHECK(std::signbit(round_to_bf16(-0.0f)));
  CHECK(round_to_bf16(std::numeric_limits<float>::infinity()) ==
        std::numeric_limits<float>::infinity());
  CHECK(round_to_bf16(std::numeric_limits<float>::max()) ==
        std::numeric_limits<float>::infinity());  // past bf16's largest finite
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::signaling_NaN())));
  float tiny = std::numeric_limits<float>::denorm_min();
  CHECK(round_to_bf16(tiny) == 0.0f);
  CHECK(round_to_bf16(std::ldexp(1.0f, -133)) == std::ldexp(1.0f, -133));  // bf16 subnormal
}

TEST_CASE("matmul precision: the setting, its guard and its names") {
  CHECK(matmul_precision() == MatmulPrecision::F32);
  {
    MatmulPrecisionGuard guard(MatmulPrecision::BF16);
    CHECK(matmul_precision() == MatmulPrecision::BF16);
  }
  CHECK(matmul_precision() == MatmulPrecision::F32);
  CHECK(parse_matmul_precision("bf16") == MatmulPrecision::BF16);
  CHECK(parse_matmul_precision("f32") == MatmulPrecision::F32);
  CHECK_THROWS_WITH_AS(parse_matmul_precision("fp16"),
                       doctest::Contains("expected 'f32' or 'bf16', got 'fp16'"), Error);
}

TEST_CASE("bf16 matmul is the f32 product of rounded operands, for views and broadcast batches") {
  manual_seed(7);
  Tensor a = randn({2, 3, 9, 33});
  Tensor w = randn({40, 33});
  Tensor wt = transpose(w, 0, 1);  // a transposed view: BLAS flags, not a copy
  Tensor exact = matmul(a, wt);
  Tensor low;
  {
    MatmulPrecisionGuard guard(MatmulPrecision::BF16);
    low = matmul(a, wt);
  }
  CHECK(same_values(low, matmul(pgt::rounded_to_bf16(a), pgt::rounded_to_bf16(wt))));
  CHECK_FALSE(same_values(low, exact));
  // Strided slices and a batch broadcast against one matrix.
  Tensor s = a.narrow(3, 1, 16).select(1, 2);  // [2, 9, 16], non-contiguous
  Tensor m = randn({16, 5});
  {
    MatmulPrecisionGuard guard(MatmulPrecision::BF16);
    low = matmul(s, m);
  }
  CHECK(same_values(low, matmul(pgt::rounded_to_bf16(s), pgt::rounded_to_bf16(m))));
}

TEST_CASE("bf16 matmul error against f64 stays within bfloat16's rounding") {
  // Positive operands: no cancellation, so each entry's relative error is bounded by the two
  // operand roundings (2^-9 each) plus f32 accumulation.
  manual_seed(3);
  Tensor a = rand({64, 256}), b = rand({256, 48});
  Tensor reference = matmul(a.to(DType::F64), b.to(DType::F64));
  MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  Tensor low = matmul(a, b);
  auto x = low.to_vector<float>();
  auto r = reference.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(x[i] - r[i]) / r[i]);
  CHECK(worst < 2 * std::ldexp(1.0, -9) + 1e-5);
  CHECK(worst > 1e-5);  // lowered: f32 alone would be near 1e-6
  // f64 products are never lowered.
  Tensor a64 = a.to(DType::F64), b64 = b.to(DType::F64);
  CHECK(max(abs(sub(matmul(a64, b64), reference))).item<double>() < 1e-12);
}

TEST_CASE("bf16 gradients of a linear layer are products of rounded operands") {
  manual_seed(11);
  Tensor x = randn({6, 20}).requires_grad_();
  Tensor w = randn({12, 20}).requires_grad_();
  Tensor g = randn({6, 12});
  {
    MatmulPrecisionGuard guard(MatmulPrecision::BF16);
    backward(sum(mul(matmul(x, transpose(w, 0, 1)), g)));
  }
  CHECK(same_values(x.grad(), matmul(pgt::rounded_to_bf16(g), pgt::rounded_to_bf16(w))));
  CHECK(same_values(w.grad(), matmul(pgt::rounded_to_bf16(transpose(g, 0, 1)),
                                     pgt::rounded_to_bf16(x.detach()))));
}

TEST_CASE(
    "under bf16 precision GELU keeps its input as bf16: its gradient is g * gelu'(round(x))") {
  manual_seed(12);
  Tensor x0 = randn({64, 48}) * 3.0, g = randn({64, 48});
  for (GeluApprox approx : {GeluApprox::Tanh, GeluApprox::None})
    for (MatmulPrecision precision : {MatmulPrecision::F32, MatmulPrecision::BF16}) {
      std::string what = std::string(approx == GeluApprox::Tanh ? "tanh " : "erf ") +
                         (precision == MatmulPrecision::BF16 ? "bf16" : "f32");
      INFO(what);
      BinaryOp op =
          approx == GeluApprox::Tanh ? BinaryOp::GeluTanhBackward : BinaryOp::GeluErfBackward;
      Tensor x = x0.clone().requires_grad_();
      Tensor y;
      {
        MatmulPrecisionGuard guard(precision);
        y = gelu(x, approx);
        backward(sum(mul(y, g)));
      }
      CHECK(same_values(y, gelu(x0, approx)));  // the forward is f32 either way
      Tensor exact = kernels::binary(op, g, x0, "gelu");
      if (precision == MatmulPrecision::F32) {
        CHECK(same_values(x.grad(), exact));
      } else {
        CHECK(same_values(x.grad(), kernels::binary(op, g, pgt::rounded_to_bf16(x0), "gelu")));
        CHECK_FALSE(same_values(x.grad(), exact));
      }
      if (pgt::have_cuda()) {
        Tensor xg = x0.to(Device::cuda()).requires_grad_();
        MatmulPrecisionGuard guard(precision);
        backward(sum(mul(gelu(xg, approx), g.to(Device::cuda()))));
        // Each device's f32 derivative is within 4e-7 of the exact one (test_kernels); |g| < 5.
        pgt::check_close(xg.grad().to(Device::cpu()), x.grad().to_vector<double>(), 4e-6, 0,
                         "GPU gelu gradient");
      }
    }
  // f64 is never lowered.
  Tensor x = randn({8, 8}, {DType::F64}).requires_grad_();
  MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  backward(sum(gelu(x)));
  CHECK(x.grad().to_vector<double>() ==
        kernels::binary(BinaryOp::GeluTanhBackward, ones({}, {DType::F64}), x.detach(), "gelu")
            .to_vector<double>());
}

namespace {

// Loss per step of a small GPT trained on a fixed periodic sequence.
std::vector<double> train_losses(MatmulPrecision precision, Device device, int steps) {
  MatmulPrecisionGuard guard(precision);
  manual_seed(5);
  GptConfig cfg;
  cfg.vocab_size = 13;
  cfg.context = 16;
  cfg.dim = 32;
  cfg.layers = 2;
  cfg.heads = 2;
  Gpt model(cfg);
  model.to(device);
  std::vector<int64_t> ids(4 * 17);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 5 + i / 7) % 13);
  Tensor seq = from_vector(ids, {4, 17}, device);
  return pgt::overfit(model, seq.narrow(1, 0, 16), seq.narrow(1, 1, 16), steps, 3e-3);
}

}  // namespace

TEST_CASE("a GPT trained with bf16 matmuls follows its f32 training closely") {
  auto f32 = train_losses(MatmulPrecision::F32, Device::cpu(), 40);
  auto bf16 = train_losses(MatmulPrecision::BF16, Device::cpu(), 40);
  CHECK(f32.back() < 0.5 * f32.front());  // it learns
  CHECK(bf16.front() == doctest::Approx(f32.front()).epsilon(1e-2));
  CHECK(bf16.back() == doctest::Approx(f32.back()).epsilon(0.05));
  CHECK(bf16 != f32);
  if (pgt::have_cuda()) {
    auto gpu = train_losses(MatmulPrecision::BF16, Device::cuda(), 40);
    for (size_t i = 0; i < 5; ++i) CHECK(gpu[i] == doctest::Approx(bf16[i]).epsilon(1e-3));
    CHECK(gpu.back() == doctest::Approx(bf16.back()).epsilon(0.05));
  }
}

TEST_CASE("the RoundBf16 kernel rounds every element like round_to_bf16, on every device") {
  manual_seed(4);
  Tensor x = mul(randn({7, 33}), 1e3).narrow(1, 2, 29);  // strided, wide exponent range
  Tensor cpu = kernels::unary(UnaryOp::RoundBf16, x);
  CHECK(same_values(cpu, pgt::rounded_to_bf16(x)));
  if (pgt::have_cuda()) {
    Tensor gpu = kernels::unary(UnaryOp::RoundBf16, pgt::same_layout_on(x, Device::cuda()));
    CHECK(same_values(gpu.to(Device::cpu()), cpu));
  }
}

TEST_CASE("CUDA bf16 matmul (tensor cores) matches the CPU's rounded products") {
  if (!pgt::have_cuda()) return;
  manual_seed(9);
  Tensor a = randn({3, 70, 130}), b = randn({130, 50});
  Tensor bt = transpose(randn({50, 130}), 0, 1);
  MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  for (const Tensor& rhs : {b, bt}) {
    Tensor cpu = matmul(a, rhs);
    Tensor gpu =
        matmul(pgt::same_layout_on(a, Device::cuda()), pgt::same_layout_on(rhs, Device::cuda()));
    CHECK(pgt::max_rel_diff_strict(gpu, cpu) < 1e-5);
  }
}
