// bfloat16: the rounding shared by the CPU and CUDA kernels (so both backends round
// identically) and the element type of DType::BF16 tensors.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define PG_HOST_DEVICE __host__ __device__
#else
#define PG_HOST_DEVICE
#endif

namespace pg {

/// The bfloat16 bits nearest to x (ties to even); NaN stays a quiet NaN of the same sign,
/// values past bfloat16's largest finite round to infinity.
PG_HOST_DEVICE inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);  // carries into the exponent give the right result
  return static_cast<uint16_t>(u >> 16);
}

/// The float whose bits are the bfloat16 `bits` (exact).
PG_HOST_DEVICE inline float bf16_to_float(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

/// x rounded to the nearest bfloat16, as a float.
PG_HOST_DEVICE inline float round_to_bf16(float x) { return bf16_to_float(bf16_bits(x)); }

/// One bfloat16 value (the upper half of an f32). From another type it rounds through float
/// (ties to even; from f64 that is two roundings, as in PyTorch); to float it is exact.
struct BFloat16 {
  uint16_t bits;
  BFloat16() = default;
  template <typename A>
  PG_HOST_DEVICE explicit BFloat16(A v) : bits(bf16_bits(static_cast<float>(v))) {}
  PG_HOST_DEVICE operator float() const { return bf16_to_float(bits); }
};

}  // namespace pg
