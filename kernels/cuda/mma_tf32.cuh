// Tensor-core products at about f32 accuracy from TF32 parts ("3xTF32", as CUTLASS's FastF32
// and PyTorch's f32 attention kernels): each operand x = big + small with both parts TF32
// (10-bit mantissas), and a*b is summed as small_a*big_b + big_a*small_b + big_a*big_b; the
// dropped small*small term is about 2^-22 of the product.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pg::cuda {

/// One f32 value as the sum of two TF32 values.
struct Tf32Split {
  uint32_t big, small;
};

/// x rounded to TF32 (cvt.rna: nearest, ties away from zero), as a register bit pattern.
__device__ inline uint32_t tf32_round(float x) {
#ifdef PG_CUDA_EMULATED
  return pg_emu::tf32_rna(x);
#else
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#endif
}

__device__ inline Tf32Split tf32_split(float x) {
  const uint32_t big = tf32_round(x);
  return {big, tf32_round(x - __uint_as_float(big))};
}

/// d += A B for one 16x8x8 tile: a holds this lane's A (16x8, row-major) fragment, b its B
/// (8x8, column-major) fragment, d its accumulator fragment, in the PTX ISA layout of
/// mma.m16n8k8 (lane l: A rows l/4, l/4 + 8 at columns l%4, l%4 + 4; B rows l%4, l%4 + 4 at
/// column l/4; D rows l/4, l/4 + 8 at columns 2 (l%4), 2 (l%4) + 1).
__device__ inline void mma_3xtf32(float (&d)[4], const Tf32Split (&a)[4], const Tf32Split (&b)[2]) {
  const uint32_t ab[4] = {a[0].big, a[1].big, a[2].big, a[3].big};
  const uint32_t as[4] = {a[0].small, a[1].small, a[2].small, a[3].small};
  const uint32_t bb[2] = {b[0].big, b[1].big}, bs[2] = {b[0].small, b[1].small};
#ifdef PG_CUDA_EMULATED
  pg_emu::mma_3xtf32(d, ab, as, bb, bs);
#else
  // The small terms first, so the large product is added to an already corrected sum.
  const uint32_t* A[3] = {as, ab, ab};
  const uint32_t* B[3] = {bb, bs, bb};
#pragma unroll
  for (int m = 0; m < 3; ++m)
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(A[m][0]), "r"(A[m][1]), "r"(A[m][2]), "r"(A[m][3]), "r"(B[m][0]), "r"(B[m][1]));
#endif
}

/// d += A B for one 16x8x8 tile in a single TF32 mma (layout as mma_3xtf32): exact for
/// operands already rounded to bf16 (8-bit significands, which TF32 holds), whose products
/// f32 then accumulates, as a bf16 mma would.
__device__ inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#ifdef PG_CUDA_EMULATED
  const uint32_t zero_a[4] = {}, zero_b[2] = {};
  pg_emu::mma_3xtf32(d, a, zero_a, b, zero_b);  // the small parts add exact zeros
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

}  // namespace pg::cuda
