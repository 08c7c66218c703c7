// What the CPU attention kernels share: a [B,H,R,C] operand seen one (batch, head) matrix at a
// time, row-major GEMM on OpenBLAS, and per-thread scratch.
#pragma once
#include <cblas.h>

#include <algorithm>
#include <type_traits>

#include "core/tensor.h"

namespace pg::cpu {

template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  auto A = ta ? CblasTrans : CblasNoTrans, B = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, A, B, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, A, B, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// A [B,H,R,C] operand (unit last stride) seen one (b, h) matrix at a time.
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

/// Scratch for every thread, from the caching allocator so repeated calls touch no new pages.
template <typename T>
Tensor scratch(int threads, int64_t per_thread) {
  return empty({threads, per_thread}, {dtype_of<T>()});
}

}  // namespace pg::cpu
