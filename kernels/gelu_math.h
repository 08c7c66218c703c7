// GELU and its derivative, written once for the CPU and CUDA backends. Each backend passes its
// own exp, tanh and erf (`Math`): vectorisable forms on the CPU, CUDA's own on the device.
// In f32, 0.5 (1 + tanh(u)) is taken as the equal sigmoid(2u): one exp and one division, and no
// cancellation in 1 + tanh(u) for negative u (which put up to 1e-6 into the derivative).
#pragma once
#include <type_traits>

#if defined(__CUDACC__)
#define PG_GELU_INLINE __host__ __device__ __forceinline__
#else
// Forced: a call per element would stop the CPU loops from vectorising, and GCC declines to
// inline the derivative into the binary loop by itself.
#define PG_GELU_INLINE [[gnu::always_inline]] inline
#endif

namespace pg::gelu {

constexpr double kTanhK = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kTanhC = 0.044715;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;

/// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <typename Math, typename T>
PG_GELU_INLINE T tanh_form(T x) {
  T u = T(kTanhK) * (x + T(kTanhC) * x * x * x);
  if constexpr (std::is_same_v<T, float>)
    return x / (1.0f + Math::exp(-2.0f * u));
  else
    return T(0.5) * x * (T(1) + Math::tanh(u));
}

/// d/dx of tanh_form.
template <typename Math, typename T>
PG_GELU_INLINE T tanh_form_grad(T x) {
  T u = T(kTanhK) * (x + T(kTanhC) * x * x * x);
  T du = T(kTanhK) * (T(1) + T(3 * kTanhC) * x * x);
  if constexpr (std::is_same_v<T, float>) {
    // s (1 - s) as (e s) s, without the cancellation in 1 - s; e is kept finite so that e s
    // stays a number where s underflows.
    float a = -2.0f * u;
    float e = Math::exp(a < 80.0f ? a : 80.0f), s = 1.0f / (1.0f + e);
    return s + 2.0f * x * ((e * s) * s) * du;
  } else {
    T t = Math::tanh(u);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
  }
}

/// 0.5 x (1 + erf(x / sqrt 2)).
template <typename Math, typename T>
PG_GELU_INLINE T erf_form(T x) {
  return T(0.5) * x * (T(1) + Math::erf(x * T(kInvSqrt2)));
}

/// d/dx of erf_form.
template <typename Math, typename T>
PG_GELU_INLINE T erf_form_grad(T x) {
  return T(0.5) * (T(1) + Math::erf(x * T(kInvSqrt2))) +
         x * T(kInvSqrt2Pi) * Math::exp(T(-0.5) * x * x);
}

}  // namespace pg::gelu
