// GPU benchmarks for tools/gpu_check: GEMM against raw cuBLAS, fused attention forward+backward
// per policy, and GPT training throughput. One JSON object per line on stdout;
// tools/bench/bench_gpu_torch.py measures PyTorch on the same shapes and prints the joint table.
// Usage: bench_gpu [repeats]   (default 20; medians over repeats after a warm-up)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "kernels/device_api.h"
#include "models/gpt.h"
#include "nn/attention_op.h"
#include "nn/optim.h"
#include "polygrad.h"

using namespace pg;

namespace {

// Median milliseconds of f() (each run waits for the GPU), after two warm-up runs.
template <typename F>
double median_ms(int repeats, F&& f) {
  f();
  f();
  cuda::synchronize();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    cuda::synchronize();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void emit(const std::string& name, double value, const char* unit) {
  std::printf("{\"name\": \"%s\", \"polygrad\": %.6g, \"unit\": \"%s\"}\n", name.c_str(), value,
              unit);
  std::fflush(stdout);
}

void bench_gemm(int repeats, Device gpu) {
  const int64_t n = 8192;
  Generator gen(1);
  Tensor a = randn({n, n}, {}, &gen).to(gpu), b = randn({n, n}, {}, &gen).to(gpu);
  cublasHandle_t h;
  cublasCreate(&h);
  for (bool tf32 : {false, true}) {
    cuda::set_allow_tf32(tf32);
    double flops = 2.0 * n * n * n;
    double ms = median_ms(repeats, [&] { Tensor c = matmul(a, b); });
    emit(std::string("gemm f32 8192^3 ") + (tf32 ? "tf32" : "fp32") + " TFLOP/s", flops / ms / 1e9,
         "TFLOP/s");
    // The same product straight through cuBLAS: the ceiling polygrad's path can reach.
    Tensor c = empty({n, n}, {DType::F32, gpu});
    cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    const float one = 1, zero = 0;
    int N = static_cast<int>(n);
    double raw = median_ms(repeats, [&] {
      cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, b.data<float>(), N, a.data<float>(),
                  N, &zero, c.data<float>(), N);
    });
    emit(std::string("gemm f32 8192^3 ") + (tf32 ? "tf32" : "fp32") + " raw cuBLAS TFLOP/s",
         flops / raw / 1e9, "TFLOP/s");
  }
  cuda::set_allow_tf32(false);
  {
    // bf16 mixed precision: polygrad rounds its f32 operands on every call; raw cuBLAS gets
    // operands already in bf16 (their values do not change the time).
    MatmulPrecisionGuard bf16(MatmulPrecision::BF16);
    double flops = 2.0 * n * n * n;
    double ms = median_ms(repeats, [&] { Tensor c = matmul(a, b); });
    emit("gemm f32 8192^3 bf16 TFLOP/s", flops / ms / 1e9, "TFLOP/s");
    Tensor a16 = zeros({n * n / 2}, {DType::I32, gpu}), b16 = zeros({n * n / 2}, {DType::I32, gpu});
    Tensor c = empty({n, n}, {DType::F32, gpu});
    cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    const float one = 1, zero = 0;
    int N = static_cast<int>(n);
    double raw = median_ms(repeats, [&] {
      cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, N, N, &one, b16.raw_data(), CUDA_R_16BF, N,
                   a16.raw_data(), CUDA_R_16BF, N, &zero, c.data<float>(), CUDA_R_32F, N,
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    });
    emit("gemm f32 8192^3 bf16 raw cuBLAS TFLOP/s", flops / raw / 1e9, "TFLOP/s");
  }
  cublasDestroy(h);
}

void bench_attention(int repeats, Device gpu) {
  const int64_t B = 8, H = 16, T = 1024, d = 64;
  Generator gen(2);
  TensorOptions f32{DType::F32, gpu};
  Tensor q = randn({B, H, T, d}, f32, &gen).requires_grad_();
  Tensor k = randn({B, H, T, d}, f32, &gen).requires_grad_();
  Tensor v = randn({B, H, T, d}, f32, &gen).requires_grad_();
  Tensor g = randn({B, H, T, d}, f32, &gen);
  // Tile products on tensor cores (3xTF32, the default), then on FMA units for comparison.
  for (bool tensor_cores : {true, false}) {
    cuda::set_attention_tensor_cores(tensor_cores);
    for (const char* spec : {"softmax", "poly:1", "poly:2", "poly:3", "relu", "sigmoid"}) {
      auto act = AttentionActivation::parse(spec);
      double ms = median_ms(repeats, [&] {
        Tensor out = attention(q, k, v, act, true, 0.125, Tensor(), nullptr, AttentionPath::Fused);
        auto grads = grad(out, {q, k, v}, g);
      });
      emit(std::string("attention fwd+bwd causal B8 H16 T1024 d64 ") + spec +
               (tensor_cores ? "" : " fma") + " ms",
           ms, "ms");
    }
  }
  cuda::set_attention_tensor_cores(true);
  // Under bf16 precision: tile products from bf16-rounded operands (one bf16 mma instead of
  // 3xTF32's three TF32 ones), against PyTorch's attention under torch.autocast (bf16).
  MatmulPrecisionGuard bf16(MatmulPrecision::BF16);
  for (const char* spec : {"softmax", "poly:3"}) {
    auto act = AttentionActivation::parse(spec);
    double ms = median_ms(repeats, [&] {
      Tensor out = attention(q, k, v, act, true, 0.125, Tensor(), nullptr, AttentionPath::Fused);
      auto grads = grad(out, {q, k, v}, g);
    });
    emit(std::string("attention fwd+bwd causal B8 H16 T1024 d64 ") + spec + " bf16 ms", ms, "ms");
  }
}

// The GPT of the training rows (10.8 M parameters), as tools/bench/bench_gpu_torch.py builds it.
GptConfig bench_gpt_config(const char* spec) {
  GptConfig cfg;
  cfg.vocab_size = 96;
  cfg.context = 256;
  cfg.dim = 384;
  cfg.layers = 6;
  cfg.heads = 6;
  cfg.attn = spec;
  return cfg;
}

void bench_gpt(int repeats, Device gpu) {
  for (auto [spec, precision] :
       {std::pair{"softmax", MatmulPrecision::F32}, std::pair{"poly:3", MatmulPrecision::F32},
        std::pair{"softmax", MatmulPrecision::BF16}, std::pair{"poly:3", MatmulPrecision::BF16}}) {
    MatmulPrecisionGuard guard(precision);
    GptConfig cfg = bench_gpt_config(spec);
    manual_seed(3);
    Gpt model(cfg);
    model.to(gpu);
    AdamW opt(std::vector<ParamGroup>{{model.parameters(), 3e-4, 0.1}});
    const int64_t batch = 32;
    Generator gen(4);
    Tensor x = randint(0, cfg.vocab_size, {batch, cfg.context}, {DType::I64}, &gen).to(gpu);
    Tensor y = randint(0, cfg.vocab_size, {batch, cfg.context}, {DType::I64}, &gen).to(gpu);
    auto step = [&] {
      Tensor loss = cross_entropy(model(x), y);
      opt.zero_grad();
      loss.backward();
      clip_grad_norm(model.parameters(), 1.0);
      opt.step();
    };
    step();  // the optimizer state exists before the peak is measured, as in PyTorch's column
    const uint64_t launches_before = cuda::kernel_launches();
    step();
    const double launches = static_cast<double>(cuda::kernel_launches() - launches_before);
    cuda::synchronize();
    cuda::allocator().reset_peak();
    size_t base = cuda::allocator().stats().allocated;
    double ms = median_ms(repeats, step);
    char size[32];
    std::snprintf(size, sizeof size, "%.1fM", static_cast<double>(model.num_parameters()) / 1e6);
    std::string name = std::string("gpt train ") + size + " ctx256 batch32 " + spec +
                       (precision == MatmulPrecision::BF16 ? " bf16" : "");
    emit(name + " tok/s", 1e3 * static_cast<double>(batch * cfg.context) / ms, "tok/s");
    // Above the weights and optimizer state: activations, gradients and temporaries.
    double peak = static_cast<double>(cuda::allocator().stats().peak_allocated - base);
    emit(name + " peak MiB", peak / (1 << 20), "MiB");
    emit(name + " own kernel launches per step", launches, "launches");
  }
}

// Clipping plus an AdamW step over the benchmark GPT's parameters alone: the part of a
// training step that is many small tensors (77 here), where launches can cost more than work.
void bench_optimizer(int repeats, Device gpu) {
  manual_seed(3);
  Gpt model(bench_gpt_config("softmax"));
  model.to(gpu);
  std::vector<Tensor> params = model.parameters(), grads;
  Generator gen(5);
  for (const Tensor& p : params) grads.push_back(randn(p.shape(), {p.dtype(), gpu}, &gen));
  AdamW opt(std::vector<ParamGroup>{{params, 3e-4, 0.1}});
  double ms = median_ms(repeats, [&] {
    // The same gradients every time (clipping replaces them), so every call scales.
    for (size_t i = 0; i < params.size(); ++i) params[i].set_grad(grads[i]);
    clip_grad_norm(params, 1.0);
    opt.step();
  });
  char name[96];
  std::snprintf(name, sizeof name, "clip_grad_norm + adamw step, %zu tensors %.1fM ms",
                params.size(), static_cast<double>(model.num_parameters()) / 1e6);
  emit(name, ms, "ms");
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda::is_available()) {
    std::fprintf(stderr, "bench_gpu: no CUDA device\n");
    return 2;
  }
  int repeats = argc > 1 ? std::max(3, std::atoi(argv[1])) : 20;
  Device gpu = Device::cuda(0);
  try {
    bench_gemm(repeats, gpu);
    bench_attention(repeats, gpu);
    bench_gpt(repeats, gpu);
    bench_optimizer(repeats, gpu);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
