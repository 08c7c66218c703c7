// Matrix products through cuBLAS (column-major): C = A B is computed as C^T = B^T A^T, so
// row-major operands need no copies and transposed views become cuBLAS transpose flags.
#include <limits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_backend.h"

namespace pg::cuda {

namespace {

// A row-major matrix X seen column-major is X^T: stored row-major means OP_N on that view.
cublasOperation_t cublas_op(const MatrixOperand& m) {
  return m.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
}

int as_int(int64_t v, const char* what) {
  PG_CHECK(v <= std::numeric_limits<int>::max(), "matmul", what, " ", v,
           " exceeds cuBLAS's 32-bit limit");
  return static_cast<int>(v);
}

}  // namespace

void CudaBackend::matmul(const Tensor& a_in, const Tensor& b_in, Tensor& out) {
  DeviceGuard guard(out.device().index);
  int64_t batch = a_in.size(0), m = a_in.size(1), k = a_in.size(2), n = b_in.size(2);
  if (k == 0) {  // an empty sum: cuBLAS may leave C untouched
    fill(out, 0.0);
    return;
  }
  auto [a, oa] = blas_matrix(a_in);
  auto [b, ob] = blas_matrix(b_in);
  // C^T (n x m) = op(B^T) (n x k) * op(A^T) (k x m); batch strides may be 0 (broadcast).
  int N = as_int(n, "size"), M = as_int(m, "size"), K = as_int(k, "size");
  int lda = as_int(oa.ld, "leading dimension"), ldb = as_int(ob.ld, "leading dimension");
  int B = as_int(batch, "batch");
  long long sa = a.strides()[0], sb = b.strides()[0], sc = m * n;
  cublasHandle_t h = cublas();
  dispatch_floating(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      const float one = 1.0f, zero = 0.0f;
      cublasComputeType_t compute =
          allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      PG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          h, cublas_op(ob), cublas_op(oa), N, M, K, &one, dptr<float>(b), CUDA_R_32F, ldb, sb,
          dptr<float>(a), CUDA_R_32F, lda, sa, &zero, dptr<float>(out), CUDA_R_32F, N, sc, B,
          compute, CUBLAS_GEMM_DEFAULT));
    } else {
      const double one = 1.0, zero = 0.0;
      PG_CUBLAS_CHECK(cublasDgemmStridedBatched(h, cublas_op(ob), cublas_op(oa), N, M, K, &one,
                                                dptr<double>(b), ldb, sb, dptr<double>(a), lda, sa,
                                                &zero, dptr<double>(out), N, sc, B));
    }
  });
}

}  // namespace pg::cuda
