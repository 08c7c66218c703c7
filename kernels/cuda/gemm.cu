// Matrix products through cuBLAS (column-major): C = A B is computed as C^T = B^T A^T, so
// row-major operands need no copies and transposed views become cuBLAS transpose flags.
#include <limits>

#include "core/bfloat16.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/matmul_precision.h"

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

__global__ void to_bf16_kernel(StridedIter<1> it, int64_t n, const float* x, BFloat16* out) {
  PG_KERNEL_LOOP(i, n) out[i] = BFloat16(x[it.offsets(i)[0]]);
}

// A batch of bfloat16 matrices [B, R, C] as cuBLAS reads it.
struct Bf16Operand {
  Tensor data;
  cublasOperation_t op;
  int64_t ld;
  long long batch_stride;
};

// A bf16 tensor is read where it lies (a transposed view becomes a flag: the backward's saved
// operands need no copy); an f32 one is rounded into a contiguous bf16 copy like the CPU's
// RoundBf16. A broadcast batch (stride 0) stays one matrix either way.
Bf16Operand bf16_operand(const Tensor& x) {
  if (x.dtype() == DType::BF16) {
    auto [m, o] = blas_matrix(x);
    return {m, cublas_op(o), o.ld, static_cast<long long>(m.strides()[0])};
  }
  bool shared = x.size(0) > 1 && x.strides()[0] == 0;
  Tensor src = shared ? x.narrow(0, 0, 1) : x;
  int64_t n = src.numel(), rows = x.size(1), cols = x.size(2);
  Bf16Operand m{empty(src.shape(), {DType::BF16, x.device()}), CUBLAS_OP_N,
                std::max<int64_t>(cols, 1), shared ? 0 : static_cast<long long>(rows * cols)};
  if (n == 0) return m;
  auto it = make_iter<1>(src.shape(), {&src.strides()});
  to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(it, n, dptr<float>(src),
                                                           dptr<BFloat16>(m.data));
  PG_CUDA_LAUNCH_CHECK();
  return m;
}

}  // namespace

void CudaBackend::matmul(const Tensor& a_in, const Tensor& b_in, Tensor& out, bool accumulate) {
  DeviceGuard guard(out.device().index);
  int64_t batch = a_in.size(0), m = a_in.size(1), k = a_in.size(2), n = b_in.size(2);
  if (k == 0) {  // an empty sum: cuBLAS may leave C untouched
    if (!accumulate) fill(out, 0.0);
    return;
  }
  int N = as_int(n, "size"), M = as_int(m, "size"), K = as_int(k, "size");
  int B = as_int(batch, "batch");
  long long sc = m * n;
  cublasHandle_t h = cublas();
  if (out.dtype() == DType::F32 && matmul_precision() == MatmulPrecision::BF16) {
    // Tensor cores on bfloat16 operands, f32 accumulation and output.
    Bf16Operand a = bf16_operand(a_in), b = bf16_operand(b_in);
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    PG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, b.op, a.op, N, M, K, &one, b.data.raw_data(), CUDA_R_16BF,
        as_int(b.ld, "leading dimension"), b.batch_stride, a.data.raw_data(), CUDA_R_16BF,
        as_int(a.ld, "leading dimension"), a.batch_stride, &beta, dptr<float>(out), CUDA_R_32F, N,
        sc, B, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  auto [a, oa] = blas_matrix(a_in);
  auto [b, ob] = blas_matrix(b_in);
  // C^T (n x m) = op(B^T) (n x k) * op(A^T) (k x m); batch strides may be 0 (broadcast).
  int lda = as_int(oa.ld, "leading dimension"), ldb = as_int(ob.ld, "leading dimension");
  long long sa = a.strides()[0], sb = b.strides()[0];
  dispatch_floating(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>) {
      const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
      cublasComputeType_t compute =
          allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      PG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          h, cublas_op(ob), cublas_op(oa), N, M, K, &one, dptr<float>(b), CUDA_R_32F, ldb, sb,
          dptr<float>(a), CUDA_R_32F, lda, sa, &beta, dptr<float>(out), CUDA_R_32F, N, sc, B,
          compute, CUBLAS_GEMM_DEFAULT));
    } else {
      const double one = 1.0, beta = accumulate ? 1.0 : 0.0;
      PG_CUBLAS_CHECK(cublasDgemmStridedBatched(h, cublas_op(ob), cublas_op(oa), N, M, K, &one,
                                                dptr<double>(b), ldb, sb, dptr<double>(a), lda, sa,
                                                &beta, dptr<double>(out), N, sc, B));
    }
  });
}

}  // namespace pg::cuda
