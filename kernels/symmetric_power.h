// The feature map that makes polynomial attention linear in the sequence length:
// (q . k)^p = phi_q(q) . phi_k(k), phi the p-th symmetric tensor power. One feature per multiset
// a = {i_1 <= ... <= i_p} of coordinates: phi_q(x)_a = x_i1 ... x_ip, and phi_k(x)_a the same
// times the multinomial count p! / prod(multiplicities!) (the number of ordered tuples that
// multiset stands for), so no square roots enter. D = C(d + p - 1, p) features.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace pg {

/// The multisets of degree `power` over `dim` coordinates, in lexicographic order, with their
/// multinomial counts.
class SymmetricPower {
 public:
  SymmetricPower(int64_t dim, int power);
  int64_t dim() const { return dim_; }
  int power() const { return power_; }
  /// D, the number of features.
  int64_t features() const { return static_cast<int64_t>(count_.size()); }
  /// C(dim + power - 1, power) without building the map; -1 when it exceeds 2^62.
  static int64_t feature_count(int64_t dim, int power);

  /// out[a] = x^a (query side) or count(a) x^a (key side, `keys` true); out has D entries.
  template <typename T>
  void features(const T* x, bool keys, T* out) const {
    emit(x, power_, 0, T(1), out);
    if (keys)
      for (int64_t a = 0; a < features(); ++a)
        out[a] *= static_cast<T>(count_[static_cast<size_t>(a)]);
  }

  /// dx += J^T g: the gradient with respect to x of sum_a g[a] * phi(x)[a]. With `keys`, g is
  /// scaled by the counts in place first (it is the caller's scratch).
  template <typename T>
  void backward(const T* x, T* g, bool keys, T* dx) const {
    if (keys)
      for (int64_t a = 0; a < features(); ++a)
        g[a] *= static_cast<T>(count_[static_cast<size_t>(a)]);
    const T* next = g;
    emit_backward(x, power_, 0, T(1), next, dx);
  }

 private:
  // The multisets are enumerated as a tree: level l picks the next coordinate i >= start, and
  // the last level runs over a contiguous range of x, so that the inner loops vectorise.
  // Writes prefix * (the features of `level` more coordinates from `start` on); returns the end.
  template <typename T>
  T* emit(const T* x, int level, int64_t start, T prefix, T* out) const {
    if (level == 1) {
      for (int64_t j = start; j < dim_; ++j) out[j - start] = prefix * x[j];
      return out + (dim_ - start);
    }
    for (int64_t i = start; i < dim_; ++i) out = emit(x, level - 1, i, prefix * x[i], out);
    return out;
  }
  // The reverse of emit: consumes the gradients of the features it wrote (advancing g), adds
  // their share to dx, and returns the gradient of `prefix`.
  template <typename T>
  T emit_backward(const T* x, int level, int64_t start, T prefix, const T*& g, T* dx) const {
    T dprefix = 0;
    if (level == 1) {
      for (int64_t j = start; j < dim_; ++j) {
        dprefix += g[j - start] * x[j];
        dx[j] += g[j - start] * prefix;
      }
      g += dim_ - start;
      return dprefix;
    }
    for (int64_t i = start; i < dim_; ++i) {
      const T dchild = emit_backward(x, level - 1, i, prefix * x[i], g, dx);
      dprefix += dchild * x[i];
      dx[i] += dchild * prefix;
    }
    return dprefix;
  }

  int64_t dim_;
  int power_;
  std::vector<double> count_;  // the multinomial count of each multiset
};

}  // namespace pg
