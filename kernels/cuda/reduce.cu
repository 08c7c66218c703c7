// Sum, max, min and argmax over any set of dims: one thread block per output element, and long
// sums into few outputs split across blocks.
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_backend.h"

namespace pg::cuda {

namespace {

// A running extreme: the first NaN wins, then the best value, ties keep the earlier index
// (the CPU backend's sequential rule, made order-independent).
template <typename T>
struct Best {
  T value;
  int64_t index;  // -1: empty
};

template <typename T>
__device__ Best<T> better(ReduceOp op, Best<T> a, Best<T> b) {
  if (a.index < 0) return b;
  if (b.index < 0) return a;
  bool an = is_nan(a.value), bn = is_nan(b.value);
  if (an || bn) return an && (!bn || a.index < b.index) ? a : b;
  if (a.value == b.value) return a.index < b.index ? a : b;
  bool a_wins = op == ReduceOp::Min ? a.value < b.value : a.value > b.value;
  return a_wins ? a : b;
}

template <typename T>
__global__ void reduce_kernel(ReduceOp op, StridedIter<2> outer, int64_t n_out,
                              StridedIter<1> inner, int64_t n_red, const T* x, void* out) {
  using Acc = AccT<T>;
  __shared__ Acc sums[kThreads];
  __shared__ T values[kThreads];
  __shared__ int64_t indices[kThreads];
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    auto oo = outer.offsets(o);
    const T* base = x + oo[0];
    Acc sum = 0;
    Best<T> best{T(0), -1};
    for (int64_t r = threadIdx.x; r < n_red; r += blockDim.x) {
      T v = base[inner.offsets(r)[0]];
      if (op == ReduceOp::Sum)
        sum += static_cast<Acc>(v);
      else
        best = better<T>(op, best, Best<T>{v, r});
    }
    sums[threadIdx.x] = sum;
    values[threadIdx.x] = best.value;
    indices[threadIdx.x] = best.index;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
      if (static_cast<int>(threadIdx.x) < w) {
        int j = threadIdx.x + w;
        if (op == ReduceOp::Sum) {
          sums[threadIdx.x] += sums[j];
        } else {
          Best<T> b = better<T>(op, Best<T>{values[threadIdx.x], indices[threadIdx.x]},
                                Best<T>{values[j], indices[j]});
          values[threadIdx.x] = b.value;
          indices[threadIdx.x] = b.index;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      if (op == ReduceOp::Sum)
        static_cast<T*>(out)[oo[1]] = static_cast<T>(sums[0]);
      else if (op == ReduceOp::ArgMax)
        static_cast<int64_t*>(out)[oo[1]] = indices[0];
      else
        static_cast<T*>(out)[oo[1]] = values[0];
    }
    __syncthreads();
  }
}

// Long sums into few outputs (a loss, a gradient norm): one block each would leave most of the
// GPU idle, so block (c, o) sums chunk c of output o's range; a second kernel adds the chunks.
// Both orders are fixed, so results repeat from run to run.
template <typename T>
__global__ void partial_sum_kernel(StridedIter<2> outer, StridedIter<1> inner, int64_t n_red,
                                   int64_t chunk, const T* x, AccT<T>* partial) {
  int64_t o = blockIdx.y, c = blockIdx.x;
  const T* base = x + outer.offsets(o)[0];
  int64_t end = min(n_red, (c + 1) * chunk);
  AccT<T> sum = 0;
  for (int64_t r = c * chunk + threadIdx.x; r < end; r += blockDim.x)
    sum += static_cast<AccT<T>>(base[inner.offsets(r)[0]]);
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[o * gridDim.x + c] = sum;
}

template <typename T>
__global__ void finish_sum_kernel(StridedIter<2> outer, int64_t chunks, const AccT<T>* partial,
                                  T* out) {
  int64_t o = blockIdx.x;
  AccT<T> sum = 0;
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) sum += partial[o * chunks + c];
  sum = block_sum(sum);
  if (threadIdx.x == 0) out[outer.offsets(o)[1]] = static_cast<T>(sum);
}

// Split a sum when it has fewer outputs than the GPU has multiprocessors and at least two chunks.
constexpr int64_t kSplitOutputs = 128, kChunk = 16384, kMaxChunks = 1024;

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& x, Tensor& out) {
  DeviceGuard guard(out.device().index);
  auto [kept_shape, kept_x, kept_out, red_shape, red_x] = split_reduce_dims(x, out);
  auto outer = make_iter<2>(kept_shape, {&kept_x, &kept_out});
  auto inner = make_iter<1>(red_shape, {&red_x});
  int64_t n_out = shape_numel(kept_shape), n_red = shape_numel(red_shape);
  unsigned grid = static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(n_out, 1), 65535));
  if (op == ReduceOp::Sum && n_out <= kSplitOutputs && n_red >= 2 * kChunk) {
    int64_t chunks = std::min<int64_t>((n_red + kChunk - 1) / kChunk, kMaxChunks);
    int64_t chunk = (n_red + chunks - 1) / chunks;
    dispatch_all(x.dtype(), "sum", [&](auto tag) {
      using T = decltype(tag);
      using A = AccT<T>;
      Tensor partial =
          empty({n_out * chunks}, {std::is_integral_v<T> ? DType::I64 : DType::F64, out.device()});
      dim3 blocks(static_cast<unsigned>(chunks), static_cast<unsigned>(n_out));
      partial_sum_kernel<T><<<blocks, kThreads, 0, stream()>>>(outer, inner, n_red, chunk,
                                                               dptr<T>(x), dptr<A>(partial));
      PG_CUDA_LAUNCH_CHECK();
      finish_sum_kernel<T><<<static_cast<unsigned>(n_out), kThreads, 0, stream()>>>(
          outer, chunks, dptr<A>(partial), dptr<T>(out));
      PG_CUDA_LAUNCH_CHECK();
    });
    return;
  }
  dispatch_all(x.dtype(), "reduction", [&](auto tag) {
    using T = decltype(tag);
    reduce_kernel<T><<<grid, kThreads, 0, stream()>>>(op, outer, n_out, inner, n_red, dptr<T>(x),
                                                      out.raw_data());
    PG_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace pg::cuda
