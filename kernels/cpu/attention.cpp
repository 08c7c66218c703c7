// Fused attention on the CPU: one (batch, head) per thread, tiled over blocks of queries so
// only a [block, keys] slice of the score matrix exists at a time. Matrix products go to
// OpenBLAS (single-threaded inside the parallel region); activations run on the tile.
#include <cblas.h>

#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"

namespace pg::cpu {

namespace {

constexpr int64_t kQueryBlock = 64;

template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  auto A = ta ? CblasTrans : CblasNoTrans, B = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, A, B, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, A, B, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
T ipow(T x, int p) {
  T r = 1;
  for (int i = 0; i < p; ++i) r *= x;
  return r;
}

// A [B,H,R,C] operand seen one (b, h) matrix at a time.
template <typename T>
struct Operand {
  T* base;
  int64_t sb, sh, ld;
  Operand(const Tensor& t)
      : base(static_cast<T*>(t.raw_data())),
        sb(t.strides()[0]),
        sh(t.strides()[1]),
        ld(std::max(t.strides()[2], t.size(3))) {}
  T* at(int64_t b, int64_t h) const { return base + b * sb + h * sh; }
};

// Everything a row of the score tile needs to turn scores into weights and back.
template <typename T>
struct RowRule {
  const AttentionParams& p;
  int64_t keys;          // S
  const int64_t* kmask;  // [S] of this batch row, or null

  bool visible(int64_t i, int64_t j) const {
    return (!p.causal || j <= i) && (!kmask || kmask[j] != 0);
  }
  int64_t count_visible(int64_t i, int64_t kmax) const {
    int64_t n = 0;
    for (int64_t j = 0; j < kmax; ++j) n += visible(i, j);
    return n;
  }
  // N of the policy table for row i.
  double n_of(int64_t i, int64_t kmax) const {
    return p.n_visible ? static_cast<double>(std::max<int64_t>(count_visible(i, kmax), 1))
                       : static_cast<double>(keys);
  }

  // Weights a[j] from scores s[j] for row i; returns the row's log-sum-exp (softmax).
  T weights(int64_t i, int64_t kmax, const T* s, T* a) const {
    const T inf = std::numeric_limits<T>::infinity();
    switch (p.act) {
      case AttnActivation::Softmax: {
        T mx = -inf;
        for (int64_t j = 0; j < kmax; ++j)
          if (visible(i, j)) mx = std::max(mx, s[j]);
        if (mx == -inf) {  // nothing visible: all weights zero
          for (int64_t j = 0; j < kmax; ++j) a[j] = 0;
          return inf;
        }
        // One exp per entry: unnormalised weights first, then a single scale.
        T sum = 0;
        for (int64_t j = 0; j < kmax; ++j) sum += (a[j] = visible(i, j) ? vexp(s[j] - mx) : T(0));
        T inv = T(1) / sum;
        for (int64_t j = 0; j < kmax; ++j) a[j] *= inv;
        return mx + std::log(sum);
      }
      case AttnActivation::Poly: {
        T f = static_cast<T>(std::pow(n_of(i, kmax), p.n_exponent));
        for (int64_t j = 0; j < kmax; ++j) a[j] = visible(i, j) ? ipow(s[j], p.power) * f : T(0);
        return 0;
      }
      case AttnActivation::Relu: {
        T inv = static_cast<T>(1.0 / n_of(i, kmax));
        for (int64_t j = 0; j < kmax; ++j)
          a[j] = visible(i, j) && s[j] > 0 ? s[j] * inv : T(0);
        return 0;
      }
      case AttnActivation::Sigmoid: {
        T shift = static_cast<T>(std::log(n_of(i, kmax)));
        for (int64_t j = 0; j < kmax; ++j)
          a[j] = visible(i, j) ? vsigmoid(s[j] - shift) : T(0);
        return 0;
      }
    }
    return 0;
  }

  // Turns dA (in place) into dS = dL/dscores for row i, given scores s and weights a.
  void scores_grad(int64_t i, int64_t kmax, const T* s, const T* a, T* da) const {
    switch (p.act) {
      case AttnActivation::Softmax: {
        T dot = 0;
        for (int64_t j = 0; j < kmax; ++j) dot += a[j] * da[j];
        for (int64_t j = 0; j < kmax; ++j) da[j] = a[j] * (da[j] - dot);
        return;
      }
      case AttnActivation::Poly: {
        T f = static_cast<T>(p.power * std::pow(n_of(i, kmax), p.n_exponent));
        for (int64_t j = 0; j < kmax; ++j)
          da[j] = visible(i, j) ? da[j] * f * ipow(s[j], p.power - 1) : T(0);
        return;
      }
      case AttnActivation::Relu: {
        T inv = static_cast<T>(1.0 / n_of(i, kmax));
        for (int64_t j = 0; j < kmax; ++j) da[j] = visible(i, j) && s[j] > 0 ? da[j] * inv : T(0);
        return;
      }
      case AttnActivation::Sigmoid:
        for (int64_t j = 0; j < kmax; ++j)
          da[j] = visible(i, j) ? da[j] * a[j] * (T(1) - a[j]) : T(0);
        return;
    }
  }
};

// Scratch tiles for every thread, from the caching allocator so repeated calls touch no
// new pages.
template <typename T>
Tensor scratch(int threads, int64_t per_thread) {
  return empty({threads, per_thread}, {dtype_of<T>()});
}

template <typename T>
void forward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                   const AttentionParams& p, Tensor& out, Tensor& lse, double* frob_sq) {
  int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), d = q.size(3);
  int64_t S = k.size(2), e = v.size(3);
  Operand<T> Q(q), K(k), V(v), O(out);
  const int64_t* km = key_mask.defined() ? key_mask.data<int64_t>() : nullptr;
  T* lp = lse.defined() ? lse.data<T>() : nullptr;
  int threads = omp_get_max_threads();
  int64_t tile = kQueryBlock * S;
  Tensor buf = scratch<T>(threads, 2 * tile);
#pragma omp parallel for schedule(dynamic) if (B * H > 1)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    int64_t b = bh / H, h = bh % H;
    T* sbuf = buf.data<T>() + omp_get_thread_num() * 2 * tile;
    T* abuf = sbuf + tile;
    RowRule<T> rule{p, S, km ? km + b * S : nullptr};
    const T *qp = Q.at(b, h), *kp = K.at(b, h), *vp = V.at(b, h);
    T* op = O.at(b, h);
    double fs = 0;
    for (int64_t i0 = 0; i0 < Tq; i0 += kQueryBlock) {
      int64_t rows = std::min(kQueryBlock, Tq - i0);
      int64_t kmax = p.causal ? std::min(S, i0 + rows) : S;
      if (kmax == 0) {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < e; ++c) op[(i0 + r) * O.ld + c] = 0;
        continue;
      }
      gemm<T>(false, true, rows, kmax, d, static_cast<T>(p.scale), qp + i0 * Q.ld, Q.ld, kp, K.ld,
              0, sbuf, kmax);
      for (int64_t r = 0; r < rows; ++r) {
        T* a = abuf + r * kmax;
        T l = rule.weights(i0 + r, kmax, sbuf + r * kmax, a);
        if (lp) lp[bh * Tq + i0 + r] = l;
        for (int64_t j = 0; j < kmax; ++j) fs += static_cast<double>(a[j]) * a[j];
      }
      gemm<T>(false, false, rows, e, kmax, 1, abuf, kmax, vp, V.ld, 0, op + i0 * O.ld, O.ld);
    }
    if (frob_sq) frob_sq[bh] = fs;
  }
}

template <typename T>
void backward_typed(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& key_mask, const Tensor& lse, const AttentionParams& p,
                    Tensor& dq, Tensor& dk, Tensor& dv, double* grad_frob_sq) {
  int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), d = q.size(3);
  int64_t S = k.size(2), e = v.size(3);
  Operand<T> Q(q), K(k), V(v), dO(dout), dQ(dq), dK(dk), dV(dv);
  const int64_t* km = key_mask.defined() ? key_mask.data<int64_t>() : nullptr;
  const T* lp = lse.defined() ? lse.data<T>() : nullptr;
  int threads = omp_get_max_threads();
  int64_t tile = kQueryBlock * S;
  Tensor buf = scratch<T>(threads, 3 * tile);
  T scale = static_cast<T>(p.scale);
#pragma omp parallel for schedule(dynamic) if (B * H > 1)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    int64_t b = bh / H, h = bh % H;
    T* sbuf = buf.data<T>() + omp_get_thread_num() * 3 * tile;
    T* abuf = sbuf + tile;
    T* dabuf = abuf + tile;
    RowRule<T> rule{p, S, km ? km + b * S : nullptr};
    const T *qp = Q.at(b, h), *kp = K.at(b, h), *vp = V.at(b, h), *gp = dO.at(b, h);
    T *dqp = dQ.at(b, h), *dkp = dK.at(b, h), *dvp = dV.at(b, h);
    double gs = 0;
    for (int64_t i0 = 0; i0 < Tq; i0 += kQueryBlock) {
      int64_t rows = std::min(kQueryBlock, Tq - i0);
      int64_t kmax = p.causal ? std::min(S, i0 + rows) : S;
      if (kmax == 0) {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < d; ++c) dqp[(i0 + r) * dQ.ld + c] = 0;
        continue;
      }
      gemm<T>(false, true, rows, kmax, d, scale, qp + i0 * Q.ld, Q.ld, kp, K.ld, 0, sbuf, kmax);
      for (int64_t r = 0; r < rows; ++r) {
        const T* s = sbuf + r * kmax;
        T* a = abuf + r * kmax;
        if (p.act == AttnActivation::Softmax) {
          // Weights from the saved log-sum-exp: exact and cheaper than recomputing the max.
          T l = lp[bh * Tq + i0 + r];
          for (int64_t j = 0; j < kmax; ++j)
            a[j] = rule.visible(i0 + r, j) ? vexp(s[j] - l) : T(0);
        } else {
          rule.weights(i0 + r, kmax, s, a);
        }
      }
      gemm<T>(false, true, rows, kmax, e, 1, gp + i0 * dO.ld, dO.ld, vp, V.ld, 0, dabuf, kmax);
      gemm<T>(true, false, kmax, e, rows, 1, abuf, kmax, gp + i0 * dO.ld, dO.ld, 1, dvp, dV.ld);
      for (int64_t r = 0; r < rows; ++r) {
        T* da = dabuf + r * kmax;
        if (grad_frob_sq)
          for (int64_t j = 0; j < kmax; ++j)
            if (rule.visible(i0 + r, j)) gs += static_cast<double>(da[j]) * da[j];
        rule.scores_grad(i0 + r, kmax, sbuf + r * kmax, abuf + r * kmax, da);
      }
      gemm<T>(false, false, rows, d, kmax, scale, dabuf, kmax, kp, K.ld, 0, dqp + i0 * dQ.ld,
              dQ.ld);
      gemm<T>(true, false, kmax, d, rows, scale, dabuf, kmax, qp + i0 * Q.ld, Q.ld, 1, dkp, dK.ld);
    }
    if (grad_frob_sq) grad_frob_sq[bh] = gs;
  }
}

}  // namespace

void CpuBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& key_mask, const AttentionParams& p, Tensor& out,
                                   Tensor& lse, double* frob_sq) {
  dispatch_floating(q.dtype(), "attention", [&](auto tag) {
    forward_typed<decltype(tag)>(q, k, v, key_mask, p, out, lse, frob_sq);
  });
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& key_mask, const Tensor& lse,
                                    const AttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv,
                                    double* grad_frob_sq) {
  dispatch_floating(q.dtype(), "attention_backward", [&](auto tag) {
    backward_typed<decltype(tag)>(dout, q, k, v, key_mask, lse, p, dq, dk, dv, grad_frob_sq);
  });
}

}  // namespace pg::cpu
