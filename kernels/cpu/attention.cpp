// Fused attention on the CPU: one (batch, head) per thread, tiled over blocks of queries so
// only a [block, keys] slice of the score matrix exists at a time. Matrix products go to
// OpenBLAS (single-threaded inside the parallel region); activations run on the tile.
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/bfloat16.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/head_matrices.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"

namespace pg::cpu {

namespace {

constexpr int64_t kQueryBlock = 64;

// The activations' element operations (kernels/attention_math.h) with the vectorisable exp.
struct VecExp {
  template <typename T>
  static T exp(T x) {
    return vexp(x);
  }
};
using CpuMath = attn::ScalarMath<VecExp>;

// Everything a row of the score tile needs to turn scores into weights and back. Keys at or
// beyond limit(i) are hidden by causality; below it, `kvis` (0/1 per key, or null) hides
// padded keys. Hidden weights are exactly zero.
template <typename T>
struct RowRule {
  const AttentionParams& p;
  int64_t keys;   // S
  const T* kvis;  // [S] of this batch row, or null

  int64_t limit(int64_t i, int64_t kmax) const { return p.causal ? std::min(kmax, i + 1) : kmax; }
  T vis(int64_t j) const { return kvis ? kvis[j] : T(1); }
  // out[j] = f(j) where key j is visible, else 0 (a select, not a product: f may overflow on
  // hidden keys); separate loops so each one vectorises.
  template <typename F>
  void masked(int64_t lim, T* out, F&& f) const {
    if (kvis)
      for (int64_t j = 0; j < lim; ++j) out[j] = kvis[j] != 0 ? f(j) : T(0);
    else
      for (int64_t j = 0; j < lim; ++j) out[j] = f(j);
  }
  // N of the policy table for row i.
  double n_of(int64_t i, int64_t kmax) const {
    if (!p.n_visible) return static_cast<double>(keys);
    int64_t lim = limit(i, kmax);
    double n = 0;
    for (int64_t j = 0; j < lim; ++j) n += vis(j);
    return std::max(n, 1.0);
  }

  // Row factors of row i (every activation but softmax).
  attn::RowFactors<double> factors(int64_t i, int64_t kmax) const {
    return attn::row_factors(p.act, p.power, p.n_exponent, n_of(i, kmax));
  }

  // Weights a[j] from scores s[j] for row i; returns the row's log-sum-exp (softmax).
  T weights(int64_t i, int64_t kmax, const T* s, T* a) const {
    const T inf = std::numeric_limits<T>::infinity();
    int64_t lim = limit(i, kmax);
    for (int64_t j = lim; j < kmax; ++j) a[j] = 0;
    if (p.act == AttnActivation::Softmax) {
      T mx = kvis ? max_wide<T>(lim, [&](int64_t j) { return kvis[j] != 0 ? s[j] : -inf; })
                  : max_wide<T>(lim, [&](int64_t j) { return s[j]; });
      if (mx == -inf) {  // nothing visible: all weights zero
        for (int64_t j = 0; j < lim; ++j) a[j] = 0;
        return inf;
      }
      // One exp per entry: unnormalised weights first, then a single scale.
      masked(lim, a, [&](int64_t j) { return vexp(s[j] - mx); });
      T sum = static_cast<T>(sum_wide(lim, [&](int64_t j) { return a[j]; }));
      T inv = T(1) / sum;
      for (int64_t j = 0; j < lim; ++j) a[j] *= inv;
      return mx + std::log(sum);
    }
    T fa = static_cast<T>(factors(i, kmax).fa);
    attn::with_static_activation(p.act, p.power, [&](auto act, auto pw) {
      masked(lim, a, [&](int64_t j) { return attn::weight<CpuMath>(act, pw, s[j], fa); });
    });
    return 0;
  }

  // Softmax weights of row i from its saved log-sum-exp: exact and cheaper than recomputing
  // the max.
  void weights_from_lse(int64_t i, int64_t kmax, const T* s, T lse, T* a) const {
    int64_t lim = limit(i, kmax);
    using Softmax = std::integral_constant<AttnActivation, AttnActivation::Softmax>;
    masked(lim, a, [&](int64_t j) { return attn::weight<CpuMath>(Softmax{}, 1, s[j], lse); });
    for (int64_t j = lim; j < kmax; ++j) a[j] = 0;
  }

  // Turns dA (in place) into dS = dL/dscores for row i, given scores s and weights a.
  void scores_grad(int64_t i, int64_t kmax, const T* s, const T* a, T* da) const {
    int64_t lim = limit(i, kmax);
    for (int64_t j = lim; j < kmax; ++j) da[j] = 0;
    T rb = 0;
    if (p.act == AttnActivation::Softmax)
      for (int64_t j = 0; j < lim; ++j) rb += a[j] * da[j];  // D_i
    else
      rb = static_cast<T>(factors(i, kmax).fg);
    attn::with_static_activation(p.act, p.power, [&](auto act, auto pw) {
      masked(lim, da,
             [&](int64_t j) { return attn::score_grad<CpuMath>(act, pw, s[j], a[j], da[j], rb); });
    });
  }

  // sum over visible entries of da^2 (the gradient-norm diagnostic).
  double visible_sq(int64_t i, int64_t kmax, const T* da) const {
    int64_t lim = limit(i, kmax);
    double acc = 0;
    for (int64_t j = 0; j < lim; ++j) acc += static_cast<double>(vis(j) * da[j] * da[j]);
    return acc;
  }
};

// The key padding mask as 0/1 values of the compute type ([B, S]), or empty.
template <typename T>
std::vector<T> key_visibility(const Tensor& key_mask) {
  std::vector<T> v;
  if (!key_mask.defined()) return v;
  const int64_t* m = key_mask.data<int64_t>();
  v.resize(static_cast<size_t>(key_mask.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = m[i] != 0 ? T(1) : T(0);
  return v;
}

// Under bf16 precision the operands of every tile product are rounded to bf16 (f32 only; the
// products still accumulate in f32), in place in a scratch tile.
template <typename T>
void round_to_bf16_if(bool bf16, T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    if (bf16)
      for (int64_t i = 0; i < n; ++i) x[i] = round_to_bf16(x[i]);
}

template <typename T>
void forward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                   const AttentionParams& p, Tensor& out, Tensor& lse, double* frob_sq) {
  int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), d = q.size(3);
  int64_t S = k.size(2), e = v.size(3);
  Operand<T> Q(q), K(k), V(v), O(out);
  std::vector<T> kv = key_visibility<T>(key_mask);
  const T* km = kv.empty() ? nullptr : kv.data();
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
      round_to_bf16_if(p.bf16, abuf, rows * kmax);
      gemm<T>(false, false, rows, e, kmax, 1, abuf, kmax, vp, V.ld, 0, op + i0 * O.ld, O.ld);
    }
    if (frob_sq) frob_sq[bh] = fs;
  }
}

template <typename T>
void backward_typed(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& key_mask, const Tensor& lse, const AttentionParams& p, Tensor& dq,
                    Tensor& dk, Tensor& dv, double* grad_frob_sq) {
  int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), d = q.size(3);
  int64_t S = k.size(2), e = v.size(3);
  Operand<T> Q(q), K(k), V(v), dO(dout), dQ(dq), dK(dk), dV(dv);
  std::vector<T> kv = key_visibility<T>(key_mask);
  const T* km = kv.empty() ? nullptr : kv.data();
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
        if (p.act == AttnActivation::Softmax)
          rule.weights_from_lse(i0 + r, kmax, s, lp[bh * Tq + i0 + r], a);
        else
          rule.weights(i0 + r, kmax, s, a);
      }
      gemm<T>(false, true, rows, kmax, e, 1, gp + i0 * dO.ld, dO.ld, vp, V.ld, 0, dabuf, kmax);
      for (int64_t r = 0; r < rows; ++r) {
        T* da = dabuf + r * kmax;
        if (grad_frob_sq) gs += rule.visible_sq(i0 + r, kmax, da);
        rule.scores_grad(i0 + r, kmax, sbuf + r * kmax, abuf + r * kmax, da);
      }
      // A and dS enter products only now, after the rule has read them unrounded.
      round_to_bf16_if(p.bf16, abuf, rows * kmax);
      gemm<T>(true, false, kmax, e, rows, 1, abuf, kmax, gp + i0 * dO.ld, dO.ld, 1, dvp, dV.ld);
      round_to_bf16_if(p.bf16, dabuf, rows * kmax);
      gemm<T>(false, false, rows, d, kmax, scale, dabuf, kmax, kp, K.ld, 0, dqp + i0 * dQ.ld,
              dQ.ld);
      gemm<T>(true, false, kmax, d, rows, scale, dabuf, kmax, qp + i0 * Q.ld, Q.ld, 1, dkp, dK.ld);
    }
    if (grad_frob_sq) grad_frob_sq[bh] = gs;
  }
}

}  // namespace

namespace {

// x itself, or (bf16 precision, f32) a contiguous copy rounded to bf16.
Tensor bf16_operand(CpuBackend& cpu, const Tensor& x, const AttentionParams& p) {
  if (!p.bf16 || x.dtype() != DType::F32) return x;
  Tensor r = empty(x.shape(), {DType::F32});
  cpu.unary(UnaryOp::RoundBf16, x, r, 0);
  return r;
}

}  // namespace

void CpuBackend::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& key_mask, const AttentionParams& p, Tensor& out,
                                   Tensor& lse, Tensor& frob_sq) {
  dispatch_floating(q.dtype(), "attention", [&](auto tag) {
    forward_typed<decltype(tag)>(bf16_operand(*this, q, p), bf16_operand(*this, k, p),
                                 bf16_operand(*this, v, p), key_mask, p, out, lse,
                                 frob_sq.defined() ? frob_sq.data<double>() : nullptr);
  });
}

void CpuBackend::attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& key_mask, const Tensor& lse,
                                    const AttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv,
                                    Tensor& grad_frob_sq) {
  dispatch_floating(q.dtype(), "attention_backward", [&](auto tag) {
    backward_typed<decltype(tag)>(bf16_operand(*this, dout, p), bf16_operand(*this, q, p),
                                  bf16_operand(*this, k, p), bf16_operand(*this, v, p), key_mask,
                                  lse, p, dq, dk, dv,
                                  grad_frob_sq.defined() ? grad_frob_sq.data<double>() : nullptr);
  });
}

}  // namespace pg::cpu
