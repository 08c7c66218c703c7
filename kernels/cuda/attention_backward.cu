// Fused attention backward on the GPU: a query-major kernel writes dq (after a first pass for
// the softmax row term D_i = sum_j A_ij dP_ij), then a key-major kernel accumulates dk and dv;
// no atomics on the gradients, so results are deterministic.
#include <cuda_runtime.h>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/cuda/attention_tiles.cuh"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_backend.h"

namespace pg::cuda {

namespace {

using namespace fused_attention;

// Query-major backward: dq = scale * dS K for one query tile, plus aux (D_i or N) for the
// key-major kernel and the visible sum of dP^2.
template <typename T, int D, int kPath>
__global__ void __launch_bounds__(kNT) backward_dq_kernel(Args<T> a) {
  constexpr int BM = Tiles<T, D>::dq_m, BN = Tiles<T, D>::dq_n;
  constexpr int G = kNT / BN, RK = BM / G;
  constexpr int LX = kLX<D, kPath>, LY = kLY<T, D, kPath>, LP = BN + kVec<T>;
  alignas(16) __shared__ T qs[BM * LX], gs[BM * LX], ys[BN * LY], ps[BM * LP];
  __shared__ T ra[BM], rb[BM];
  __shared__ int cnt[BM];
  const int t = threadIdx.x, c = t % BN, g = t / BN;
  const bool softmax = a.p.act == AttnActivation::Softmax;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t kmax = a.p.causal ? lmin(a.S, i0 + BM) : a.S;
  for (int64_t bh = blockIdx.y; bh < a.BH; bh += gridDim.y) {
    const int64_t b = bh / a.H, h = bh % a.H;
    const T *kp = a.k.at(b, h), *vp = a.v.at(b, h);
    load_tile<T, BM, D, LX>(qs, a.q.at(b, h), a.q.sr, i0, a.Tq, a.d);
    load_tile<T, BM, D, LX>(gs, a.g.at(b, h), a.g.sr, i0, a.Tq, a.e);
    if (softmax) {
      for (int r = t; r < BM; r += kNT)
        ra[r] = i0 + r < a.Tq ? a.lse[bh * a.Tq + i0 + r] : infinity<T>();
    } else {
      const bool counted = a.p.n_visible && a.mask;
      if (counted) count_visible<T, BM>(a, b, i0, cnt);
      for (int r = t; r < BM; r += kNT) {
        double n = row_n(a, i0 + r, counted ? cnt[r] : 0);
        row_factors(a, n, ra[r], rb[r]);
        if (i0 + r < a.Tq) a.aux[bh * a.Tq + i0 + r] = static_cast<T>(n);
      }
    }
    __syncthreads();
    // Scores and dP = dO V^T of one key tile, into s and dp (V first, then K stays in ys).
    auto scores = [&](int64_t j0, T(&s)[RK], T(&dp)[RK]) {
      load_tile<T, BN, D, LY>(ys, vp, a.v.sr, j0, a.S, a.e);
      __syncthreads();
      dots<T, kPath, RK, G, BM, BN, LX, LY, LP>(gs, ys, g, c, a.e, ps, dp);
      __syncthreads();
      load_tile<T, BN, D, LY>(ys, kp, a.k.sr, j0, a.S, a.d);
      __syncthreads();
      dots<T, kPath, RK, G, BM, BN, LX, LY, LP>(qs, ys, g, c, a.d, ps, s);
#pragma unroll
      for (int k = 0; k < RK; ++k) s[k] *= a.scale;
    };
    if (softmax) {
      // D_i = sum_j A_ij dP_ij over the whole row, needed before any dS.
      T dsum[RK] = {};
      for (int64_t j0 = 0; j0 < kmax; j0 += BN) {
        T s[RK], dp[RK];
        scores(j0, s, dp);
        const int64_t j = j0 + c;
        const bool key_ok = j < a.S && key_visible(a, b, j);
#pragma unroll
        for (int k = 0; k < RK; ++k) {
          const int r = g + k * G;
          if (entry_visible(a, key_ok, i0 + r, j)) dsum[k] += dev_exp(s[k] - ra[r]) * dp[k];
        }
        __syncthreads();
      }
#pragma unroll
      for (int k = 0; k < RK; ++k) {
        const int r = g + k * G;
        T dd = group_sum<BN>(dsum[k]);
        if (c == 0) {
          rb[r] = dd;
          if (i0 + r < a.Tq) a.aux[bh * a.Tq + i0 + r] = dd;
        }
      }
      __syncthreads();
    }
    Acc<T, BM, D, kPath> acc;
    double gf = 0;
    for (int64_t j0 = 0; j0 < kmax; j0 += BN) {
      T s[RK], dp[RK];
      scores(j0, s, dp);
      const int64_t j = j0 + c;
      const bool key_ok = j < a.S && key_visible(a, b, j);
#pragma unroll
      for (int k = 0; k < RK; ++k) {
        const int r = g + k * G;
        T w, ds = T(0);
        if (entry_visible(a, key_ok, i0 + r, j)) {
          weight_grad(a, s[k], dp[k], ra[r], rb[r], w, ds);
          gf += static_cast<double>(dp[k]) * dp[k];
        }
        ps[r * LP + c] = ds;
      }
      __syncthreads();
      acc.template accumulate<BN, LP, false, LY>(ps, ys);  // ys holds K
      __syncthreads();
    }
    T* dqp = a.dq.at(b, h);
    acc.store(i0, a.Tq, a.d,
              [&](int, int64_t i, int col, T x) { dqp[i * a.dq.sr + col] = a.scale * x; });
    add_square_sum(a.sq, bh, gf);
    __syncthreads();
  }
}

// Key-major backward: one block per (key tile, b*h) streams the query tiles and accumulates
// dv += A^T dO and dk += scale * dS^T Q in registers; the row terms come from aux.
template <typename T, int D, int kPath>
__global__ void __launch_bounds__(kNT) backward_dkv_kernel(Args<T> a) {
  constexpr int BM = Tiles<T, D>::kv_m, BN = Tiles<T, D>::kv_n;
  constexpr int G = kNT / BN, RK = BM / G;
  constexpr int LX = kLX<D, kPath>, LY = kLY<T, D, kPath>, LP = BN + kVec<T>;
  alignas(16) __shared__ T ks[BN * LY], vs[BN * LY], xs[BM * LX], ps[BM * LP];
  __shared__ T ra[BM], rb[BM];
  const int t = threadIdx.x, c = t % BN, g = t / BN;
  const bool softmax = a.p.act == AttnActivation::Softmax;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * BN, j = j0 + c;
  // Under causality rows before j0 see none of these keys.
  const int64_t first = a.p.causal ? j0 / BM * BM : 0;
  for (int64_t bh = blockIdx.y; bh < a.BH; bh += gridDim.y) {
    const int64_t b = bh / a.H, h = bh % a.H;
    const T *qp = a.q.at(b, h), *gp = a.g.at(b, h);
    load_tile<T, BN, D, LY>(ks, a.k.at(b, h), a.k.sr, j0, a.S, a.d);
    load_tile<T, BN, D, LY>(vs, a.v.at(b, h), a.v.sr, j0, a.S, a.e);
    const bool key_ok = j < a.S && key_visible(a, b, j);
    Acc<T, BN, D, kPath> acc_k, acc_v;
    for (int64_t i0 = first; i0 < a.Tq; i0 += BM) {
      load_tile<T, BM, D, LX>(xs, qp, a.q.sr, i0, a.Tq, a.d);
      for (int r = t; r < BM; r += kNT) {
        const int64_t i = i0 + r;
        T x = i < a.Tq ? a.aux[bh * a.Tq + i] : T(0);
        if (softmax) {
          ra[r] = i < a.Tq ? a.lse[bh * a.Tq + i] : infinity<T>();
          rb[r] = x;
        } else {
          row_factors(a, static_cast<double>(x), ra[r], rb[r]);
        }
      }
      __syncthreads();
      T s[RK], dp[RK], ds[RK];
      dots<T, kPath, RK, G, BM, BN, LX, LY, LP>(xs, ks, g, c, a.d, ps, s);
      __syncthreads();
      load_tile<T, BM, D, LX>(xs, gp, a.g.sr, i0, a.Tq, a.e);
      __syncthreads();
      dots<T, kPath, RK, G, BM, BN, LX, LY, LP>(xs, vs, g, c, a.e, ps, dp);
#pragma unroll
      for (int k = 0; k < RK; ++k) {
        const int r = g + k * G;
        T w = T(0);
        ds[k] = T(0);
        if (entry_visible(a, key_ok, i0 + r, j))
          weight_grad(a, s[k] * a.scale, dp[k], ra[r], rb[r], w, ds[k]);
        ps[r * LP + c] = w;
      }
      __syncthreads();
      acc_v.template accumulate<BM, LP, true, LX>(ps, xs);  // xs holds dO
      __syncthreads();
#pragma unroll
      for (int k = 0; k < RK; ++k) ps[(g + k * G) * LP + c] = ds[k];
      load_tile<T, BM, D, LX>(xs, qp, a.q.sr, i0, a.Tq, a.d);
      __syncthreads();
      acc_k.template accumulate<BM, LP, true, LX>(ps, xs);
      __syncthreads();
    }
    T *dkp = a.dk.at(b, h), *dvp = a.dv.at(b, h);
    acc_k.store(j0, a.S, a.d,
                [&](int, int64_t jr, int col, T x) { dkp[jr * a.dk.sr + col] += a.scale * x; });
    acc_v.store(j0, a.S, a.e, [&](int, int64_t jr, int col, T x) { dvp[jr * a.dv.sr + col] += x; });
    __syncthreads();
  }
}
}  // namespace

void CudaBackend::attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                     const Tensor& v, const Tensor& key_mask, const Tensor& lse,
                                     const AttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv,
                                     Tensor& grad_frob_sq) {
  DeviceGuard guard(q.device().index);
  with_config(q, v, "attention_backward", [&](auto tag, auto dim) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value;
    Args<T> a = make_args<T>(q, k, v, key_mask, p);
    a.g = operand<T>(dout);
    a.dq = operand<T>(dq);
    a.dk = operand<T>(dk);
    a.dv = operand<T>(dv);
    if (p.act == AttnActivation::Softmax) {
      PG_CHECK(lse.defined(), "attention_backward", "softmax needs the forward's lse");
      a.lse = static_cast<T*>(lse.raw_data());
    }
    if (grad_frob_sq.defined()) a.sq = static_cast<double*>(grad_frob_sq.raw_data());
    if (a.Tq > 0 && a.BH > 0) {
      Tensor aux = empty({a.BH * a.Tq}, {q.dtype(), q.device()});
      a.aux = static_cast<T*>(aux.raw_data());
      with_path<T>(p.bf16, [&](auto path) {
        constexpr int kPath = decltype(path)::value;
        backward_dq_kernel<T, D, kPath>
            <<<grid_for(ceil_div(a.Tq, Tiles<T, D>::dq_m), a.BH), kNT, 0, stream()>>>(a);
        PG_CUDA_LAUNCH_CHECK();
        if (a.S > 0) {
          backward_dkv_kernel<T, D, kPath>
              <<<grid_for(ceil_div(a.S, Tiles<T, D>::kv_n), a.BH), kNT, 0, stream()>>>(a);
          PG_CUDA_LAUNCH_CHECK();
        }
      });
    }
  });
}

}  // namespace pg::cuda
