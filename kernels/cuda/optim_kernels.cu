// Fused optimizer updates and gradient-clipping passes, batched over a model's parameters:
// each block updates one chunk of one parameter (kernels/cuda/multi_tensor.cuh).
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/factory.h"

namespace pg::cuda {

namespace {

template <typename T>
struct AdamArg {
  T* p;
  const T* g;
  T *m, *v;
  int64_t n;
  AdamStep s;
};

template <typename T>
struct SgdArg {
  T* p;
  const T* g;
  T* buf;  // null without momentum
  int64_t n;
  SgdStep s;
};

template <typename T>
struct ReadArg {
  const T* x;
  int64_t n;
};

template <typename T>
struct MapArg {
  const T* x;
  T* out;
  int64_t n;
};

template <typename T>
__global__ void adam_kernel(TensorBatch<AdamArg<T>> batch) {
  const Chunk c = batch.chunk(blockIdx.x);
  const AdamArg<T>& a = batch.arg[c.tensor];
  const AdamStep& s = a.s;
  const T b1 = static_cast<T>(s.beta1), b2 = static_cast<T>(s.beta2), eps = static_cast<T>(s.eps);
  // 1 - beta in double, then rounded (as PyTorch): 1 - 0.999f in f32 is 1.3e-5 off 0.001.
  const T c1 = static_cast<T>(1 - s.beta1), c2 = static_cast<T>(1 - s.beta2);
  const T step_size = static_cast<T>(s.step_size), sqrt_bc2 = static_cast<T>(s.sqrt_bc2);
  const T decay = static_cast<T>(s.decay), l2 = static_cast<T>(s.l2);
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const T gi = a.g[i] + l2 * a.p[i];
    T pi = a.p[i] * decay;
    T mi = b1 * a.m[i] + c1 * gi;
    T vi = b2 * a.v[i] + c2 * gi * gi;
    a.m[i] = mi;
    a.v[i] = vi;
    a.p[i] = pi - step_size * mi / (sqrt(vi) / sqrt_bc2 + eps);
  }
}

template <typename T>
__global__ void sgd_kernel(TensorBatch<SgdArg<T>> batch) {
  const Chunk c = batch.chunk(blockIdx.x);
  const SgdArg<T>& a = batch.arg[c.tensor];
  const T lr = static_cast<T>(a.s.lr), wd = static_cast<T>(a.s.weight_decay),
          mom = static_cast<T>(a.s.momentum);
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    T d = a.g[i] + wd * a.p[i];
    if (a.buf) {
      a.buf[i] = a.s.first ? d : mom * a.buf[i] + d;
      d = a.s.nesterov ? d + mom * a.buf[i] : a.buf[i];
    }
    a.p[i] -= lr * d;
  }
}

// partial[b] = the sum of squares of block b's chunk.
template <typename T>
__global__ void sum_of_squares_kernel(TensorBatch<ReadArg<T>> batch, double* partial) {
  const Chunk c = batch.chunk(blockIdx.x);
  double acc = 0;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const double v = static_cast<double>(batch.arg[c.tensor].x[i]);
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block adds the partial sums in a fixed order: the result is the same run after run.
__global__ void add_partials_kernel(const double* partial, int64_t n, double* out) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

template <typename T>
__global__ void scale_kernel(TensorBatch<MapArg<T>> batch, T s) {
  const Chunk c = batch.chunk(blockIdx.x);
  const MapArg<T>& a = batch.arg[c.tensor];
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) a.out[i] = a.x[i] * s;
}

unsigned grid(int64_t blocks) { return static_cast<unsigned>(blocks); }

}  // namespace

void CudaBackend::adam_update(const std::vector<AdamParam>& params) {
  if (params.empty()) return;
  DeviceGuard guard(params[0].param.device().index);
  auto dtype_of = [&](size_t k) { return params[k].param.dtype(); };
  for_each_floating_dtype(params.size(), dtype_of, "adam_update", [&](auto tag, const auto& idx) {
    using T = decltype(tag);
    std::vector<AdamArg<T>> args;
    for (size_t k : idx) {
      const AdamParam& a = params[k];
      args.push_back(
          {dptr<T>(a.param), dptr<T>(a.grad), dptr<T>(a.m), dptr<T>(a.v), a.param.numel(), a.step});
    }
    for_each_batch(args, [&](const TensorBatch<AdamArg<T>>& batch, int64_t blocks, int64_t) {
      adam_kernel<T><<<grid(blocks), kThreads, 0, stream()>>>(batch);
      PG_CUDA_LAUNCH_CHECK();
    });
  });
}

void CudaBackend::sgd_update(const std::vector<SgdParam>& params) {
  if (params.empty()) return;
  DeviceGuard guard(params[0].param.device().index);
  auto dtype_of = [&](size_t k) { return params[k].param.dtype(); };
  for_each_floating_dtype(params.size(), dtype_of, "sgd_update", [&](auto tag, const auto& idx) {
    using T = decltype(tag);
    std::vector<SgdArg<T>> args;
    for (size_t k : idx) {
      const SgdParam& a = params[k];
      args.push_back({dptr<T>(a.param), dptr<T>(a.grad), a.buf.defined() ? dptr<T>(a.buf) : nullptr,
                      a.param.numel(), a.step});
    }
    for_each_batch(args, [&](const TensorBatch<SgdArg<T>>& batch, int64_t blocks, int64_t) {
      sgd_kernel<T><<<grid(blocks), kThreads, 0, stream()>>>(batch);
      PG_CUDA_LAUNCH_CHECK();
    });
  });
}

void CudaBackend::sum_of_squares(const std::vector<Tensor>& xs, Tensor& out) {
  DeviceGuard guard(out.device().index);
  // One partial sum per block, in batches laid end to end, then one ordered sum (which writes
  // 0 when there is nothing to sum).
  int64_t blocks = 0;
  for (const Tensor& x : xs) blocks += chunk_blocks(x.numel());
  Tensor partial = empty({std::max<int64_t>(blocks, 1)}, {DType::F64, out.device()});
  double* next = dptr<double>(partial);
  auto dtype_of = [&](size_t k) { return xs[k].dtype(); };
  for_each_floating_dtype(xs.size(), dtype_of, "sum_of_squares", [&](auto tag, const auto& idx) {
    using T = decltype(tag);
    std::vector<ReadArg<T>> args;
    for (size_t k : idx) args.push_back({dptr<T>(xs[k]), xs[k].numel()});
    next +=
        for_each_batch(args, [&](const TensorBatch<ReadArg<T>>& batch, int64_t n, int64_t before) {
          sum_of_squares_kernel<T><<<grid(n), kThreads, 0, stream()>>>(batch, next + before);
          PG_CUDA_LAUNCH_CHECK();
        });
  });
  add_partials_kernel<<<1, kThreads, 0, stream()>>>(dptr<double>(partial), blocks,
                                                    dptr<double>(out));
  PG_CUDA_LAUNCH_CHECK();
}

void CudaBackend::scale(const std::vector<Tensor>& xs, double scale,
                        const std::vector<Tensor>& outs) {
  if (xs.empty()) return;
  DeviceGuard guard(xs[0].device().index);
  auto dtype_of = [&](size_t k) { return xs[k].dtype(); };
  for_each_floating_dtype(xs.size(), dtype_of, "scale", [&](auto tag, const auto& idx) {
    using T = decltype(tag);
    std::vector<MapArg<T>> args;
    for (size_t k : idx) args.push_back({dptr<T>(xs[k]), dptr<T>(outs[k]), xs[k].numel()});
    for_each_batch(args, [&](const TensorBatch<MapArg<T>>& batch, int64_t blocks, int64_t) {
      scale_kernel<T><<<grid(blocks), kThreads, 0, stream()>>>(batch, static_cast<T>(scale));
      PG_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace pg::cuda
