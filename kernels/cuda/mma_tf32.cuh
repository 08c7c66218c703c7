// Tensor-core tile products. In f32: at about f32 accuracy from TF32 parts ("3xTF32", as
// CUTLASS's FastF32 and PyTorch's f32 attention kernels): each operand x = big + small with both
// parts TF32 (10-bit mantissas), and a*b is summed as small_a*big_b + big_a*small_b +
// big_a*big_b; the dropped small*small term is about 2^-22 of the product. Under bf16
// precision: one bf16 mma from operands already rounded to bf16.
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

/// d += A B for one 16x8x8 tile on bf16 tensor cores, f32 accumulation: a and b hold f32 bit
/// patterns of values already rounded to bf16, in mma_3xtf32's fragment layout. mma.m16n8k8.bf16
/// gives lane l A rows l/4 and l/4 + 8 at columns 2 (l%4) and 2 (l%4) + 1 (one register per row,
/// lower half first) and B rows 2 (l%4) and 2 (l%4) + 1 at column l/4: packing columns t and
/// t + 4 of our layout into those two slots permutes k the same way in A and B, which leaves
/// every dot product unchanged.
__device__ inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  // A rounded f32 is its bf16 in the upper half and zeros below.
  auto pack = [](uint32_t lo, uint32_t hi) { return (hi & 0xffff0000u) | (lo >> 16); };
  const uint32_t a0 = pack(a[0], a[2]), a1 = pack(a[1], a[3]), b0 = pack(b[0], b[1]);
#ifdef PG_CUDA_EMULATED
  pg_emu::mma_bf16(d, a0, a1, b0);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(b0));
#endif
}

}  // namespace pg::cuda
