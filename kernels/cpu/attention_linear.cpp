// Polynomial attention in time linear in the sequence length, on the CPU: one (batch, head) per
// thread, a running D x e state (D = the symmetric power's features), rows in chunks of
// kLinearChunk. Causal: inside a chunk the exact masked polynomial (a chunk x chunk tile), across
// chunks the state. No [T, S] matrix and no per-position state is ever stored; the backward
// recomputes the states in two scans (forward for dq, reverse for dk and dv) instead of keeping
// T / chunk of them.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention_math.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/head_matrices.h"
#include "kernels/cpu/loops.h"
#include "kernels/symmetric_power.h"

namespace pg::cpu {

namespace {

// The rules' element operations; poly needs only ipow.
struct StdExp {
  template <typename T>
  static T exp(T x) {
    return std::exp(x);
  }
};
using Math = attn::ScalarMath<StdExp>;

// The policy's r_i for query row i (its absolute position): N^e, N the key count or
// (n=visible, causal) i + 1.
template <typename T>
T row_factor(const AttentionParams& p, int64_t keys, int64_t i) {
  const double n = p.n_visible && p.causal ? static_cast<double>(i + 1) : static_cast<double>(keys);
  return static_cast<T>(
      attn::row_factors(AttnActivation::Poly, p.power, p.n_exponent, std::max(n, 1.0)).fa);
}

// What one thread works in for one (batch, head).
template <typename T>
struct Workspace {
  T *state, *grad_state, *feat, *dfeat, *qs, *gs, *x, *dx, *dqs;
  static int64_t size(int64_t D, int64_t d, int64_t e, int64_t C, bool backward) {
    return backward ? 2 * D * e + 2 * C * D + 2 * C * d + C * e + 2 * C * C
                    : D * e + C * D + C * d + C * C;
  }
  Workspace(T* at, int64_t D, int64_t d, int64_t e, int64_t C, bool backward) {
    state = at;
    at += D * e;
    grad_state = backward ? at : nullptr;
    at += backward ? D * e : 0;
    feat = at;
    at += C * D;
    dfeat = backward ? at : nullptr;
    at += backward ? C * D : 0;
    qs = at;
    at += C * d;
    dqs = backward ? at : nullptr;
    at += backward ? C * d : 0;
    gs = backward ? at : nullptr;
    at += backward ? C * e : 0;
    x = at;
    at += C * C;
    dx = backward ? at : nullptr;
  }
};

// The features of rows [0, c) of `rows` (leading dimension ld) into out [c, D].
template <typename T>
void features(const SymmetricPower& phi, const T* rows, int64_t ld, int64_t c, bool keys, T* out) {
  for (int64_t r = 0; r < c; ++r) phi.features(rows + r * ld, keys, out + r * phi.features());
}

// qs [c, d] = scale * q rows [i0, i0 + c).
template <typename T>
void scaled_rows(const T* q, int64_t ld, int64_t i0, int64_t c, int64_t d, T scale, T* qs) {
  for (int64_t r = 0; r < c; ++r)
    for (int64_t a = 0; a < d; ++a) qs[r * d + a] = scale * q[(i0 + r) * ld + a];
}

// state [D, e] += phi_k(keys [j0, j0 + c))^T v rows.
template <typename T>
void add_keys(const SymmetricPower& phi, const Operand<T>& K, const Operand<T>& V, int64_t b,
              int64_t h, int64_t j0, int64_t c, int64_t e, T* feat, T* state) {
  const int64_t D = phi.features();
  features(phi, K.at(b, h) + j0 * K.ld, K.ld, c, true, feat);
  gemm<T>(true, false, D, e, c, 1, feat, D, V.at(b, h) + j0 * V.ld, V.ld, 1, state, e);
}

// The state the first chunk of queries starts from: nothing when causal, else every key (each
// query sees all of them).
template <typename T>
void initial_state(const SymmetricPower& phi, const Operand<T>& K, const Operand<T>& V, int64_t b,
                   int64_t h, int64_t S, int64_t e, bool causal, T* feat, T* state) {
  std::fill(state, state + phi.features() * e, T(0));
  if (causal) return;
  for (int64_t j0 = 0; j0 < S; j0 += kLinearChunk)
    add_keys(phi, K, V, b, h, j0, std::min(kLinearChunk, S - j0), e, feat, state);
}

template <typename T>
void forward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                   Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), d = q.size(3);
  const int64_t S = k.size(2), e = v.size(3), C = kLinearChunk;
  const SymmetricPower phi(d, p.power);
  const int64_t D = phi.features();
  Operand<T> Q(q), K(k), V(v), O(out);
  const int64_t per = Workspace<T>::size(D, d, e, C, false);
  Tensor buf = scratch<T>(omp_get_max_threads(), per);
  const T scale = static_cast<T>(p.scale);
#pragma omp parallel for schedule(dynamic) if (B * H > 1)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    Workspace<T> w(buf.data<T>() + omp_get_thread_num() * per, D, d, e, C, false);
    const T *qp = Q.at(b, h), *kp = K.at(b, h), *vp = V.at(b, h);
    initial_state(phi, K, V, b, h, S, e, p.causal, w.feat, w.state);
    for (int64_t i0 = 0; i0 < Tq; i0 += C) {
      const int64_t c = std::min(C, Tq - i0);
      T* oc = O.at(b, h) + i0 * O.ld;
      scaled_rows(qp, Q.ld, i0, c, d, scale, w.qs);
      T beta = 0;
      if (p.causal) {
        // The chunk's own keys: the masked polynomial, exactly.
        gemm<T>(false, true, c, c, d, 1, w.qs, d, kp + i0 * K.ld, K.ld, 0, w.x, c);
        for (int64_t r = 0; r < c; ++r)
          for (int64_t j = 0; j < c; ++j)
            w.x[r * c + j] =
                j <= r ? attn::weight<Math>(AttnActivation::Poly, p.power, w.x[r * c + j], T(1))
                       : T(0);
        gemm<T>(false, false, c, e, c, 1, w.x, c, vp + i0 * V.ld, V.ld, 0, oc, O.ld);
        beta = 1;
      }
      features(phi, w.qs, d, c, false, w.feat);
      gemm<T>(false, false, c, e, D, 1, w.feat, D, w.state, e, beta, oc, O.ld);
      for (int64_t r = 0; r < c; ++r) {
        const T f = row_factor<T>(p, S, i0 + r);
        for (int64_t a = 0; a < e; ++a) oc[r * O.ld + a] *= f;
      }
      if (p.causal) add_keys(phi, K, V, b, h, i0, c, e, w.feat, w.state);
    }
  }
}

template <typename T>
void backward_typed(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                    const AttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), d = q.size(3);
  const int64_t S = k.size(2), e = v.size(3), C = kLinearChunk;
  const SymmetricPower phi(d, p.power);
  const int64_t D = phi.features();
  Operand<T> Q(q), K(k), V(v), dO(dout), dQ(dq), dK(dk), dV(dv);
  const int64_t per = Workspace<T>::size(D, d, e, C, true);
  Tensor buf = scratch<T>(omp_get_max_threads(), per);
  const T scale = static_cast<T>(p.scale);
#pragma omp parallel for schedule(dynamic) if (B * H > 1)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    Workspace<T> w(buf.data<T>() + omp_get_thread_num() * per, D, d, e, C, true);
    const T *qp = Q.at(b, h), *kp = K.at(b, h), *vp = V.at(b, h), *gp = dO.at(b, h);
    T *dqp = dQ.at(b, h), *dkp = dK.at(b, h), *dvp = dV.at(b, h);
    // gs [c, e] = r_i * dout rows: the gradient of the unscaled rows.
    auto scaled_grads = [&](int64_t i0, int64_t c) {
      for (int64_t r = 0; r < c; ++r) {
        const T f = row_factor<T>(p, S, i0 + r);
        for (int64_t a = 0; a < e; ++a) w.gs[r * e + a] = f * gp[(i0 + r) * dO.ld + a];
      }
    };

    // Forward scan: dq through the state of the keys before each chunk (all keys if not causal).
    initial_state(phi, K, V, b, h, S, e, p.causal, w.feat, w.state);
    for (int64_t i0 = 0; i0 < Tq; i0 += C) {
      const int64_t c = std::min(C, Tq - i0);
      scaled_rows(qp, Q.ld, i0, c, d, scale, w.qs);
      scaled_grads(i0, c);
      gemm<T>(false, true, c, D, e, 1, w.gs, e, w.state, e, 0, w.dfeat, D);
      std::fill(w.dqs, w.dqs + c * d, T(0));
      for (int64_t r = 0; r < c; ++r)
        phi.backward(w.qs + r * d, w.dfeat + r * D, false, w.dqs + r * d);
      for (int64_t r = 0; r < c; ++r)
        for (int64_t a = 0; a < d; ++a) dqp[(i0 + r) * dQ.ld + a] = scale * w.dqs[r * d + a];
      if (p.causal) add_keys(phi, K, V, b, h, i0, c, e, w.feat, w.state);
    }

    // Reverse scan: dk and dv through the state of the queries after each chunk (all queries if
    // not causal), and the chunk's own masked polynomial.
    T* G = w.grad_state;
    std::fill(G, G + D * e, T(0));
    auto add_queries = [&](int64_t i0, int64_t c) {  // G += phi_q(q~ rows)^T gs
      scaled_rows(qp, Q.ld, i0, c, d, scale, w.qs);
      scaled_grads(i0, c);
      features(phi, w.qs, d, c, false, w.feat);
      gemm<T>(true, false, D, e, c, 1, w.feat, D, w.gs, e, 1, G, e);
    };
    if (!p.causal)
      for (int64_t i0 = 0; i0 < Tq; i0 += C) add_queries(i0, std::min(C, Tq - i0));
    const int64_t last = S == 0 ? 0 : (S - 1) / C * C;
    for (int64_t j0 = last; j0 >= 0 && S > 0; j0 -= C) {
      const int64_t c = std::min(C, S - j0);
      const T *kc = kp + j0 * K.ld, *vc = vp + j0 * V.ld;
      T *dkc = dkp + j0 * dK.ld, *dvc = dvp + j0 * dV.ld;
      features(phi, kc, K.ld, c, true, w.feat);
      gemm<T>(false, false, c, e, D, 1, w.feat, D, G, e, 1, dvc, dV.ld);
      gemm<T>(false, true, c, D, e, 1, vc, V.ld, G, e, 0, w.dfeat, D);
      for (int64_t r = 0; r < c; ++r)
        phi.backward(kc + r * K.ld, w.dfeat + r * D, true, dkc + r * dK.ld);
      if (!p.causal) continue;
      scaled_rows(qp, Q.ld, j0, c, d, scale, w.qs);
      scaled_grads(j0, c);
      gemm<T>(false, true, c, c, d, 1, w.qs, d, kc, K.ld, 0, w.x, c);   // scores
      gemm<T>(false, true, c, c, e, 1, w.gs, e, vc, V.ld, 0, w.dx, c);  // dL/dA (rows scaled)
      for (int64_t r = 0; r < c; ++r)
        for (int64_t j = 0; j < c; ++j) {
          const T s = w.x[r * c + j], dp = w.dx[r * c + j];
          const T a = attn::weight<Math>(AttnActivation::Poly, p.power, s, T(1));
          const T ds = attn::score_grad<Math>(AttnActivation::Poly, p.power, s, a, dp, T(p.power));
          w.x[r * c + j] = j <= r ? a : T(0);
          w.dx[r * c + j] = j <= r ? ds : T(0);
        }
      gemm<T>(true, false, c, e, c, 1, w.x, c, w.gs, e, 1, dvc, dV.ld);
      gemm<T>(false, false, c, d, c, scale, w.dx, c, kc, K.ld, 1, dqp + j0 * dQ.ld, dQ.ld);
      gemm<T>(true, false, c, d, c, 1, w.dx, c, w.qs, d, 1, dkc, dK.ld);
      add_queries(j0, c);
    }
  }
}

template <typename T>
void recurrent_typed(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                     int64_t first_position, int64_t keys, Tensor& state, Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), t = q.size(2), d = q.size(3), e = v.size(3);
  const SymmetricPower phi(d, p.power);
  const int64_t D = phi.features();
  Operand<T> Q(q), K(k), V(v), O(out);
  const int64_t per = D + d;
  Tensor buf = scratch<T>(omp_get_max_threads(), per);
  const T scale = static_cast<T>(p.scale);
#pragma omp parallel for schedule(dynamic) if (B * H > 1)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    T* feat = buf.data<T>() + omp_get_thread_num() * per;
    T* qs = feat + D;
    T* S = state.data<T>() + bh * D * e;
    for (int64_t i = 0; i < t; ++i) {
      const T* vi = V.at(b, h) + i * V.ld;
      phi.features(K.at(b, h) + i * K.ld, true, feat);
      for (int64_t a = 0; a < D; ++a)
        for (int64_t c = 0; c < e; ++c) S[a * e + c] += feat[a] * vi[c];
      scaled_rows(Q.at(b, h), Q.ld, i, 1, d, scale, qs);
      phi.features(qs, false, feat);
      T* oi = O.at(b, h) + i * O.ld;
      gemm<T>(false, false, 1, e, D, 1, feat, D, S, e, 0, oi, e);
      const T f = row_factor<T>(p, keys, first_position + i);
      for (int64_t c = 0; c < e; ++c) oi[c] *= f;
    }
  }
}

}  // namespace

void CpuBackend::attention_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const AttentionParams& p, int64_t first_position, int64_t keys,
                                     Tensor& state, Tensor& out) {
  dispatch_floating(q.dtype(), "attention (recurrent)", [&](auto tag) {
    recurrent_typed<decltype(tag)>(q, k, v, p, first_position, keys, state, out);
  });
}

void CpuBackend::attention_linear_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                          const AttentionParams& p, Tensor& out) {
  dispatch_floating(q.dtype(), "attention (linear)",
                    [&](auto tag) { forward_typed<decltype(tag)>(q, k, v, p, out); });
}

void CpuBackend::attention_linear_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const AttentionParams& p, Tensor& dq,
                                           Tensor& dk, Tensor& dv) {
  dispatch_floating(q.dtype(), "attention (linear) backward",
                    [&](auto tag) { backward_typed<decltype(tag)>(dout, q, k, v, p, dq, dk, dv); });
}

}  // namespace pg::cpu
