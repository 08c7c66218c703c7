// The bf16 storage dtype: conversions that round like round_to_bf16 and widen exactly, views and
// copies, clear errors from every op that computes, matmul operands in both precisions, the
// backward's bf16 copies of matmul operands (half the memory), safetensors files, and the GPU.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "autograd/attention.h"
#include "core/allocator.h"
#include "device_check.h"
#include "helpers.h"
#include "kernels/matmul_precision.h"
#include "nn/attention_op.h"
#include "nn/safetensors.h"
#include "polygrad.h"

using namespace pg;

namespace {

// Bit patterns of the f32 values, so NaNs compare too.
std::vector<uint32_t> bits_of(const Tensor& x) {
  std::vector<uint32_t> out;
  for (float f : x.contiguous().to_vector<float>()) out.push_back(std::bit_cast<uint32_t>(f));
  return out;
}

// A strided f32 view with a wide exponent range, ties, and every special value.
Tensor awkward_input() {
  manual_seed(3);
  Tensor x = mul(randn({6, 11}), 1e3);
  const float tie = 1.0f + std::ldexp(1.0f, -8), inf = std::numeric_limits<float>::infinity();
  std::vector<float> special = {tie,   -tie,   inf,  -inf, std::numeric_limits<float>::quiet_NaN(),
                                3e38f, 1e-40f, -0.0f};
  float* p = x.data<float>();
  for (size_t i = 0; i < special.size(); ++i) p[12 + i] = special[i];
  return x.narrow(1, 1, 9);
}

}  // namespace

TEST_CASE("bf16 tensors round like round_to_bf16, widen exactly, and keep views and copies") {
  CHECK(dtype_size(DType::BF16) == 2);
  CHECK(std::string(dtype_name(DType::BF16)) == "bf16");
  CHECK_FALSE(is_floating(DType::BF16));
  Tensor x = awkward_input();
  Tensor h = x.to(DType::BF16);
  CHECK(h.dtype() == DType::BF16);
  CHECK(h.shape() == x.shape());
  CHECK(bits_of(h.to(DType::F32)) == bits_of(pgt::rounded_to_bf16(x)));
  CHECK(bits_of(h.to(DType::F64).to(DType::F32)) == bits_of(pgt::rounded_to_bf16(x)));
  // Views of bf16 tensors copy like any other dtype.
  Tensor ht = h.transpose(0, 1).contiguous();
  CHECK(bits_of(ht.to(DType::F32)) == bits_of(pgt::rounded_to_bf16(x).transpose(0, 1)));
  CHECK(bits_of(h.narrow(0, 2, 3).to(DType::F32)) ==
        bits_of(pgt::rounded_to_bf16(x).narrow(0, 2, 3)));
  // From f64 and integers: through float, then to the nearest bf16 (257 has no bf16: 256).
  Tensor ints = arange(250.0, 262.0, 1.0, {DType::I64});
  std::vector<int64_t> want;
  for (int64_t i = 250; i < 262; ++i)
    want.push_back(static_cast<int64_t>(round_to_bf16(static_cast<float>(i))));
  CHECK(ints.to(DType::BF16).to(DType::I64).to_vector<int64_t>() == want);
  Tensor d = from_vector<double>({0.1, -1e10, 1.0 / 3.0}, {3});
  CHECK(bits_of(d.to(DType::BF16).to(DType::F32)) ==
        bits_of(pgt::rounded_to_bf16(d.to(DType::F32))));
  // Factories and scalars.
  CHECK(full({2, 2}, 1.5, {DType::BF16}).to_vector<float>() == std::vector<float>(4, 1.5f));
  CHECK(zeros({3}, {DType::BF16}).to_vector<double>() == std::vector<double>(3, 0.0));
  CHECK(from_vector<float>({0.1f}, {}).to(DType::BF16).item<double>() ==
        static_cast<double>(round_to_bf16(0.1f)));
}

TEST_CASE("ops that compute refuse bf16 with the op's name and the way out") {
  Tensor h = ones({2, 3}, {DType::BF16});
  CHECK_PG_ERROR(add(h, h), "add", "bf16", ".to(DType::F32)");
  CHECK_PG_ERROR(mul(h, 2.0), "mul", "bf16");
  CHECK_PG_ERROR(exp(h), "exp", "bf16");
  CHECK_PG_ERROR(sum(h), "sum", "bf16");
  CHECK_PG_ERROR(argmax(h, 1), "argmax", "bf16");
  CHECK_PG_ERROR(softmax(h, -1), "softmax", "bf16");
  CHECK_PG_ERROR(relu(h), "relu", "bf16");
  CHECK_PG_ERROR(cross_entropy(h, from_vector<int64_t>({0, 1}, {2})), "cross_entropy", "bf16");
  CHECK_PG_ERROR(embedding(h, from_vector<int64_t>({0}, {1})), "embedding", "bf16");
  CHECK_PG_ERROR(randn({2}, {DType::BF16}), "randn", "bf16");
  CHECK_PG_ERROR(h.requires_grad_(), "requires_grad_", "bf16");
  CHECK_PG_ERROR(matmul(h, ones({3, 2}, {DType::F64})), "matmul", "bf16", "f64");
}

TEST_CASE("bf16 matmul operands: the f32 product of their values, in either precision") {
  manual_seed(8);
  Tensor a = randn({3, 7, 20}).to(DType::BF16);
  Tensor b = randn({20, 11});
  Tensor bt16 = randn({11, 20}).to(DType::BF16).transpose(0, 1);  // a transposed bf16 view
  Tensor a32 = a.to(DType::F32), bt32 = bt16.to(DType::F32);
  // f32 precision: bf16 values widened, the f32 operand as it is.
  CHECK(matmul(a, b).dtype() == DType::F32);
  CHECK(bits_of(matmul(a, b)) == bits_of(matmul(a32, b)));
  CHECK(bits_of(matmul(a, bt16)) == bits_of(matmul(a32, bt32)));
  CHECK(bits_of(matmul(b.transpose(0, 1), a.select(0, 1).transpose(0, 1))) ==
        bits_of(matmul(b.transpose(0, 1), a32.select(0, 1).transpose(0, 1))));
  // bf16 precision: the f32 operand is rounded as well.
  Tensor want = matmul(a32, pgt::rounded_to_bf16(b));
  MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  CHECK(bits_of(matmul(a, b)) == bits_of(want));
  CHECK(bits_of(matmul(a, bt16)) == bits_of(matmul(a32, bt32)));
}

TEST_CASE("in bf16 precision the backward keeps bf16 copies of matmul operands") {
  manual_seed(2);
  Tensor x = randn({512, 256});
  Tensor w = randn({64, 256}).requires_grad_();
  // Bytes still held after the forward once the f32 input of the product has gone out of scope:
  // the output plus whatever the backward keeps.
  auto held = [&](MatmulPrecision precision, Tensor& grad) {
    MatmulPrecisionGuard guard(precision);
    size_t before = cpu_allocator().stats().allocated;
    Tensor y;
    {
      Tensor t = mul(x, 2.0);  // an activation only the product needs
      y = matmul(t, transpose(w, 0, 1));
    }
    size_t bytes = cpu_allocator().stats().allocated - before;
    w.set_grad(Tensor());
    backward(sum(y));
    grad = w.grad().clone();
    return bytes;
  };
  Tensor g32, g16;
  size_t f32 = held(MatmulPrecision::F32, g32), bf16 = held(MatmulPrecision::BF16, g16);
  MESSAGE("held after the forward: f32 " << f32 << " bytes, bf16 " << bf16 << " bytes");
  // f32 keeps the 512 KiB input; bf16 keeps a 256 KiB copy and a 32 KiB copy of w.
  CHECK(f32 >= 512 * 256 * 4);
  CHECK(bf16 + 512 * 256 * 2 - 64 * 256 * 2 <= f32);
  // The gradient is the product of the rounded operands, whichever copy it was read from.
  Tensor t_rounded = pgt::rounded_to_bf16(mul(x, 2.0)).transpose(0, 1).contiguous();
  CHECK(bits_of(g16) == bits_of(matmul(t_rounded, ones({512, 64})).transpose(0, 1)));
  CHECK(bits_of(g16) != bits_of(g32));
}

TEST_CASE("in bf16 precision fused attention keeps bf16 copies of q, k, v, not the projection") {
  manual_seed(3);
  const int64_t B = 2, T = 64, H = 4, d = 16;
  Tensor x = randn({B, T, 3 * H * d}).requires_grad_();
  const auto act = AttentionActivation::parse("poly:3");
  auto held = [&](MatmulPrecision precision, Tensor& grad) {
    MatmulPrecisionGuard guard(precision);
    size_t before = cpu_allocator().stats().allocated;
    Tensor y;
    {
      Tensor qkv = mul(x, 2.0);  // a projection only the attention needs
      y = attention_packed(qkv, H, act, true, 0.25, Tensor(), nullptr, AttentionPath::Fused);
    }
    size_t bytes = cpu_allocator().stats().allocated - before;
    x.set_grad(Tensor());
    backward(sum(y));
    grad = x.grad().clone();
    return bytes;
  };
  Tensor g32, g16;
  size_t f32 = held(MatmulPrecision::F32, g32), bf16 = held(MatmulPrecision::BF16, g16);
  MESSAGE("held after the forward: f32 " << f32 << " bytes, bf16 " << bf16 << " bytes");
  const size_t projection = B * T * 3 * H * d * 4;
  CHECK(f32 >= projection);
  CHECK(bf16 + projection / 2 <= f32);  // the f32 projection went, its bf16 copy stayed
  CHECK(bits_of(g16) != bits_of(g32));
}

TEST_CASE("double backward through a bf16-precision product is refused, not wrong") {
  Tensor x = randn({3, 4}).requires_grad_();
  Tensor w = randn({4, 2}).requires_grad_();
  MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  Tensor y = sum(matmul(x, w));
  CHECK_PG_ERROR(grad(y, {x}, Tensor(), false, true), "matmul", "double backward", "bf16");
  // Without a graph of the backward it runs, and so does everything without gradients.
  Tensor y2 = sum(matmul(x, w));
  CHECK(grad(y2, {x})[0].shape() == Shape({3, 4}));
}

TEST_CASE("bf16 tensors are saved as BF16 in safetensors files and load as their f32 values") {
  auto dir = std::filesystem::temp_directory_path() / "pg_test_bf16_dtype";
  std::filesystem::create_directories(dir);
  std::string path = (dir / "h.safetensors").string();
  Tensor x = awkward_input();
  save_safetensors(path, {{"h", x.to(DType::BF16)}});
  std::ifstream in(path, std::ios::binary);
  std::string header(200, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header.size()));
  CHECK(header.find("\"BF16\"") != std::string::npos);
  Tensor back = load_safetensors(path).tensors.at("h");
  CHECK(back.dtype() == DType::F32);
  CHECK(bits_of(back) == bits_of(pgt::rounded_to_bf16(x)));
  std::filesystem::remove_all(dir);
}

TEST_CASE("bf16 on the GPU: conversions, copies and tensor-core products match the CPU") {
  if (!pgt::have_cuda()) return;
  const Device gpu = Device::cuda();
  Tensor x = awkward_input();
  Tensor hg = pgt::same_layout_on(x, gpu).to(DType::BF16);
  CHECK(hg.device() == gpu);
  CHECK(bits_of(hg.to(Device::cpu()).to(DType::F32)) == bits_of(pgt::rounded_to_bf16(x)));
  CHECK(bits_of(hg.to(DType::F32).to(Device::cpu())) == bits_of(pgt::rounded_to_bf16(x)));
  CHECK(bits_of(x.to(DType::BF16)
                    .to(gpu)
                    .transpose(0, 1)
                    .contiguous()
                    .to(Device::cpu())
                    .to(DType::F32)) == bits_of(pgt::rounded_to_bf16(x).transpose(0, 1)));
  manual_seed(8);
  Tensor a = randn({3, 70, 130}).to(DType::BF16), b = randn({130, 50});
  Tensor bt16 = randn({50, 130}).to(DType::BF16).transpose(0, 1);
  for (MatmulPrecision precision : {MatmulPrecision::F32, MatmulPrecision::BF16}) {
    MatmulPrecisionGuard guard(precision);
    for (const Tensor& rhs : {b, bt16}) {
      Tensor cpu = matmul(a, rhs);
      Tensor on_gpu = matmul(a.to(gpu), pgt::same_layout_on(rhs, gpu));
      CHECK(pgt::max_rel_diff_strict(on_gpu, cpu) < 1e-5);
    }
  }
}
