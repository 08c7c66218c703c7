// Fill, copy, arange, host transfers and element-wise maps over strided, broadcast operands.
#include <cmath>

#include "core/bfloat16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/gelu_math.h"

namespace pg::cuda {

namespace {

template <typename T>
__global__ void fill_kernel(StridedIter<1> it, int64_t n, T* out, T v) {
  PG_KERNEL_LOOP(i, n) { out[it.offsets(i)[0]] = v; }
}

template <typename S, typename D>
__global__ void copy_kernel(StridedIter<2> it, int64_t n, const S* src, D* dst) {
  PG_KERNEL_LOOP(i, n) {
    auto o = it.offsets(i);
    dst[o[0]] = static_cast<D>(src[o[1]]);
  }
}

template <typename T>
__global__ void arange_kernel(int64_t n, T* out, double start, double step) {
  PG_KERNEL_LOOP(i, n) { out[i] = static_cast<T>(start + step * static_cast<double>(i)); }
}

// Integer powers by repeated multiplication, as on the CPU: exact signs for negative bases.
template <typename T>
__device__ T pow_scalar(T x, double p) {
  if (p == 2) return x * x;
  if (p == 3) return x * x * x;
  if (p == 1) return x;
  if (p == 0) return T(1);
  if (p == floor(p) && fabs(p) <= 16) {
    T r = 1, b = x;
    for (int64_t e = static_cast<int64_t>(fabs(p)); e; e >>= 1, b *= b)
      if (e & 1) r *= b;
    return p < 0 ? T(1) / r : r;
  }
  return static_cast<T>(pow(x, static_cast<T>(p)));
}

// The GELU formulas' exp, tanh and erf (kernels/gelu_math.h).
struct CudaMath {
  template <typename T>
  __device__ static T exp(T x) {
    if constexpr (std::is_same_v<T, float>)
      return expf(x);
    else
      return ::exp(x);
  }
  template <typename T>
  __device__ static T tanh(T x) {
    if constexpr (std::is_same_v<T, float>)
      return tanhf(x);
    else
      return ::tanh(x);
  }
  template <typename T>
  __device__ static T erf(T x) {
    if constexpr (std::is_same_v<T, float>)
      return erff(x);
    else
      return ::erf(x);
  }
};

template <typename T>
__device__ T apply_unary(UnaryOp op, T v, T s, double sd) {
  switch (op) {
    case UnaryOp::Neg:
      return -v;
    case UnaryOp::Exp:
      return exp(v);
    case UnaryOp::Log:
      return log(v);
    case UnaryOp::Sqrt:
      return sqrt(v);
    case UnaryOp::Abs:
      return fabs(v);
    case UnaryOp::Sign:
      return T((v > 0) - (v < 0));
    case UnaryOp::Tanh:
      return tanh(v);
    case UnaryOp::Sigmoid:
      return T(1) / (T(1) + exp(-v));
    case UnaryOp::Relu:
      return v > 0 ? v : T(0);
    case UnaryOp::ReluMask:
      return v > 0 ? T(1) : T(0);
    case UnaryOp::GeluTanh:
      return gelu::tanh_form<CudaMath>(v);
    case UnaryOp::GeluErf:
      return gelu::erf_form<CudaMath>(v);
    case UnaryOp::PowScalar:
      return pow_scalar(v, sd);
    case UnaryOp::AddScalar:
      return v + s;
    case UnaryOp::MulScalar:
      return v * s;
    case UnaryOp::RsubScalar:
      return s - v;
    case UnaryOp::RoundBf16:
      return T(round_to_bf16(static_cast<float>(v)));
  }
  return v;
}

template <typename T>
__global__ void unary_kernel(StridedIter<2> it, int64_t n, UnaryOp op, const T* x, T* out,
                             double s) {
  PG_KERNEL_LOOP(i, n) {
    auto o = it.offsets(i);
    out[o[0]] = apply_unary<T>(op, x[o[1]], static_cast<T>(s), s);
  }
}

template <typename T>
__device__ T apply_binary(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::Add:
      return x + y;
    case BinaryOp::Sub:
      return x - y;
    case BinaryOp::Mul:
      return x * y;
    case BinaryOp::Div:
      return x / y;  // integers are refused on the host
    case BinaryOp::Maximum:
      return is_nan(x) || x > y ? x : y;
    case BinaryOp::Minimum:
      return is_nan(x) || x < y ? x : y;
    case BinaryOp::Eq:
      return T(x == y);
    case BinaryOp::Ne:
      return T(x != y);
    case BinaryOp::Gt:
      return T(x > y);
    case BinaryOp::Lt:
      return T(x < y);
    case BinaryOp::Ge:
      return T(x >= y);
    case BinaryOp::Le:
      return T(x <= y);
    case BinaryOp::GeluTanhBackward:  // integers are refused on the host
    case BinaryOp::GeluErfBackward:
      if constexpr (std::is_floating_point_v<T>)
        return x * (op == BinaryOp::GeluTanhBackward ? gelu::tanh_form_grad<CudaMath>(y)
                                                     : gelu::erf_form_grad<CudaMath>(y));
      else
        return x;
  }
  return x;
}

template <typename T>
__global__ void binary_kernel(StridedIter<3> it, int64_t n, BinaryOp op, const T* a, const T* b,
                              T* out) {
  PG_KERNEL_LOOP(i, n) {
    auto o = it.offsets(i);
    out[o[0]] = apply_binary<T>(op, a[o[1]], b[o[2]]);
  }
}

template <typename C, typename T>
__global__ void where_kernel(StridedIter<4> it, int64_t n, const C* cond, const T* a, const T* b,
                             T* out) {
  PG_KERNEL_LOOP(i, n) {
    auto o = it.offsets(i);
    out[o[0]] = cond[o[1]] != C(0) ? a[o[2]] : b[o[3]];
  }
}

}  // namespace

void CudaBackend::fill(Tensor& out, double value) {
  DeviceGuard guard(out.device().index);
  dispatch_stored(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    int64_t n = out.numel();
    auto it = make_iter<1>(out.shape(), {&out.strides()});
    fill_kernel<T>
        <<<blocks_for(n), kThreads, 0, stream()>>>(it, n, dptr<T>(out), static_cast<T>(value));
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::copy(const Tensor& src, Tensor& dst) {
  DeviceGuard guard(dst.device().index);
  int64_t n = dst.numel();
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    PG_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(),
                                  static_cast<size_t>(n) * dtype_size(dst.dtype()),
                                  cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  dispatch_stored(src.dtype(), [&](auto stag) {
    using S = decltype(stag);
    dispatch_stored(dst.dtype(), [&](auto dtag) {
      using D = decltype(dtag);
      auto it = make_iter<2>(dst.shape(), {&dst.strides(), &src.strides()});
      copy_kernel<S, D>
          <<<blocks_for(n), kThreads, 0, stream()>>>(it, n, dptr<S>(src), dptr<D>(dst));
      PG_CUDA_LAUNCH_CHECK();
    });
  });
}

void CudaBackend::arange(Tensor& out, double start, double step) {
  DeviceGuard guard(out.device().index);
  dispatch_all(out.dtype(), "arange", [&](auto tag) {
    using T = decltype(tag);
    int64_t n = out.numel();
    arange_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(n, dptr<T>(out), start, step);
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::from_host(const void* src, Tensor& dst) {
  DeviceGuard guard(dst.device().index);
  size_t bytes = static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype());
  PG_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src, bytes, cudaMemcpyHostToDevice, stream()));
  // The host buffer may be freed as soon as we return.
  PG_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void CudaBackend::to_host(const Tensor& src, void* dst) {
  DeviceGuard guard(src.device().index);
  size_t bytes = static_cast<size_t>(src.numel()) * dtype_size(src.dtype());
  PG_CUDA_CHECK(cudaMemcpyAsync(dst, src.raw_data(), bytes, cudaMemcpyDeviceToHost, stream()));
  PG_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, Tensor& out, double s) {
  DeviceGuard guard(out.device().index);
  dispatch_floating(x.dtype(), "unary op", [&](auto tag) {
    using T = decltype(tag);
    int64_t n = out.numel();
    auto it = make_iter<2>(out.shape(), {&out.strides(), &x.strides()});
    unary_kernel<T>
        <<<blocks_for(n), kThreads, 0, stream()>>>(it, n, op, dptr<T>(x), dptr<T>(out), s);
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  DeviceGuard guard(out.device().index);
  dispatch_all(a.dtype(), "element-wise op", [&](auto tag) {
    using T = decltype(tag);
    if (std::is_integral_v<T> && op == BinaryOp::Div)
      throw Error("div", "integer division is not supported; convert to a floating dtype");
    if (std::is_integral_v<T> &&
        (op == BinaryOp::GeluTanhBackward || op == BinaryOp::GeluErfBackward))
      throw Error("gelu", "integer tensors have no gradient; convert to a floating dtype");
    int64_t n = out.numel();
    auto it = make_iter<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
    binary_kernel<T>
        <<<blocks_for(n), kThreads, 0, stream()>>>(it, n, op, dptr<T>(a), dptr<T>(b), dptr<T>(out));
    PG_CUDA_LAUNCH_CHECK();
  });
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  DeviceGuard guard(out.device().index);
  dispatch_all(cond.dtype(), "where", [&](auto ctag) {
    using C = decltype(ctag);
    dispatch_all(a.dtype(), "where", [&](auto tag) {
      using T = decltype(tag);
      int64_t n = out.numel();
      auto it =
          make_iter<4>(out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()});
      where_kernel<C, T><<<blocks_for(n), kThreads, 0, stream()>>>(it, n, dptr<C>(cond), dptr<T>(a),
                                                                   dptr<T>(b), dptr<T>(out));
      PG_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace pg::cuda
