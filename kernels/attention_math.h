// The attention activations' math, written once: the composite path (through autograd ops on
// tensors), the CPU kernel and the CUDA kernel all call these rules. Each caller passes its own
// element operations (`Math`: exp, sigmoid, relu, ipow): vectorisable forms on the CPU, CUDA's
// own on the device, differentiable ops on tensors.
//
// Adding an activation: a name in AttnActivation and kActivationNames, its row factors, its
// weight and score gradient, and a line in with_static_activation. The spec parser, both
// kernels and the tests (which iterate over kBuiltinActivations) pick it up from here.
#pragma once
#include <cmath>
#include <type_traits>

#if defined(__CUDACC__)
#define PG_ATTN_INLINE __host__ __device__ __forceinline__
#else
// Forced: the CPU kernel's row loops vectorise only when the rule is inlined into them.
#define PG_ATTN_INLINE [[gnu::always_inline]] inline
#endif

namespace pg {

/// Attention activations (docs/design.md's policy table). Every one but Custom has fused
/// kernels; Custom runs only through autograd ops.
enum class AttnActivation { Softmax, Poly, Relu, Relu2, Sigmoid, Custom };

namespace attn {

/// The built-in activations, in the order of the policy table.
inline constexpr AttnActivation kBuiltinActivations[] = {
    AttnActivation::Softmax, AttnActivation::Poly, AttnActivation::Relu, AttnActivation::Relu2,
    AttnActivation::Sigmoid};

/// Spec names, indexed by AttnActivation.
inline constexpr const char* kActivationNames[] = {"softmax", "poly",    "relu",
                                                   "relu2",   "sigmoid", "custom"};

/// The spec name of an activation.
constexpr const char* activation_name(AttnActivation a) {
  return kActivationNames[static_cast<int>(a)];
}

/// Per-row constants from N (the row's key count): `fa` enters the weights, `fg` their
/// derivative. Softmax has none: its row values are the log-sum-exp and D_i = sum_j A_ij dP_ij,
/// which only the kernels' row passes know.
template <typename N>
struct RowFactors {
  N fa{}, fg{};
};

/// The operations row factors need, on numbers.
struct NumberMath {
  PG_ATTN_INLINE static double pow(double x, double e) { return ::pow(x, e); }
  PG_ATTN_INLINE static double log(double x) { return ::log(x); }
  PG_ATTN_INLINE static double inv(double x) { return 1.0 / x; }
};

/// The row factors of `act` for rows with N = n keys (a number, or a tensor of them with
/// `Math` of tensors): poly N^n_exponent and p N^n_exponent, relu 1/N, relu2 1/N and 2/N,
/// sigmoid log N.
template <typename Math = NumberMath, typename N>
PG_ATTN_INLINE RowFactors<N> row_factors(AttnActivation act, int power, double n_exponent, N n) {
  switch (act) {
    case AttnActivation::Poly: {
      N f = Math::pow(n, n_exponent);
      return {f, power * f};
    }
    case AttnActivation::Relu: {
      N f = Math::inv(n);
      return {f, f};
    }
    case AttnActivation::Relu2: {
      N f = Math::inv(n);
      return {f, 2.0 * f};
    }
    case AttnActivation::Sigmoid:
      return {Math::log(n), N{}};
    default:
      return {};
  }
}

/// x^k by repeated multiplication, in one order everywhere (x * x * ... * x); x^0 = 1. A
/// compile-time k (std::integral_constant) unrolls, so the CPU's row loops vectorise.
template <typename T, typename K>
PG_ATTN_INLINE T ipow(T x, K k) {
  if (static_cast<int>(k) <= 0) return T(1);
  T r = x;
  for (int i = 1; i < static_cast<int>(k); ++i) r = r * x;
  return r;
}

/// k - 1, staying a compile-time constant when k is one.
template <typename K>
PG_ATTN_INLINE constexpr auto one_less(K k) {
  if constexpr (std::is_integral_v<K>)
    return k - 1;
  else
    return std::integral_constant<int, K::value - 1>{};
}

/// The element operations of the rules on float and double, given the backend's exp.
template <typename Exp>
struct ScalarMath {
  template <typename T>
  PG_ATTN_INLINE static T exp(T x) {
    return Exp::exp(x);
  }
  template <typename T>
  PG_ATTN_INLINE static T sigmoid(T x) {
    return T(1) / (T(1) + Exp::exp(-x));
  }
  template <typename T>
  PG_ATTN_INLINE static T relu(T x) {
    return x < T(0) ? T(0) : x;
  }
  template <typename T, typename K>
  PG_ATTN_INLINE static T ipow(T x, K k) {
    return attn::ipow(x, k);
  }
};

/// The weight of a visible entry from its score s. `ra` is the row's value: the log-sum-exp
/// for softmax, else RowFactors::fa. `act` and `power` may be runtime values or
/// std::integral_constant (see with_static_activation).
template <typename Math, typename Act, typename Pow, typename T, typename R>
PG_ATTN_INLINE T weight(Act act, Pow power, const T& s, const R& ra) {
  switch (static_cast<AttnActivation>(act)) {
    case AttnActivation::Softmax:
      return Math::exp(s - ra);
    case AttnActivation::Poly:
      return ra * (Math::ipow(s, one_less(power)) * s);
    case AttnActivation::Relu:
      return ra * Math::relu(s);
    case AttnActivation::Relu2: {
      T r = Math::relu(s);
      return ra * (r * r);
    }
    case AttnActivation::Sigmoid:
      return Math::sigmoid(s - ra);
    default:
      return s;  // Custom: never reaches a kernel
  }
}

/// dL/ds of a visible entry from dp = dL/dA, its score s and weight w. `rb` is the row's
/// value: D_i = sum_j A_ij dP_ij for softmax, else RowFactors::fg.
template <typename Math, typename Act, typename Pow, typename T>
PG_ATTN_INLINE T score_grad(Act act, Pow power, T s, T w, T dp, T rb) {
  switch (static_cast<AttnActivation>(act)) {
    case AttnActivation::Softmax:
      return w * (dp - rb);
    case AttnActivation::Poly:
      return rb * dp * Math::ipow(s, one_less(power));
    case AttnActivation::Relu:
      return s > T(0) ? rb * dp : T(0);
    case AttnActivation::Relu2:
      return s > T(0) ? rb * dp * s : T(0);
    case AttnActivation::Sigmoid:
      return dp * w * (T(1) - w);
    default:
      return T(0);
  }
}

/// Calls f(act, power) with both as std::integral_constant, so that a loop over weight() or
/// score_grad() compiles to straight-line code per activation (poly: per power 1..8).
template <typename F>
inline void with_static_activation(AttnActivation act, int power, F&& f) {
  using A = AttnActivation;
  auto with = [&](auto a) { f(a, std::integral_constant<int, 1>{}); };
  auto pow_case = [&](auto p) { f(std::integral_constant<A, A::Poly>{}, p); };
  switch (act) {
    case A::Softmax:
      return with(std::integral_constant<A, A::Softmax>{});
    case A::Relu:
      return with(std::integral_constant<A, A::Relu>{});
    case A::Relu2:
      return with(std::integral_constant<A, A::Relu2>{});
    case A::Sigmoid:
      return with(std::integral_constant<A, A::Sigmoid>{});
    case A::Poly:
      switch (power) {
        case 1:
          return pow_case(std::integral_constant<int, 1>{});
        case 2:
          return pow_case(std::integral_constant<int, 2>{});
        case 3:
          return pow_case(std::integral_constant<int, 3>{});
        case 4:
          return pow_case(std::integral_constant<int, 4>{});
        case 5:
          return pow_case(std::integral_constant<int, 5>{});
        case 6:
          return pow_case(std::integral_constant<int, 6>{});
        case 7:
          return pow_case(std::integral_constant<int, 7>{});
        default:
          return pow_case(std::integral_constant<int, 8>{});
      }
    default:
      return;
  }
}

}  // namespace attn
}  // namespace pg
