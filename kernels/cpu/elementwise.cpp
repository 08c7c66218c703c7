// Fill, copy, unary, binary and where kernels over arbitrary strides.
#include <cmath>
#include <cstring>

#include "core/bfloat16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/gelu_math.h"

namespace pg::cpu {

namespace {

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.impl().storage->data()) + t.offset();
}

template <typename T, typename Fn>
void unary_loop(const Tensor& x, Tensor& out, Fn fn) {
  const T* xp = ptr<T>(x);
  T* op = ptr<T>(out);
  auto l = coalesce<2>(out.shape(), {&out.strides(), &x.strides()});
  for_each_run(l, [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
    T* o = op + off[0];
    const T* a = xp + off[1];
    if (st[0] == 1 && st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = fn(a[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = fn(a[i * st[1]]);
    }
  });
}

template <typename T, typename Fn>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& out, Fn fn) {
  const T* ap = ptr<T>(a);
  const T* bp = ptr<T>(b);
  T* op = ptr<T>(out);
  auto l = coalesce<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
  for_each_run(l, [&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> st) {
    T* o = op + off[0];
    const T* x = ap + off[1];
    const T* y = bp + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = fn(x[i], y[i]);
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
      T yv = *y;
      for (int64_t i = 0; i < n; ++i) o[i] = fn(x[i], yv);
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      T xv = *x;
      for (int64_t i = 0; i < n; ++i) o[i] = fn(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = fn(x[i * st[1]], y[i * st[2]]);
    }
  });
}

// The GELU formulas' exp, tanh and erf (kernels/gelu_math.h).
struct CpuMath {
  template <typename T>
  static T exp(T x) {
    return vexp(x);
  }
  template <typename T>
  static T tanh(T x) {
    return vtanh(x);
  }
  template <typename T>
  static T erf(T x) {
    return std::erf(x);
  }
};

// Integer powers by repeated multiplication: exact signs for negative bases and faster.
template <typename T>
T pow_scalar(T x, double p) {
  if (p == 2) return x * x;
  if (p == 3) return x * x * x;
  if (p == 1) return x;
  if (p == 0) return T(1);
  if (p == std::floor(p) && std::fabs(p) <= 16) {
    T r = 1, b = x;
    for (int64_t e = static_cast<int64_t>(std::fabs(p)); e; e >>= 1, b *= b)
      if (e & 1) r *= b;
    return p < 0 ? T(1) / r : r;
  }
  return static_cast<T>(std::pow(x, static_cast<T>(p)));
}

}  // namespace

void CpuBackend::fill(Tensor& out, double value) {
  dispatch_stored(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = static_cast<T>(value);
    T* op = ptr<T>(out);
    auto l = coalesce<1>(out.shape(), {&out.strides()});
    for_each_run(l, [&](std::array<int64_t, 1> off, int64_t n, std::array<int64_t, 1> st) {
      for (int64_t i = 0; i < n; ++i) op[off[0] + i * st[0]] = v;
    });
  });
}

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  dispatch_stored(src.dtype(), [&](auto stag) {
    using S = decltype(stag);
    dispatch_stored(dst.dtype(), [&](auto dtag) {
      using D = decltype(dtag);
      const S* sp = ptr<S>(src);
      D* dp = ptr<D>(dst);
      auto l = coalesce<2>(dst.shape(), {&dst.strides(), &src.strides()});
      for_each_run(l, [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
        D* o = dp + off[0];
        const S* s = sp + off[1];
        if constexpr (std::is_same_v<S, D>) {
          if (st[0] == 1 && st[1] == 1) {
            std::memcpy(o, s, static_cast<size_t>(n) * sizeof(D));
            return;
          }
        }
        for (int64_t i = 0; i < n; ++i) o[i * st[0]] = static_cast<D>(s[i * st[1]]);
      });
    });
  });
}

void CpuBackend::arange(Tensor& out, double start, double step) {
  dispatch_all(out.dtype(), "arange", [&](auto tag) {
    using T = decltype(tag);
    T* op = ptr<T>(out);
    for (int64_t i = 0; i < out.numel(); ++i) op[i] = static_cast<T>(start + step * double(i));
  });
}

void CpuBackend::from_host(const void* src, Tensor& dst) {
  std::memcpy(dst.raw_data(), src, static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype()));
}

void CpuBackend::to_host(const Tensor& src, void* dst) {
  std::memcpy(dst, src.raw_data(), static_cast<size_t>(src.numel()) * dtype_size(src.dtype()));
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, Tensor& out, double s) {
  dispatch_floating(x.dtype(), "unary op", [&](auto tag) {
    using T = decltype(tag);
    T ts = static_cast<T>(s);
    switch (op) {
      case UnaryOp::Neg:
        unary_loop<T>(x, out, [](T v) { return -v; });
        break;
      case UnaryOp::Exp:
        unary_loop<T>(x, out, [](T v) { return vexp(v); });
        break;
      case UnaryOp::Log:
        unary_loop<T>(x, out, [](T v) { return std::log(v); });
        break;
      case UnaryOp::Sqrt:
        unary_loop<T>(x, out, [](T v) { return std::sqrt(v); });
        break;
      case UnaryOp::Abs:
        unary_loop<T>(x, out, [](T v) { return std::abs(v); });
        break;
      case UnaryOp::Sign:
        unary_loop<T>(x, out, [](T v) { return T((v > 0) - (v < 0)); });
        break;
      case UnaryOp::Tanh:
        unary_loop<T>(x, out, [](T v) { return vtanh(v); });
        break;
      case UnaryOp::Sigmoid:
        unary_loop<T>(x, out, [](T v) { return vsigmoid(v); });
        break;
      case UnaryOp::Relu:
        unary_loop<T>(x, out, [](T v) { return v > 0 ? v : T(0); });
        break;
      case UnaryOp::ReluMask:
        unary_loop<T>(x, out, [](T v) { return v > 0 ? T(1) : T(0); });
        break;
      case UnaryOp::GeluTanh:
        unary_loop<T>(x, out, [](T v) { return gelu::tanh_form<CpuMath>(v); });
        break;
      case UnaryOp::GeluErf:
        unary_loop<T>(x, out, [](T v) { return gelu::erf_form<CpuMath>(v); });
        break;
      case UnaryOp::PowScalar:
        unary_loop<T>(x, out, [s](T v) { return pow_scalar(v, s); });
        break;
      case UnaryOp::AddScalar:
        unary_loop<T>(x, out, [ts](T v) { return v + ts; });
        break;
      case UnaryOp::MulScalar:
        unary_loop<T>(x, out, [ts](T v) { return v * ts; });
        break;
      case UnaryOp::RsubScalar:
        unary_loop<T>(x, out, [ts](T v) { return ts - v; });
        break;
      case UnaryOp::RoundBf16:  // f64 goes through f32: this op serves f32 products
        unary_loop<T>(x, out, [](T v) { return T(round_to_bf16(static_cast<float>(v))); });
        break;
    }
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_all(a.dtype(), "element-wise op", [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case BinaryOp::Add:
        binary_loop<T>(a, b, out, [](T x, T y) { return x + y; });
        break;
      case BinaryOp::Sub:
        binary_loop<T>(a, b, out, [](T x, T y) { return x - y; });
        break;
      case BinaryOp::Mul:
        binary_loop<T>(a, b, out, [](T x, T y) { return x * y; });
        break;
      case BinaryOp::Div:
        if constexpr (std::is_integral_v<T>)
          throw Error("div", "integer division is not supported; convert to a floating dtype");
        else
          binary_loop<T>(a, b, out, [](T x, T y) { return x / y; });
        break;
      case BinaryOp::Maximum:
        binary_loop<T>(a, b, out, [](T x, T y) { return x != x || x > y ? x : y; });
        break;
      case BinaryOp::Minimum:
        binary_loop<T>(a, b, out, [](T x, T y) { return x != x || x < y ? x : y; });
        break;
      case BinaryOp::Eq:
        binary_loop<T>(a, b, out, [](T x, T y) { return T(x == y); });
        break;
      case BinaryOp::Ne:
        binary_loop<T>(a, b, out, [](T x, T y) { return T(x != y); });
        break;
      case BinaryOp::Gt:
        binary_loop<T>(a, b, out, [](T x, T y) { return T(x > y); });
        break;
      case BinaryOp::Lt:
        binary_loop<T>(a, b, out, [](T x, T y) { return T(x < y); });
        break;
      case BinaryOp::Ge:
        binary_loop<T>(a, b, out, [](T x, T y) { return T(x >= y); });
        break;
      case BinaryOp::Le:
        binary_loop<T>(a, b, out, [](T x, T y) { return T(x <= y); });
        break;
      case BinaryOp::GeluTanhBackward:
      case BinaryOp::GeluErfBackward:
        if constexpr (std::is_integral_v<T>)
          throw Error("gelu", "integer tensors have no gradient; convert to a floating dtype");
        else if (op == BinaryOp::GeluTanhBackward)
          binary_loop<T>(a, b, out, [](T g, T x) { return g * gelu::tanh_form_grad<CpuMath>(x); });
        else
          binary_loop<T>(a, b, out, [](T g, T x) { return g * gelu::erf_form_grad<CpuMath>(x); });
        break;
    }
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) {
  dispatch_all(cond.dtype(), "where", [&](auto ctag) {
    using C = decltype(ctag);
    dispatch_all(a.dtype(), "where", [&](auto tag) {
      using T = decltype(tag);
      const C* cp = ptr<C>(cond);
      const T* ap = ptr<T>(a);
      const T* bp = ptr<T>(b);
      T* op = ptr<T>(out);
      auto l =
          coalesce<4>(out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()});
      for_each_run(l, [&](std::array<int64_t, 4> off, int64_t n, std::array<int64_t, 4> st) {
        for (int64_t i = 0; i < n; ++i)
          op[off[0] + i * st[0]] =
              cp[off[1] + i * st[1]] != C(0) ? ap[off[2] + i * st[2]] : bp[off[3] + i * st[3]];
      });
    });
  });
}

}  // namespace pg::cpu
