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
    const int p = power_;
    for (int64_t a = 0; a < features(); ++a) {
      const int32_t* idx = &index_[static_cast<size_t>(a) * p];
      T prod = x[idx[0]];
      for (int k = 1; k < p; ++k) prod *= x[idx[k]];
      out[a] = keys ? prod * static_cast<T>(count_[static_cast<size_t>(a)]) : prod;
    }
  }

  /// dx += J^T g: the gradient with respect to x of sum_a g[a] * phi(x)[a].
  template <typename T>
  void backward(const T* x, const T* g, bool keys, T* dx) const {
    const int p = power_;
    T before[9], after[9];  // products of the factors before and after position k (p <= 8)
    for (int64_t a = 0; a < features(); ++a) {
      const int32_t* idx = &index_[static_cast<size_t>(a) * p];
      const T ga = keys ? g[a] * static_cast<T>(count_[static_cast<size_t>(a)]) : g[a];
      before[0] = T(1);
      for (int k = 0; k < p; ++k) before[k + 1] = before[k] * x[idx[k]];
      after[p] = T(1);
      for (int k = p - 1; k >= 0; --k) after[k] = after[k + 1] * x[idx[k]];
      for (int k = 0; k < p; ++k) dx[idx[k]] += ga * before[k] * after[k + 1];
    }
  }

 private:
  int64_t dim_;
  int power_;
  std::vector<int32_t> index_;  // features x power coordinates, each multiset ascending
  std::vector<double> count_;   // the multinomial count of each multiset
};

}  // namespace pg
