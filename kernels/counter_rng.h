// Random numbers that depend only on (key, counter): every element of a dropout mask is drawn
// independently, so the CPU and CUDA backends produce the same mask in any order or thread count.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PG_HOST_DEVICE __host__ __device__
#else
#define PG_HOST_DEVICE
#endif

namespace pg {

/// 64 random bits: the splitmix64 finaliser of key + (counter + 1) * golden.
PG_HOST_DEVICE inline uint64_t counter_bits(uint64_t key, uint64_t counter) {
  uint64_t z = key + (counter + 1) * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Uniform double in [0, 1) from counter_bits(key, counter).
PG_HOST_DEVICE inline double counter_uniform(uint64_t key, uint64_t counter) {
  return static_cast<double>(counter_bits(key, counter) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace pg
