// exp, tanh and sigmoid in forms GCC vectorises (glibc's scalar expf is ~10x slower here),
// accurate to about 1 ulp (exp) and 3 ulp (tanh) in f32. f64 keeps libm: it serves
// gradcheck and references, not speed.
#pragma once
#include <cmath>
#include <cstdint>

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

/// 1 / (1 + e^-x).
inline float vsigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }
inline double vsigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace pg::cpu
