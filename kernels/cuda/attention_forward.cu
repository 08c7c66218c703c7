// Fused attention forward on the GPU: a block per (b, h, query tile) streams the key tiles;
// softmax keeps a running max and sum per row (online softmax) and saves the log-sum-exp,
// the other activations accumulate act(S) V directly. ||A||_F accumulates in the same pass.
#include <cuda_runtime.h>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cuda/attention_tiles.cuh"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_backend.h"

namespace pg::cuda {

namespace {

using namespace fused_attention;

// One block per (query tile, b*h); grid.y strides over b*h beyond the grid limit.
template <typename T, int D, int kPath>
__global__ void __launch_bounds__(kNT) forward_kernel(Args<T> a) {
  constexpr int BM = Tiles<T, D>::fwd_m, BN = Tiles<T, D>::fwd_n;
  constexpr int G = kNT / BN, RK = BM / G;
  constexpr int LX = kLX<D, kPath>, LY = kLY<T, D, kPath>, LP = BN + kVec<T>;
  alignas(16) __shared__ T qs[BM * LX], ys[BN * LY], ps[BM * LP];
  __shared__ T rfac[BM], rrow[BM];
  __shared__ int cnt[BM];
  const int t = threadIdx.x, c = t % BN, g = t / BN;
  const bool softmax = a.p.act == AttnActivation::Softmax;
  const T inf = infinity<T>();
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t kmax = a.p.causal ? lmin(a.S, i0 + BM) : a.S;  // keys any row of the tile sees
  for (int64_t bh = blockIdx.y; bh < a.BH; bh += gridDim.y) {
    const int64_t b = bh / a.H, h = bh % a.H;
    load_tile<T, BM, D, LX>(qs, a.q.at(b, h), a.q.sr, i0, a.Tq, a.d);
    if (!softmax) {
      // N must be known before the first weight: a pre-pass over the key mask.
      const bool counted = a.p.n_visible && a.mask;
      if (counted) count_visible<T, BM>(a, b, i0, cnt);
      for (int r = t; r < BM; r += kNT) {
        T fg;
        row_factors(a, row_n(a, i0 + r, counted ? cnt[r] : 0), rfac[r], fg);
      }
    }
    __syncthreads();
    T m[RK], l[RK];
    Acc<T, BM, D, kPath> acc;
    double q2[RK], fr = 0;  // q2: running sum of squared unnormalised softmax weights
#pragma unroll
    for (int k = 0; k < RK; ++k) m[k] = -inf, l[k] = 0, q2[k] = 0;
    for (int64_t j0 = 0; j0 < kmax; j0 += BN) {
      load_tile<T, BN, D, LY>(ys, a.k.at(b, h), a.k.sr, j0, a.S, a.d);
      const int64_t j = j0 + c;
      const bool key_ok = j < a.S && key_visible(a, b, j);
      __syncthreads();
      T s[RK];
      dots<T, kPath, RK, G, BM, BN, LX, LY, LP, 1>(qs, ys, g, c, a.d, ps, s);
#pragma unroll
      for (int k = 0; k < RK; ++k) {
        const int r = g + k * G;
        const bool vis = entry_visible(a, key_ok, i0 + r, j);
        const T sc = s[k] * a.scale;
        T p;
        if (softmax) {
          T mt = group_max<BN>(vis ? sc : -inf);
          T mn = m[k] > mt ? m[k] : mt;
          T alpha = mn == -inf ? T(1) : dev_exp(m[k] - mn);
          p = vis && mn != -inf ? dev_exp(sc - mn) : T(0);
          l[k] = l[k] * alpha + group_sum<BN>(p);
          if (a.sq) {
            double al = alpha;
            q2[k] = q2[k] * al * al + group_sum<BN>(static_cast<double>(p) * p);
          }
          m[k] = mn;
          if (c == 0) rrow[r] = alpha;
        } else {
          T unused;
          p = T(0);
          if (vis) weight_grad(a, sc, T(0), rfac[r], T(0), p, unused);
          fr += static_cast<double>(p) * p;
        }
        ps[r * LP + c] = p;
      }
      __syncthreads();
      load_tile<T, BN, D, LY>(ys, a.v.at(b, h), a.v.sr, j0, a.S, a.e);
      __syncthreads();
      if (softmax) acc.scale_rows(rrow);
      acc.template accumulate<BN, LP, false, LY>(ps, ys);
      __syncthreads();
    }
    if (softmax) {
#pragma unroll
      for (int k = 0; k < RK; ++k) {
        const int r = g + k * G;
        const int64_t i = i0 + r;
        if (c != 0) continue;
        rrow[r] = l[k];
        // l == 0 exactly when nothing in the row is visible: zero weights, lse = +inf.
        if (a.lse && i < a.Tq) a.lse[bh * a.Tq + i] = l[k] > 0 ? m[k] + dev_log(l[k]) : inf;
        if (l[k] > 0) fr += q2[k] / (static_cast<double>(l[k]) * l[k]);
      }
      __syncthreads();
    } else if (a.lse) {  // the CPU twin writes 0 for the other activations
      for (int r = t; r < BM; r += kNT)
        if (i0 + r < a.Tq) a.lse[bh * a.Tq + i0 + r] = T(0);
    }
    T* op = a.g.at(b, h);
    acc.store(i0, a.Tq, a.e, [&](int r, int64_t i, int col, T o) {
      op[i * a.g.sr + col] = !softmax ? o : rrow[r] > 0 ? o / rrow[r] : T(0);
    });
    add_square_sum(a.sq, bh, fr);
    __syncthreads();  // shared memory is reused by the next (b, h)
  }
}

}  // namespace

void CudaBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_mask, const AttentionParams& p, Tensor& out,
                                    Tensor& lse, Tensor& frob_sq) {
  DeviceGuard guard(q.device().index);
  with_config(q, v, "attention", [&](auto tag, auto dim) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value;
    Args<T> a = make_args<T>(q, k, v, key_mask, p);
    a.g = operand<T>(out);
    if (lse.defined()) a.lse = static_cast<T*>(lse.raw_data());
    if (frob_sq.defined()) a.sq = static_cast<double*>(frob_sq.raw_data());
    if (a.Tq > 0 && a.BH > 0) {
      with_path<T>(p.bf16, [&](auto path) {
        forward_kernel<T, D, decltype(path)::value>
            <<<grid_for(ceil_div(a.Tq, Tiles<T, D>::fwd_m), a.BH), kNT, 0, stream()>>>(a);
        PG_CUDA_LAUNCH_CHECK();
      });
    }
  });
}

}  // namespace pg::cuda
