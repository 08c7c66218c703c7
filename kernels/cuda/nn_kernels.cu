// Row kernels of neural networks: gather/scatter, softmax, layer norm, cross-entropy, dropout.
// One thread block per row; sums accumulate in f64 like the CPU twins.
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "kernels/counter_rng.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/factory.h"

namespace pg::cuda {

namespace {

unsigned rows_grid(int64_t rows) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(rows, 1), 65535));
}

template <typename I>
__global__ void count_indices_kernel(const I* idx, int64_t n, int64_t rows, bool has_ignore,
                                     int64_t ignore, unsigned long long* counts) {
  PG_KERNEL_LOOP(i, n) {
    int64_t v = static_cast<int64_t>(idx[i]);
    if (has_ignore && v == ignore) continue;
    if (v < 0 || v >= rows)
      atomicAdd(&counts[0], 1ull);
    else
      atomicAdd(&counts[1], 1ull);
  }
}

// Counts, on the device and without waiting, the indices outside [0, rows) (counts[0]) and the
// kept ones (counts[1]); an index equal to ignore is neither.
Tensor count_indices(const Tensor& index, int64_t rows, std::optional<int64_t> ignore) {
  int64_t n = index.numel();
  Tensor counts = zeros({2}, {DType::I64, index.device()});
  if (n == 0) return counts;
  auto* c = static_cast<unsigned long long*>(counts.raw_data());
  bool has = ignore.has_value();
  int64_t ign = ignore.value_or(0);
  if (index.dtype() == DType::I64)
    count_indices_kernel<int64_t><<<blocks_for(n), kThreads, 0, stream()>>>(dptr<int64_t>(index), n, rows,
                                                                   has, ign, c);
  else
    count_indices_kernel<int32_t><<<blocks_for(n), kThreads, 0, stream()>>>(dptr<int32_t>(index), n, rows,
                                                                   has, ign, c);
  PG_CUDA_LAUNCH_CHECK();
  return counts;
}

// Checks 0 <= index < rows (skipping ignore) and returns the count of kept indices; on a bad
// one, the host finds the first and raises the CPU backend's message (`unit` names the rows).
// Waits for the device: the error must reach the caller of the op given the bad index.
int64_t check_indices(const Tensor& index, int64_t rows, std::optional<int64_t> ignore,
                      const char* op, const char* what, const char* unit) {
  int64_t n = index.numel();
  if (n == 0) return 0;
  Tensor counts = count_indices(index, rows, ignore);
  unsigned long long host[2];
  PG_CUDA_CHECK(
      cudaMemcpyAsync(host, counts.raw_data(), sizeof host, cudaMemcpyDeviceToHost, stream()));
  PG_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (host[0] != 0) {
    Tensor h = index.to(Device::cpu()).to(DType::I64);
    const int64_t* p = h.data<int64_t>();
    std::string or_ignore = ignore ? " or ignore_index " + std::to_string(*ignore) : "";
    for (int64_t i = 0; i < n; ++i)
      PG_CHECK((ignore && p[i] == *ignore) || (p[i] >= 0 && p[i] < rows), op, what, " ", p[i],
               " at position ", i, " is out of range for ", rows, " ", unit,
               " (expected 0 <= ", what, " < ", rows, or_ignore, ")");
  }
  return static_cast<int64_t>(host[1]);
}

template <typename I>
__device__ int64_t index_at(const void* idx, bool i64, int64_t i) {
  return i64 ? static_cast<const int64_t*>(idx)[i] : static_cast<const int32_t*>(idx)[i];
}

template <typename T>
__global__ void index_select_kernel(const T* w, const void* idx, bool i64, int64_t n, int64_t d,
                                    T* out) {
  PG_KERNEL_LOOP(e, n * d) {
    int64_t i = e / d, c = e % d;
    out[e] = w[index_at<T>(idx, i64, i) * d + c];
  }
}

template <typename T>
__global__ void index_add_kernel(const void* idx, bool i64, const T* src, int64_t n, int64_t d,
                                 int64_t rows, T* out) {
  PG_KERNEL_LOOP(e, n * d) {
    int64_t i = e / d, c = e % d;
    int64_t r = index_at<T>(idx, i64, i);
    if (r >= 0 && r < rows) atomicAdd(&out[r * d + c], src[e]);
  }
}

template <typename T>
__global__ void softmax_kernel(const T* x, T* out, int64_t rows, int64_t cols, bool log_out) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    T* orow = out + r * cols;
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = max(mx, xr[c]);
    mx = block_max(mx);
    if (mx == -std::numeric_limits<T>::infinity()) mx = 0;  // fully masked row
    double s = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += exp(xr[c] - mx);
    s = block_sum(s);
    T lse = mx + static_cast<T>(::log(s));
    T inv = static_cast<T>(1.0 / s);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      orow[c] = log_out ? xr[c] - lse : exp(xr[c] - mx) * inv;
  }
}

template <typename T>
__global__ void softmax_backward_kernel(const T* g, const T* y, T* dx, int64_t rows, int64_t cols,
                                        bool log_out) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *gr = g + r * cols, *yr = y + r * cols;
    T* dr = dx + r * cols;
    double acc = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      acc += log_out ? static_cast<double>(gr[c]) : static_cast<double>(gr[c]) * yr[c];
    T a = static_cast<T>(block_sum(acc));
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dr[c] = log_out ? gr[c] - exp(yr[c]) * a : yr[c] * (gr[c] - a);
  }
}

template <typename T>
__global__ void layer_norm_kernel(const T* x, const T* w, const T* b, double eps, T* out, T* mean,
                                  T* rstd, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    double s = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c];
    double mu = block_sum(s) / static_cast<double>(cols);
    double v = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) v += (xr[c] - mu) * (xr[c] - mu);
    double inv = 1.0 / ::sqrt(block_sum(v) / static_cast<double>(cols) + eps);
    if (threadIdx.x == 0) {
      mean[r] = static_cast<T>(mu);
      rstd[r] = static_cast<T>(inv);
    }
    T m = static_cast<T>(mu), is = static_cast<T>(inv);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T h = (xr[c] - m) * is;
      out[r * cols + c] = (w ? h * w[c] : h) + (b ? b[c] : T(0));
    }
  }
}

template <typename T>
__global__ void layer_norm_dx_kernel(const T* g, const T* x, const T* w, const T* mean,
                                     const T* rstd, T* dx, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *gr = g + r * cols, *xr = x + r * cols;
    T m = mean[r], is = rstd[r];
    double sg = 0, sgh = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T h = (xr[c] - m) * is;
      T gh = w ? gr[c] * w[c] : gr[c];
      sg += gh;
      sgh += gh * h;
    }
    T mg = static_cast<T>(block_sum(sg) / cols), mgh = static_cast<T>(block_sum(sgh) / cols);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      T h = (xr[c] - m) * is;
      T gh = w ? gr[c] * w[c] : gr[c];
      dx[r * cols + c] = is * (gh - mg - h * mgh);
    }
  }
}

constexpr int64_t kRowChunk = 256;

// Partial column sums of dy*h and dy over one chunk of rows: part[chunk][2][cols].
template <typename T>
__global__ void layer_norm_dwb_partial(const T* g, const T* x, const T* mean, const T* rstd,
                                       double* part, int64_t rows, int64_t cols) {
  int64_t chunk = blockIdx.y;
  int64_t r0 = chunk * kRowChunk, r1 = min(rows, r0 + kRowChunk);
  for (int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; c < cols;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double sw = 0, sb = 0;
    for (int64_t r = r0; r < r1; ++r) {
      T gv = g[r * cols + c];
      sw += gv * ((x[r * cols + c] - mean[r]) * rstd[r]);
      sb += gv;
    }
    part[(chunk * 2) * cols + c] = sw;
    part[(chunk * 2 + 1) * cols + c] = sb;
  }
}

template <typename T>
__global__ void layer_norm_dwb_final(const double* part, int64_t chunks, int64_t cols, T* dw,
                                     T* db) {
  PG_KERNEL_LOOP(c, cols) {
    double sw = 0, sb = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      sw += part[(k * 2) * cols + c];
      sb += part[(k * 2 + 1) * cols + c];
    }
    if (dw) dw[c] = static_cast<T>(sw);
    if (db) db[c] = static_cast<T>(sb);
  }
}

// Per-row loss terms and log-sum-exp; rows with the ignore target contribute 0.
template <typename T>
__global__ void cross_entropy_kernel(const T* x, const void* tgt, bool i64, int64_t ignore,
                                     double smoothing, T* lse, double* row_loss, int64_t n,
                                     int64_t c) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const T* xr = x + i * c;
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) mx = max(mx, xr[j]);
    mx = block_max(mx);
    double s = 0, sx = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      s += exp(xr[j] - mx);
      sx += xr[j];
    }
    s = block_sum(s);
    sx = block_sum(sx);
    if (threadIdx.x == 0) {
      double l = static_cast<double>(mx) + ::log(s);
      lse[i] = static_cast<T>(l);
      int64_t t = index_at<T>(tgt, i64, i);
      row_loss[i] = t == ignore ? 0.0
                                : (1 - smoothing) * (l - xr[t]) +
                                      smoothing * (l - sx / static_cast<double>(c));
    }
  }
}

template <typename T>
__global__ void mean_kernel(const double* row_loss, int64_t n, int64_t kept, T* loss) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += row_loss[i];
  s = block_sum(s);
  if (threadIdx.x == 0)
    loss[0] = static_cast<T>(kept ? s / static_cast<double>(kept)
                                  : std::numeric_limits<double>::quiet_NaN());
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* grad, const T* x, const void* tgt, bool i64,
                                              const T* lse, int64_t ignore, double smoothing,
                                              const unsigned long long* counts, T* d, int64_t n,
                                              int64_t c) {
  int64_t kept = static_cast<int64_t>(counts[1]);
  T scale = kept ? static_cast<T>(static_cast<double>(grad[0]) / static_cast<double>(kept)) : T(0);
  T off = static_cast<T>(smoothing / static_cast<double>(c)), on = static_cast<T>(1 - smoothing);
  PG_KERNEL_LOOP(e, n * c) {
    int64_t i = e / c, j = e % c;
    int64_t t = index_at<T>(tgt, i64, i);
    if (t == ignore) {
      d[e] = 0;
      continue;
    }
    T v = scale * (exp(x[e] - lse[i]) - off);
    d[e] = j == t ? v - scale * on : v;
  }
}

template <typename T>
__global__ void dropout_kernel(T* out, int64_t n, double keep, uint64_t key, uint64_t first) {
  T scale = static_cast<T>(1.0 / keep);
  PG_KERNEL_LOOP(i, n) {
    out[i] = counter_uniform(key, first + static_cast<uint64_t>(i)) < keep ? scale : T(0);
  }
}

}  // namespace

void CudaBackend::index_select_rows(const Tensor& weight, const Tensor& index, Tensor& out) {
  DeviceGuard guard(out.device().index);
  int64_t rows = weight.size(0), d = weight.size(1), n = index.numel();
  check_indices(index, rows, std::nullopt, "embedding", "index", "rows");
  bool i64 = index.dtype() == DType::I64;
  dispatch_all(weight.dtype(), "embedding", [&](auto tag) {
    using T = decltype(tag);
    index_select_kernel<T><<<blocks_for(n * d), kThreads, 0, stream()>>>(
        dptr<T>(weight), index.raw_data(), i64, n, d, dptr<T>(out));
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::index_add_rows(const Tensor& index, const Tensor& src, Tensor& out) {
  DeviceGuard guard(out.device().index);
  int64_t rows = out.size(0), d = out.size(1), n = index.numel();
  // Only the embedding's backward lands here, with the indices its forward checked: no second
  // check and no wait for the device; an index changed in place since is skipped, never written.
  bool i64 = index.dtype() == DType::I64;
  dispatch_floating(src.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    index_add_kernel<T><<<blocks_for(n * d), kThreads, 0, stream()>>>(
        index.raw_data(), i64, dptr<T>(src), n, d, rows, dptr<T>(out));
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::softmax(const Tensor& x, Tensor& out, bool log) {
  DeviceGuard guard(out.device().index);
  int64_t rows = x.size(0), cols = x.size(1);
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    softmax_kernel<T>
        <<<rows_grid(rows), kThreads, 0, stream()>>>(dptr<T>(x), dptr<T>(out), rows, cols, log);
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx, bool log) {
  DeviceGuard guard(dx.device().index);
  int64_t rows = y.size(0), cols = y.size(1);
  dispatch_floating(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    softmax_backward_kernel<T><<<rows_grid(rows), kThreads, 0, stream()>>>(
        dptr<T>(dy), dptr<T>(y), dptr<T>(dx), rows, cols, log);
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                             Tensor& out, Tensor& mean, Tensor& rstd) {
  DeviceGuard guard(out.device().index);
  int64_t rows = x.size(0), cols = x.size(1);
  dispatch_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* w = weight.defined() ? dptr<T>(weight) : nullptr;
    const T* b = bias.defined() ? dptr<T>(bias) : nullptr;
    layer_norm_kernel<T><<<rows_grid(rows), kThreads, 0, stream()>>>(
        dptr<T>(x), w, b, eps, dptr<T>(out), dptr<T>(mean), dptr<T>(rstd), rows, cols);
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                      const Tensor& mean, const Tensor& rstd, Tensor& dx,
                                      Tensor& dweight, Tensor& dbias) {
  DeviceGuard guard(x.device().index);
  int64_t rows = x.size(0), cols = x.size(1);
  dispatch_floating(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* w = weight.defined() ? dptr<T>(weight) : nullptr;
    if (dx.defined()) {
      layer_norm_dx_kernel<T><<<rows_grid(rows), kThreads, 0, stream()>>>(
          dptr<T>(dy), dptr<T>(x), w, dptr<T>(mean), dptr<T>(rstd), dptr<T>(dx), rows, cols);
      PG_CUDA_LAUNCH_CHECK();
    }
    if (!dweight.defined() && !dbias.defined()) return;
    int64_t chunks = std::max<int64_t>(1, (rows + kRowChunk - 1) / kRowChunk);
    PG_CHECK(chunks <= 65535, "layer_norm_backward", rows, " rows exceed the CUDA kernel's limit");
    Tensor part = empty({chunks, 2, cols}, {DType::F64, x.device()});
    dim3 grid(static_cast<unsigned>(std::min<int64_t>((cols + kThreads - 1) / kThreads, 65535)),
              static_cast<unsigned>(chunks));
    layer_norm_dwb_partial<T><<<grid, kThreads, 0, stream()>>>(
        dptr<T>(dy), dptr<T>(x), dptr<T>(mean), dptr<T>(rstd), dptr<double>(part), rows, cols);
    PG_CUDA_LAUNCH_CHECK();
    layer_norm_dwb_final<T><<<blocks_for(cols), kThreads, 0, stream()>>>(
        dptr<double>(part), chunks, cols, dweight.defined() ? dptr<T>(dweight) : nullptr,
        dbias.defined() ? dptr<T>(dbias) : nullptr);
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                                double label_smoothing, Tensor& loss, Tensor& lse) {
  DeviceGuard guard(loss.device().index);
  int64_t n = logits.size(0), c = logits.size(1);
  int64_t kept = check_indices(target, c, ignore_index, "cross_entropy", "target", "classes");
  bool i64 = target.dtype() == DType::I64;
  Tensor row_loss = empty({std::max<int64_t>(n, 1)}, {DType::F64, logits.device()});
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    if (n > 0) {
      cross_entropy_kernel<T><<<rows_grid(n), kThreads, 0, stream()>>>(
          dptr<T>(logits), target.raw_data(), i64, ignore_index, label_smoothing, dptr<T>(lse),
          dptr<double>(row_loss), n, c);
      PG_CUDA_LAUNCH_CHECK();
    }
    mean_kernel<T><<<1, kThreads, 0, stream()>>>(dptr<double>(row_loss), n, kept, dptr<T>(loss));
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::cross_entropy_backward(const Tensor& grad, const Tensor& logits,
                                         const Tensor& target, const Tensor& lse,
                                         int64_t ignore_index, double label_smoothing,
                                         Tensor& dlogits) {
  DeviceGuard guard(dlogits.device().index);
  int64_t n = logits.size(0), c = logits.size(1);
  // The forward checked these targets; the count of kept ones is recounted on the device, so the
  // backward never waits for it.
  Tensor counts = count_indices(target, c, ignore_index);
  bool i64 = target.dtype() == DType::I64;
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    Tensor g = grad.to(logits.dtype()).contiguous();
    cross_entropy_backward_kernel<T><<<blocks_for(n * c), kThreads, 0, stream()>>>(
        dptr<T>(g), dptr<T>(logits), target.raw_data(), i64, dptr<T>(lse), ignore_index,
        label_smoothing, static_cast<const unsigned long long*>(counts.raw_data()),
        dptr<T>(dlogits), n, c);
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::dropout_mask(Tensor& out, double keep, uint64_t key, uint64_t first_index) {
  DeviceGuard guard(out.device().index);
  dispatch_floating(out.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    int64_t n = out.numel();
    dropout_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(dptr<T>(out), n, keep, key,
                                                                 first_index);
    PG_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace pg::cuda
