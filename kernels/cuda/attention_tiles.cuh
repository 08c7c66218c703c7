// Building blocks of the fused attention kernels (attention_forward.cu, attention_backward.cu),
// flash-attention style: Q, K, V tiles live in shared memory and the [T, S] score matrix exists
// only one [rows, keys] tile at a time, in registers and shared memory. Every entry follows the
// CPU twin (kernels/cpu/attention.cpp): the same row rule, the same per-row constants computed
// in double, hidden entries selected to exact zeros. Here: tile sizes and the kernels' argument
// block, the row rule of each activation, the shared-memory tile loads and tile products (FMA
// units or tensor cores), and the host-side dispatch over dtype, head dim and product path.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/bfloat16.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kernels/backend.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/mma_tf32.cuh"
#include "kernels/device_api.h"

namespace pg::cuda::fused_attention {

constexpr int kNT = 128;  // threads per block: four warps
constexpr int kMaxHeadDim = 128;

// How a kernel computes its tile products: FMA units, tensor cores at about f32 accuracy
// (3xTF32), or tensor cores from operands rounded to bf16 (MatmulPrecision::BF16).
constexpr int kPathFma = 0, kPath3xTf32 = 1, kPathBf16 = 2;

// Tile sizes per dtype and head-dim bucket D, chosen so each kernel's static shared memory
// stays under 48 KB: level 1 is f32 with D = 64, level 2 f32/128 or f64/64, level 4 f64/128.
// fwd: forward, dq: query-major backward, kv: key-major backward; _m query rows, _n keys.
template <typename T, int D>
struct Tiles {
  static constexpr int level = static_cast<int>(sizeof(T) / 4) * (D / 64);
  static constexpr int fwd_m = level == 1 ? 64 : level == 2 ? 32 : 16;
  static constexpr int fwd_n = level == 4 ? 16 : 32;
  static constexpr int dq_m = level == 1 ? 32 : level == 2 ? 16 : 8;
  static constexpr int dq_n = level == 4 ? 16 : 32;
  static constexpr int kv_m = level == 1 ? 64 : level == 2 ? 16 : 8;
  static constexpr int kv_n = level == 4 ? 16 : 32;
};

// A [B,H,R,C] operand with a unit last-dim stride.
template <typename T>
struct Operand {
  T* base = nullptr;
  int64_t sb = 0, sh = 0, sr = 0;
  __device__ T* at(int64_t b, int64_t h) const { return base + b * sb + h * sh; }
};

template <typename T>
Operand<T> operand(const Tensor& t) {
  return {static_cast<T*>(t.raw_data()), t.strides()[0], t.strides()[1], t.strides()[2]};
}

template <typename T>
struct Args {
  Operand<T> q, k, v, g, dq, dk, dv;  // g: out (forward) or dout (backward)
  const int64_t* mask = nullptr;      // [B, S], non-zero = visible; null = all visible
  int64_t mask_sb = 0, mask_ss = 0;
  T* lse = nullptr;      // [B*H*T], softmax only
  T* aux = nullptr;      // backward: D_i (softmax) or N of the row (others), [B*H*T]
  double* sq = nullptr;  // per-(b, h) sums of squares on the device, or null
  int64_t H = 0, Tq = 0, S = 0, BH = 0;
  int d = 0, e = 0;
  AttentionParams p;
  T scale = 1;
};

__device__ inline float dev_exp(float x) { return expf(x); }
__device__ inline double dev_exp(double x) { return exp(x); }
__device__ inline float dev_log(float x) { return logf(x); }
__device__ inline double dev_log(double x) { return log(x); }
__device__ inline int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

template <typename T>
__device__ constexpr T infinity() {
  return std::numeric_limits<T>::infinity();
}

// Reductions over the W lanes (aligned, W a power of two <= 32) that share one score row.
template <int W, typename V>
__device__ V group_sum(V v) {
#pragma unroll
  for (int o = W / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <int W, typename V>
__device__ V group_max(V v) {
#pragma unroll
  for (int o = W / 2; o > 0; o /= 2) {
    V other = __shfl_xor_sync(0xffffffffu, v, o);
    v = other > v ? other : v;
  }
  return v;
}

template <typename T>
__device__ bool key_visible(const Args<T>& a, int64_t b, int64_t j) {
  return a.mask == nullptr || a.mask[b * a.mask_sb + j * a.mask_ss] != 0;
}

// Key j is seen by query i: inside the causal window (j <= i, not offset-aligned) and visible.
template <typename T>
__device__ bool entry_visible(const Args<T>& a, bool key_ok, int64_t i, int64_t j) {
  return key_ok && i < a.Tq && (!a.p.causal || j <= i);
}

// Shared-memory tiles are read 16 bytes at a time (four floats or two doubles per load
// instruction): a scalar load per multiply-add would leave the FMA units waiting on shared
// memory. Leading dimensions are kVec<T> past a multiple of kVec<T>, so the lanes of a
// quarter-warp reading consecutive rows hit distinct banks.
template <typename T>
constexpr int kVec = static_cast<int>(16 / sizeof(T));

// out[u] = p[u] for u < kVec<T>; p is 16-byte aligned.
template <typename T>
__device__ void load_vec(const T* p, T (&out)[kVec<T>]) {
#ifdef PG_CUDA_EMULATED
  pg_emu::check_aligned(p, 16);
#endif
  if constexpr (sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else {
    const double2 v = *reinterpret_cast<const double2*>(p);
    out[0] = v.x, out[1] = v.y;
  }
}

// Rows [row0, row0 + R) of one (b, h) matrix into dst (leading dimension LD). Rows past
// `rows` and columns past `cols` become zeros, so padded entries add exact zeros to products.
template <typename T, int R, int D, int LD>
__device__ void load_tile(T* dst, const T* src, int64_t sr, int64_t row0, int64_t rows, int cols) {
  for (int idx = threadIdx.x; idx < R * D; idx += kNT) {
    int r = idx / D, c = idx % D;
    int64_t row = row0 + r;
    dst[r * LD + c] = row < rows && c < cols ? src[row * sr + c] : T(0);
  }
}

// s[k] = sum_{x < n} X[r0 + k*STEP][x] * Y[c][x]: the score-tile entries of this thread, in
// ascending x. The lanes of a row group read one X row (a broadcast) and consecutive Y rows.
// n is rounded up to whole vectors: the tiles hold zeros there (load_tile), adding exact zeros.
// UX unrolls the x loop (chosen per kernel by ptxas's spill report).
template <typename T, int RK, int STEP, int LDX, int LDY, int UX = 2>
__device__ void tile_dots(const T* X, const T* Y, int r0, int c, int n, T (&s)[RK]) {
  constexpr int V = kVec<T>;
  static_assert(LDX % V == 0 && LDY % V == 0, "rows must stay 16-byte aligned");
#pragma unroll
  for (int k = 0; k < RK; ++k) s[k] = 0;
  const T* y = Y + c * LDY;
#pragma unroll UX
  for (int x = 0; x < n; x += V) {
    T yv[V];
    load_vec(y + x, yv);
#pragma unroll
    for (int k = 0; k < RK; ++k) {
      T xv[V];
      load_vec(X + (r0 + k * STEP) * LDX + x, xv);
#pragma unroll
      for (int u = 0; u < V; ++u) s[k] += xv[u] * yv[u];
    }
  }
}

// Tile row of accumulator entry kk: each warp owns RA consecutive rows.
template <int RA>
__device__ int acc_row(int kk) {
  return static_cast<int>(threadIdx.x) / 32 * RA + kk;
}

// acc[kk][jj] += sum_{m < M} P(row, m) * Y[m][col] in ascending m, for row = acc_row(kk),
// col = t%32 + 32 jj; P(row, m) is P[row][m], or P[m][row] when kTrans. A warp's P reads are
// broadcasts, vectorised along m, or along its consecutive rows when kTrans.
template <typename T, int RA, int CA, int M, int LDP, bool kTrans, int LDY>
__device__ void tile_accumulate(const T* P, const T* Y, T (&acc)[RA][CA]) {
  constexpr int V = kVec<T>;
  static_assert(LDP % V == 0 && (kTrans ? RA % V == 0 : M % V == 0), "16-byte aligned P reads");
  const int r0 = acc_row<RA>(0), c0 = threadIdx.x % 32;
  if constexpr (kTrans) {
#pragma unroll 2
    for (int m = 0; m < M; ++m) {
      T y[CA];
#pragma unroll
      for (int jj = 0; jj < CA; ++jj) y[jj] = Y[m * LDY + c0 + 32 * jj];
#pragma unroll
      for (int k0 = 0; k0 < RA; k0 += V) {
        T pv[V];
        load_vec(P + m * LDP + r0 + k0, pv);
#pragma unroll
        for (int u = 0; u < V; ++u)
#pragma unroll
          for (int jj = 0; jj < CA; ++jj) acc[k0 + u][jj] += pv[u] * y[jj];
      }
    }
  } else {
    for (int m0 = 0; m0 < M; m0 += V) {
      T y[V][CA];
#pragma unroll
      for (int u = 0; u < V; ++u)
#pragma unroll
        for (int jj = 0; jj < CA; ++jj) y[u][jj] = Y[(m0 + u) * LDY + c0 + 32 * jj];
#pragma unroll
      for (int kk = 0; kk < RA; ++kk) {
        T pv[V];
        load_vec(P + (r0 + kk) * LDP + m0, pv);
#pragma unroll
        for (int u = 0; u < V; ++u)
#pragma unroll
          for (int jj = 0; jj < CA; ++jj) acc[kk][jj] += pv[u] * y[u][jj];
      }
    }
  }
}

// Calls f(tile row, row0 + tile row, col, value) for this thread's accumulator entries (the
// tile_accumulate layout) that lie inside `rows` x `cols`.
template <typename T, int RA, int CA, typename F>
__device__ void store_acc(const T (&acc)[RA][CA], int64_t row0, int64_t rows, int cols, F&& f) {
#pragma unroll
  for (int kk = 0; kk < RA; ++kk) {
    const int r = acc_row<RA>(kk);
    if (row0 + r >= rows) continue;
#pragma unroll
    for (int jj = 0; jj < CA; ++jj) {
      const int col = threadIdx.x % 32 + 32 * jj;
      if (col < cols) f(r, row0 + r, col, acc[kk][jj]);
    }
  }
}

// --- f32 on tensor cores (3xTF32 or bf16 mma, kernels/cuda/mma_tf32.cuh) --------------------
// The products of tile_dots and tile_accumulate by 16x8x8 mma tiles: a ROWS x COLS output
// splits into (ROWS/16) x (COLS/8) mma tiles, PER per warp, all in one 16-row slab so a warp
// loads its A fragment once per k step and reuses it across its PER tiles.
// A lane's place in the mma fragment layout: its group (lane / 4) and its index in the group.
__device__ inline int lane_group() { return static_cast<int>(threadIdx.x) % 32 / 4; }
__device__ inline int lane_in_group() { return static_cast<int>(threadIdx.x) % 4; }

template <int ROWS, int COLS>
struct MmaTiles {
  static constexpr int TN = COLS / 8, PER = ROWS / 16 * TN / 4;
  static_assert(ROWS % 16 == 0 && COLS % 8 == 0 && PER >= 1 && TN % PER == 0, "mma tiling");
  __device__ static int first() { return static_cast<int>(threadIdx.x) / 32 * PER; }
  __device__ static int row0() { return first() / TN * 16; }
  __device__ static int col0(int i) { return (first() + i) % TN * 8; }
  // Row and column of accumulator element q (0..3) of this lane's tile i.
  __device__ static int row(int q) { return row0() + lane_group() + (q >> 1) * 8; }
  __device__ static int col(int i, int q) { return col0(i) + 2 * lane_in_group() + (q & 1); }
};

// A fragment element: two TF32 parts (3xTF32), or the f32 bits of a value rounded to bf16
// (kBf16: under MatmulPrecision::BF16).
template <bool kBf16>
using Frag = std::conditional_t<kBf16, uint32_t, Tf32Split>;

template <bool kBf16>
__device__ Frag<kBf16> to_frag(float x) {
  if constexpr (kBf16)
    return __float_as_uint(round_to_bf16(x));
  else
    return tf32_split(x);
}

__device__ inline void mma_frag(float (&d)[4], const Tf32Split (&a)[4], const Tf32Split (&b)[2]) {
  mma_3xtf32(d, a, b);
}
__device__ inline void mma_frag(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  mma_bf16(d, a, b);
}

// This lane's A fragment of A(r, k) = at(r, k) for rows r0.. r0 + 15, columns k0.. k0 + 7.
template <bool kBf16, typename F>
__device__ void load_a(F&& at, int r0, int k0, Frag<kBf16> (&a)[4]) {
  const int g = lane_group(), t = lane_in_group();
  a[0] = to_frag<kBf16>(at(r0 + g, k0 + t));
  a[1] = to_frag<kBf16>(at(r0 + g + 8, k0 + t));
  a[2] = to_frag<kBf16>(at(r0 + g, k0 + t + 4));
  a[3] = to_frag<kBf16>(at(r0 + g + 8, k0 + t + 4));
}

// This lane's B fragment of B(k, n) = at(k, n) for rows k0.. k0 + 7, columns n0.. n0 + 7.
template <bool kBf16, typename F>
__device__ void load_b(F&& at, int k0, int n0, Frag<kBf16> (&b)[2]) {
  const int g = lane_group(), t = lane_in_group();
  b[0] = to_frag<kBf16>(at(k0 + t, n0 + g));
  b[1] = to_frag<kBf16>(at(k0 + t + 4, n0 + g));
}

// tile_dots on tensor cores: the BM x BN score tile passes through `scratch` (leading
// dimension LP) and each thread reads back its entries in tile_dots' layout. Synchronises.
template <bool kBf16, int RK, int STEP, int BM, int BN, int LDX, int LDY, int LP>
__device__ void tile_dots_mma(const float* X, const float* Y, int r0, int c, int n, float* scratch,
                              float (&s)[RK]) {
  using M = MmaTiles<BM, BN>;
  float d[M::PER][4] = {};
  auto step = [&](int k0) {  // past n the tiles hold zeros (load_tile)
    Frag<kBf16> a[4];
    load_a<kBf16>([&](int r, int k) { return X[r * LDX + k]; }, M::row0(), k0, a);
#pragma unroll
    for (int i = 0; i < M::PER; ++i) {
      Frag<kBf16> b[2];
      load_b<kBf16>([&](int k, int j) { return Y[j * LDY + k]; }, k0, M::col0(i), b);
      mma_frag(d[i], a, b);
    }
  };
  if constexpr (kBf16) {  // fully unrolled by default, the d = 64 dq kernel spills (ptxas)
#pragma unroll 2
    for (int k0 = 0; k0 < n; k0 += 8) step(k0);
  } else {
    for (int k0 = 0; k0 < n; k0 += 8) step(k0);
  }
  __syncthreads();  // earlier readers of scratch are done
#pragma unroll
  for (int i = 0; i < M::PER; ++i)
#pragma unroll
    for (int q = 0; q < 4; ++q) scratch[M::row(q) * LP + M::col(i, q)] = d[i][q];
  __syncthreads();
#pragma unroll
  for (int k = 0; k < RK; ++k) s[k] = scratch[(r0 + k * STEP) * LP + c];
}

// Accumulators of a ROWS x COLS output tile, acc(r, col) += sum_m P(r, m) Y[m][col], on FMA
// units (SimtAcc) or tensor cores (MmaAcc), with the same interface.
template <typename T, int ROWS, int COLS>
struct SimtAcc {
  static constexpr int RA = ROWS / 4, CA = COLS / 32;
  T v[RA][CA] = {};
  template <int M, int LDP, bool kTrans, int LDY>
  __device__ void accumulate(const T* P, const T* Y) {
    tile_accumulate<T, RA, CA, M, LDP, kTrans, LDY>(P, Y, v);
  }
  // Multiplies tile row r by f[r].
  __device__ void scale_rows(const T* f) {
#pragma unroll
    for (int kk = 0; kk < RA; ++kk) {
      const T x = f[acc_row<RA>(kk)];
#pragma unroll
      for (int jj = 0; jj < CA; ++jj) v[kk][jj] *= x;
    }
  }
  template <typename F>
  __device__ void store(int64_t row0, int64_t rows, int cols, F&& f) const {
    store_acc(v, row0, rows, cols, f);
  }
};

template <int ROWS, int COLS, bool kBf16>
struct MmaAcc {
  using M = MmaTiles<ROWS, COLS>;
  float v[M::PER][4] = {};
  template <int K, int LDP, bool kTrans, int LDY>
  __device__ void accumulate(const float* P, const float* Y) {
#pragma unroll 1
    for (int k0 = 0; k0 < K; k0 += 8) {
      Frag<kBf16> a[4];
      load_a<kBf16>([&](int r, int k) { return kTrans ? P[k * LDP + r] : P[r * LDP + k]; },
                    M::row0(), k0, a);
#pragma unroll
      for (int i = 0; i < M::PER; ++i) {
        Frag<kBf16> b[2];
        load_b<kBf16>([&](int k, int j) { return Y[k * LDY + j]; }, k0, M::col0(i), b);
        mma_frag(v[i], a, b);
      }
    }
  }
  __device__ void scale_rows(const float* f) {
#pragma unroll
    for (int i = 0; i < M::PER; ++i)
#pragma unroll
      for (int q = 0; q < 4; ++q) v[i][q] *= f[M::row(q)];
  }
  template <typename F>
  __device__ void store(int64_t row0, int64_t rows, int cols, F&& f) const {
#pragma unroll
    for (int i = 0; i < M::PER; ++i)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int r = M::row(q), col = M::col(i, q);
        if (row0 + r < rows && col < cols) f(r, row0 + r, col, v[i][q]);
      }
  }
};

template <typename T, int ROWS, int COLS, int kPath>
using Acc = std::conditional_t<kPath != kPathFma, MmaAcc<ROWS, COLS, kPath == kPathBf16>,
                               SimtAcc<T, ROWS, COLS>>;

// The score-tile products of a kernel on its path (see tile_dots).
template <typename T, int kPath, int RK, int STEP, int BM, int BN, int LDX, int LDY, int LP,
          int UX = 2>
__device__ void dots(const T* X, const T* Y, int r0, int c, int n, T* scratch, T (&s)[RK]) {
  if constexpr (kPath != kPathFma)
    tile_dots_mma<kPath == kPathBf16, RK, STEP, BM, BN, LDX, LDY, LP>(X, Y, r0, c, n, scratch, s);
  else
    tile_dots<T, RK, STEP, LDX, LDY, UX>(X, Y, r0, c, n, s);
}

// Leading dimensions: X (query-row) tiles, Y (key-row) tiles. The mma path pads rows so a
// fragment load's eight row groups fall in distinct banks.
template <int D, int kPath>
constexpr int kLX = kPath != kPathFma ? D + 4 : D;
template <typename T, int D, int kPath>
constexpr int kLY = kPath != kPathFma ? D + 8 : D + kVec<T>;

// cnt[r] = visible keys in the causal window of query row i0 + r (n_visible with a key
// mask): one ballot per 32 keys serves every row of the tile. Synchronises the block.
template <typename T, int BM>
__device__ void count_visible(const Args<T>& a, int64_t b, int64_t i0, int* cnt) {
  for (int r = threadIdx.x; r < BM; r += kNT) cnt[r] = 0;
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t kmax = a.p.causal ? lmin(a.S, i0 + BM) : a.S;
  for (int64_t j0 = threadIdx.x / 32 * 32; j0 < kmax; j0 += kNT) {
    int64_t j = j0 + lane;
    unsigned bits = __ballot_sync(0xffffffffu, j < kmax && key_visible(a, b, j));
    for (int r = lane; r < BM; r += 32) {
      int64_t n = (a.p.causal ? lmin(a.S, i0 + r + 1) : a.S) - j0;  // window keys in this chunk
      unsigned below = n >= 32 ? 0xffffffffu : n <= 0 ? 0u : (1u << n) - 1u;
      int c = __popc(bits & below);
      if (c) atomicAdd(&cnt[r], c);
    }
  }
  __syncthreads();
}

// N of the policy table for query row i (cnt from count_visible when it applies).
template <typename T>
__device__ double row_n(const Args<T>& a, int64_t i, int cnt) {
  if (!a.p.n_visible) return static_cast<double>(a.S);
  int64_t n = a.mask ? cnt : a.p.causal ? lmin(a.S, i + 1) : a.S;
  return n > 1 ? static_cast<double>(n) : 1.0;
}

// The activations' element operations (kernels/attention_math.h) with CUDA's exp.
struct DevExp {
  template <typename T>
  __device__ static T exp(T x) {
    return dev_exp(x);
  }
};
using DevMath = attn::ScalarMath<DevExp>;

// Per-row constants, rounded to T exactly as the CPU does: fa enters the weights, fg their
// derivative (attn::row_factors).
template <typename T>
__device__ void row_factors(const Args<T>& a, double n, T& fa, T& fg) {
  attn::RowFactors<double> f = attn::row_factors(a.p.act, a.p.power, a.p.n_exponent, n);
  fa = static_cast<T>(f.fa);
  fg = static_cast<T>(f.fg);
}

// Weight w and score gradient ds of a visible entry from its score s and dP = dL/dA; ra, rb
// are the row's (lse, D_i) for softmax, else (fa, fg) of row_factors. The forward uses w of
// the non-softmax activations.
template <typename T>
__device__ void weight_grad(const Args<T>& a, T s, T dp, T ra, T rb, T& w, T& ds) {
  w = attn::weight<DevMath>(a.p.act, a.p.power, s, ra);
  ds = attn::score_grad<DevMath>(a.p.act, a.p.power, s, w, dp, rb);
}

// Adds this block's share of a per-(b, h) sum of squares.
__device__ inline void add_square_sum(double* sq, int64_t bh, double v) {
  if (sq == nullptr) return;
  v = group_sum<32>(v);
  if (threadIdx.x % 32 == 0 && v != 0) atomicAdd(sq + bh, v);
}

template <typename T>
Args<T> make_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                  const AttentionParams& p) {
  Args<T> a;
  a.q = operand<T>(q);
  a.k = operand<T>(k);
  a.v = operand<T>(v);
  if (key_mask.defined()) {
    PG_CHECK(key_mask.dtype() == DType::I64, "attention", "key mask must be i64, got ",
             dtype_name(key_mask.dtype()));
    a.mask = static_cast<const int64_t*>(key_mask.raw_data());
    a.mask_sb = key_mask.strides()[0];
    a.mask_ss = key_mask.strides()[1];
  }
  a.H = q.size(1);
  a.Tq = q.size(2);
  a.S = k.size(2);
  a.BH = q.size(0) * a.H;
  a.d = static_cast<int>(q.size(3));
  a.e = static_cast<int>(v.size(3));
  a.p = p;
  a.scale = static_cast<T>(p.scale);
  return a;
}

// Grid of `tiles` x min(B*H, 65535); the kernels stride over the remaining (b, h).
inline dim3 grid_for(int64_t tiles, int64_t bh) {
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(bh < 65535 ? bh : 65535));
}

// Calls f(T{}, integral_constant<D>) for the dtype and the head-dim bucket of d and e.
template <typename F>
void with_config(const Tensor& q, const Tensor& v, const char* op, F&& f) {
  int64_t d = q.size(3), e = v.size(3);
  PG_CHECK(d <= kMaxHeadDim && e <= kMaxHeadDim, op, "head dims up to ", kMaxHeadDim,
           " are supported on CUDA, got d=", d, ", e=", e);
  PG_CHECK(q.dtype() == DType::F32 || q.dtype() == DType::F64, op, "expected f32 or f64, got ",
           dtype_name(q.dtype()));
  auto by_dim = [&](auto tag) {
    if (d <= 64 && e <= 64)
      f(tag, std::integral_constant<int, 64>{});
    else
      f(tag, std::integral_constant<int, 128>{});
  };
  if (q.dtype() == DType::F32)
    by_dim(float{});
  else
    by_dim(double{});
}

inline int64_t ceil_div(int64_t n, int64_t m) { return (n + m - 1) / m; }

// Calls f(std::integral_constant<int, kPath>): f32 under bf16 precision on tensor cores from
// bf16-rounded operands; other f32 on tensor cores as 3xTF32 unless switched off; else FMA.
template <typename T, typename F>
void with_path(bool bf16, F&& f) {
  if constexpr (std::is_same_v<T, float>) {
    if (bf16) return f(std::integral_constant<int, kPathBf16>{});
    if (attention_tensor_cores()) return f(std::integral_constant<int, kPath3xTf32>{});
  }
  f(std::integral_constant<int, kPathFma>{});
}
}  // namespace pg::cuda::fused_attention
