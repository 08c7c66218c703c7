// Matrix products: every one goes to OpenBLAS; transposed views become BLAS flags.
#include <cblas.h>

#include <optional>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/ops.h"

namespace pg::cpu {

namespace {

struct BlasOperand {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
};

std::optional<BlasOperand> blas_operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  auto m = matrix_operand(rows, cols, rs, cs);
  if (!m) return std::nullopt;
  return BlasOperand{m->transposed ? CblasTrans : CblasNoTrans, m->ld};
}

template <typename T>
void gemm_one(const BlasOperand& a, const BlasOperand& b, int64_t m, int64_t n, int64_t k,
              const T* ap, const T* bp, T* cp) {
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, a.trans, b.trans, m, n, k, 1.0f, ap, a.ld, bp, b.ld, 0.0f, cp, n);
  else
    cblas_dgemm(CblasRowMajor, a.trans, b.trans, m, n, k, 1.0, ap, a.ld, bp, b.ld, 0.0, cp, n);
}

}  // namespace

void CpuBackend::matmul(const Tensor& a_in, const Tensor& b_in, Tensor& out) {
  int64_t batch = a_in.size(0), m = a_in.size(1), k = a_in.size(2), n = b_in.size(2);
  auto oa = blas_operand(m, k, a_in.strides()[1], a_in.strides()[2]);
  auto ob = blas_operand(k, n, b_in.strides()[1], b_in.strides()[2]);
  // Operands BLAS cannot read in place (e.g. sliced with a step) are copied once.
  Tensor a = oa ? a_in : kernels::clone(a_in);
  Tensor b = ob ? b_in : kernels::clone(b_in);
  if (!oa) oa = blas_operand(m, k, a.strides()[1], a.strides()[2]);
  if (!ob) ob = blas_operand(k, n, b.strides()[1], b.strides()[2]);
  int64_t sa = a.strides()[0], sb = b.strides()[0];
  dispatch_floating(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    const T* ap = static_cast<const T*>(a.raw_data());
    const T* bp = static_cast<const T*>(b.raw_data());
    T* cp = static_cast<T*>(out.raw_data());
    // Many small products: one per thread, BLAS single-threaded inside the parallel region.
    bool per_thread = batch > 1 && m * n * k < 128 * 128 * 128;
#pragma omp parallel for schedule(static) if (per_thread)
    for (int64_t i = 0; i < batch; ++i)
      gemm_one<T>(*oa, *ob, m, n, k, ap + i * sa, bp + i * sb, cp + i * m * n);
  });
}

}  // namespace pg::cpu
