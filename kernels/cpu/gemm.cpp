// Matrix products: every one goes to OpenBLAS; transposed views become BLAS flags.
#include <cblas.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/matmul_precision.h"
#include "kernels/ops.h"

namespace pg::cpu {

namespace {

template <typename T>
void gemm_one(const MatrixOperand& a, const MatrixOperand& b, int64_t m, int64_t n, int64_t k,
              const T* ap, const T* bp, T* cp, bool accumulate) {
  auto ta = a.transposed ? CblasTrans : CblasNoTrans, tb = b.transposed ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, ap, a.ld, bp, b.ld, accumulate ? 1.0f : 0.0f,
                cp, n);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, ap, a.ld, bp, b.ld, accumulate ? 1.0 : 0.0, cp,
                n);
}

// f applied to a batch of matrices [B, R, C]; a broadcast batch (stride 0) is done once.
template <typename F>
Tensor per_batch(const Tensor& x, F f) {
  if (x.size(0) > 1 && x.strides()[0] == 0) return f(x.narrow(0, 0, 1)).expand(x.shape());
  return f(x);
}

}  // namespace

void CpuBackend::matmul(const Tensor& a_in, const Tensor& b_in, Tensor& out, bool accumulate) {
  int64_t batch = a_in.size(0), m = a_in.size(1), k = a_in.size(2), n = b_in.size(2);
  // Debian's OpenBLAS has no sbgemm: bfloat16 products of rounded operands are exact in f32,
  // so sgemm on them computes what a bf16 GEMM with f32 accumulation does (no faster here).
  // bf16 tensors are widened, exactly; f32 ones are rounded to bf16 values in bf16 precision.
  bool bf16 = out.dtype() == DType::F32 && matmul_precision() == MatmulPrecision::BF16;
  auto operand = [&](const Tensor& x) -> Tensor {
    if (x.dtype() == DType::BF16)
      return per_batch(x, [](const Tensor& m) { return kernels::convert(m, DType::F32); });
    if (bf16)
      return per_batch(x, [](const Tensor& m) { return kernels::unary(UnaryOp::RoundBf16, m); });
    return x;
  };
  // Named copies, not structured bindings: clang 14 cannot capture those in the lambda.
  const BlasMatrix am = blas_matrix(operand(a_in)), bm = blas_matrix(operand(b_in));
  const Tensor &a = am.t, &b = bm.t;
  const MatrixOperand oa = am.op, ob = bm.op;
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
      gemm_one<T>(oa, ob, m, n, k, ap + i * sa, bp + i * sb, cp + i * m * n, accumulate);
  });
}

}  // namespace pg::cpu
