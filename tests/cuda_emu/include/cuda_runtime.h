// CUDA emulated on the CPU, for testing the CUDA backend's kernels and host logic where no GPU
// exists (PG_CUDA=EMULATE). Kernels run block by block; the threads of a block are fibers that
// switch only at barriers (__syncthreads, warp shuffles and ballots), so shared memory is plain
// static storage and atomics need no locking. What it checks: index math, tile edges, barrier
// structure (a divergent barrier deadlocks and is reported), launch limits, the cuBLAS argument
// contract and the host code; PG_EMU_SCHEDULE picks one of three thread orders (emu.cpp), so a
// missing barrier one order satisfies fails under another. What it cannot: timing, the memory
// model, tensor-core rounding.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

// --- types of the runtime API ------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16BF = 14 };
constexpr unsigned cudaStreamNonBlocking = 1;
struct CUstream_st;
using cudaStream_t = CUstream_st*;

struct uint3 {
  unsigned x, y, z;
};
// The 16-byte vector types kernels load shared memory with; may_alias makes reading a float
// array through float4 defined behaviour in C++, as it is in CUDA.
struct __attribute__((aligned(16), may_alias)) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(16), may_alias)) double2 {
  double x, y;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t err);
const char* cudaGetErrorName(cudaError_t err);

// --- the device side ---------------------------------------------------------------------------
namespace pg_emu {

/// The position of the fiber now running (set by the scheduler before each switch).
struct Position {
  uint3 thread, block;
  dim3 block_dim, grid_dim;
};
extern Position current;

/// Waits for every live thread of the block / of the calling thread's warp.
void block_barrier();
void warp_barrier();
/// Exchange space per lane of the calling thread's warp (kSlotBytes), and its lane.
constexpr size_t kSlotBytes = 64;
unsigned char* warp_slot(int lane);
int lane();

/// Runs f() once per thread of every block of the grid; a bad configuration becomes the error
/// cudaGetLastError reports, as on a GPU.
void run_grid(dim3 grid, dim3 block, const std::function<void()>& f);

/// A vector access must be aligned to its size, as on a GPU, where a misaligned one faults.
inline void check_aligned(const void* p, size_t alignment) {
  if (reinterpret_cast<uintptr_t>(p) % alignment != 0)
    throw std::runtime_error("CUDA emulation: misaligned address " +
                             std::to_string(reinterpret_cast<uintptr_t>(p)) + " for a " +
                             std::to_string(alignment) + "-byte vector access");
}

struct Config {
  dim3 grid, block;
};
template <typename... A>
struct Args {
  std::tuple<A...> values;
};
template <typename F>
struct Launch {
  F* kernel;
  Config config;
};

}  // namespace pg_emu

#define threadIdx (::pg_emu::current.thread)
#define blockIdx (::pg_emu::current.block)
#define blockDim (::pg_emu::current.block_dim)
#define gridDim (::pg_emu::current.grid_dim)
#define warpSize 32

// `k<<<grid, block, smem, stream>>>(args)` is rewritten (tests/cuda_emu/rewrite.cmake) into
// `k | pg_emu_config(grid, block, smem, stream) | pg_emu_args(args)`; the operators are found
// by argument-dependent lookup in pg_emu.
inline pg_emu::Config pg_emu_config(dim3 grid, dim3 block, size_t = 0, cudaStream_t = nullptr) {
  return {grid, block};
}
template <typename... A>
pg_emu::Args<std::decay_t<A>...> pg_emu_args(A&&... a) {
  return {std::tuple<std::decay_t<A>...>(std::forward<A>(a)...)};
}
namespace pg_emu {
template <typename R, typename... P>
Launch<R(P...)> operator|(R (*kernel)(P...), Config c) {
  return {kernel, c};
}
template <typename F, typename... A>
void operator|(Launch<F> l, Args<A...> args) {
  run_grid(l.config.grid, l.config.block, [&] { std::apply(l.kernel, args.values); });
}
}  // namespace pg_emu

inline void __syncthreads() { pg_emu::block_barrier(); }

template <typename T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 8);
  int lane = pg_emu::lane();
  std::memcpy(pg_emu::warp_slot(lane), &v, sizeof v);
  pg_emu::warp_barrier();
  int src = lane ^ lane_mask;
  if (src / width != lane / width) src = lane;  // outside the segment: own value
  T out;
  std::memcpy(&out, pg_emu::warp_slot(src), sizeof out);
  pg_emu::warp_barrier();
  return out;
}

inline unsigned __ballot_sync(unsigned, int predicate) {
  int lane = pg_emu::lane();
  unsigned char p = predicate ? 1 : 0;
  std::memcpy(pg_emu::warp_slot(lane), &p, 1);
  pg_emu::warp_barrier();
  unsigned bits = 0;
  for (int i = 0; i < 32; ++i)
    if (*pg_emu::warp_slot(i) == 1) bits |= 1u << i;
  pg_emu::warp_barrier();
  return bits;
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }

inline float __uint_as_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline uint32_t __float_as_uint(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

// --- tensor cores: TF32 mma.sync.m16n8k8 ------------------------------------------------------
namespace pg_emu {

/// cvt.rna.tf32.f32: x rounded to 10 mantissa bits, ties away from zero; NaN and inf kept.
inline uint32_t tf32_rna(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
  return u & ~0x1fffu;
}

// The tensor core reads only the TF32 bits of a register.
inline float tf32_value(uint32_t u) { return __uint_as_float(u & ~0x1fffu); }

/// The three products of a 3xTF32 mma.m16n8k8 (row.col, f32 accumulate) in the PTX ISA's
/// fragment layout: lane l holds A rows l/4 and l/4 + 8 at columns l%4 and l%4 + 4, B rows
/// l%4 and l%4 + 4 at column l/4, and D row l/4 (+ 8) at columns 2 (l%4) and 2 (l%4) + 1.
/// d += a_small b_big, then a_big b_small, then a_big b_big, each summed over k in order.
inline void mma_3xtf32(float (&d)[4], const uint32_t (&a_big)[4], const uint32_t (&a_small)[4],
                       const uint32_t (&b_big)[2], const uint32_t (&b_small)[2]) {
  const int me = lane();
  unsigned char* slot = warp_slot(me);
  std::memcpy(slot, a_big, 16);
  std::memcpy(slot + 16, a_small, 16);
  std::memcpy(slot + 32, b_big, 8);
  std::memcpy(slot + 40, b_small, 8);
  warp_barrier();
  // A[2][16][8] and B[2][8][8] (big, small) gathered from every lane's fragments.
  float A[2][16][8], B[2][8][8];
  for (int l = 0; l < 32; ++l) {
    const unsigned char* s = warp_slot(l);
    uint32_t a[2][4], b[2][2];
    std::memcpy(a, s, 32);
    std::memcpy(b, s + 32, 16);
    const int g = l / 4, t = l % 4;
    for (int part = 0; part < 2; ++part) {
      A[part][g][t] = tf32_value(a[part][0]);
      A[part][g + 8][t] = tf32_value(a[part][1]);
      A[part][g][t + 4] = tf32_value(a[part][2]);
      A[part][g + 8][t + 4] = tf32_value(a[part][3]);
      B[part][t][g] = tf32_value(b[part][0]);
      B[part][t + 4][g] = tf32_value(b[part][1]);
    }
  }
  warp_barrier();
  const int g = me / 4, t = me % 4;
  for (int q = 0; q < 4; ++q) {
    const int row = g + (q >> 1) * 8, col = 2 * t + (q & 1);
    const int pa[3] = {1, 0, 0}, pb[3] = {0, 1, 0};  // small*big, big*small, big*big
    for (int m = 0; m < 3; ++m)
      for (int k = 0; k < 8; ++k) d[q] += A[pa[m]][row][k] * B[pb[m]][k][col];
  }
}

/// mma.m16n8k8.row.col.f32.bf16.bf16.f32 in the PTX ISA's fragment layout: lane l holds A row
/// l/4 in a_lo and row l/4 + 8 in a_hi, each at columns 2 (l%4) (lower half) and 2 (l%4) + 1
/// (upper half), and B rows 2 (l%4) and 2 (l%4) + 1 (lower, upper half) at column l/4; D as
/// mma_3xtf32. The products of bf16 values are exact in f32; d += them in k order.
inline void mma_bf16(float (&d)[4], uint32_t a_lo, uint32_t a_hi, uint32_t b) {
  const int me = lane();
  unsigned char* slot = warp_slot(me);
  const uint32_t mine[3] = {a_lo, a_hi, b};
  std::memcpy(slot, mine, 12);
  warp_barrier();
  auto half = [](uint32_t r, int h) { return __uint_as_float(h ? r & 0xffff0000u : r << 16); };
  float A[16][8], B[8][8];
  for (int l = 0; l < 32; ++l) {
    uint32_t r[3];
    std::memcpy(r, warp_slot(l), 12);
    const int g = l / 4, t = l % 4;
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = half(r[0], h);
      A[g + 8][2 * t + h] = half(r[1], h);
      B[2 * t + h][g] = half(r[2], h);
    }
  }
  warp_barrier();
  const int g = me / 4, t = me % 4;
  for (int q = 0; q < 4; ++q) {
    const int row = g + (q >> 1) * 8, col = 2 * t + (q & 1);
    for (int k = 0; k < 8; ++k) d[q] += A[row][k] * B[k][col];
  }
}

}  // namespace pg_emu

// Fibers never run at the same time: a read-modify-write is atomic.
template <typename T>
T atomicAdd(T* address, T value) {
  T old = *address;
  *address = old + value;
  return old;
}

// CUDA's min and max: fmin/fmax for floating types (a NaN loses), the usual for integers.
template <typename A, typename B>
auto max(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>)
    return std::fmax(static_cast<C>(a), static_cast<C>(b));
  else
    return std::max(static_cast<C>(a), static_cast<C>(b));
}
template <typename A, typename B>
auto min(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>)
    return std::fmin(static_cast<C>(a), static_cast<C>(b));
  else
    return std::min(static_cast<C>(a), static_cast<C>(b));
}
using std::erf;
using std::exp;
using std::fabs;
using std::floor;
using std::isnan;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;
