// exp, tanh and sigmoid in forms GCC vectorises (glibc's scalar expf is ~10x slower here),
// accurate to about 1 ulp (exp) and 3 ulp (tanh) in f32. f64 keeps libm: it serves
// gradcheck and references, not speed.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

namespace pg::cpu {

/// e^x in f32: Cephes range reduction and polynomial; results below ~1e-38 flush to 0.
inline float vexp(float x) {
  const float hi = 88.3762626647949f, lo = -87.3365447504f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  // Adding 1.5 * 2^23 rounds to the nearest integer without a (non-vectorisable) floor call.
  const float magic = 12582912.0f;
  float n = (xc * 1.44269504088896341f + magic) - magic;
  float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union {
    int32_t i;
    float f;
  } scale;
  scale.i = (static_cast<int32_t>(n) + 127) << 23;
  float y = p * scale.f;
  y = x > hi ? INFINITY : y;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}
inline double vexp(double x) { return std::exp(x); }

/// tanh through e^{-2|x|}; a short series near 0 keeps the relative error small there.
inline float vtanh(float x) {
  float a = std::fabs(x);
  float e = vexp(-2.0f * a);
  float t = (1.0f - e) / (1.0f + e);
  float x2 = a * a;
  float series = a * (1.0f - x2 * (1.0f / 3.0f - x2 * (2.0f / 15.0f)));
  t = a < 0.0625f ? series : t;
  return x < 0 ? -t : t;
}
inline double vtanh(double x) { return std::tanh(x); }

/// The sum of f(0), ..., f(n-1) in double through eight interleaved partial sums: one running
/// sum is a chain of dependent adds that cannot vectorise, eight independent ones do.
template <typename F>
double sum_wide(int64_t n, F&& f) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += f(i + k);
  double tail = 0;
  for (; i < n; ++i) tail += f(i);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

/// The largest of f(0), ..., f(n-1) (-inf for n = 0; NaNs are skipped), through eight
/// interleaved partial maxima for the same reason as sum_wide.
template <typename T, typename F>
T max_wide(int64_t n, F&& f) {
  const T lowest = -std::numeric_limits<T>::infinity();
  T acc[8] = {lowest, lowest, lowest, lowest, lowest, lowest, lowest, lowest};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      T v = f(i + k);
      acc[k] = v > acc[k] ? v : acc[k];
    }
  for (; i < n; ++i) {
    T v = f(i);
    acc[0] = v > acc[0] ? v : acc[0];
  }
  for (int k = 1; k < 8; ++k) acc[0] = acc[k] > acc[0] ? acc[k] : acc[0];
  return acc[0];
}

/// 1 / (1 + e^-x).
inline float vsigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }
inline double vsigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace pg::cpu
