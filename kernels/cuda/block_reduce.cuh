// Sums across a thread block (blockDim.x a multiple of 32, at most 1024).
#pragma once
#include <cuda_runtime.h>

namespace pg::cuda {

/// Sum of v over the block; every thread gets the result. Uses 32 words of shared memory.
template <typename A>
__device__ A block_sum(A v) {
  __shared__ A partial[32];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) / 32;
  A total = 0;
  for (int w = 0; w < warps; ++w) total += partial[w];
  return total;
}

/// Maximum of v over the block; every thread gets the result.
template <typename A>
__device__ A block_max(A v) {
  __shared__ A partial[32];
  for (int o = 16; o > 0; o /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) / 32;
  A total = partial[0];
  for (int w = 1; w < warps; ++w) total = max(total, partial[w]);
  return total;
}

}  // namespace pg::cuda
