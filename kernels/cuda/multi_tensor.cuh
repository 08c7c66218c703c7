// Launches over lists of tensors: one grid covers many tensors, each block one chunk of one of
// them, so an optimizer step over a model's parameters is a few launches instead of hundreds.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cuda/context.h"
#include "kernels/kernel_common.h"

namespace pg::cuda {

/// Elements one block of a multi-tensor kernel works on.
constexpr int64_t kBatchChunk = 8 * kThreads;

/// Blocks a multi-tensor kernel gives a tensor of n elements.
inline int64_t chunk_blocks(int64_t n) { return (n + kBatchChunk - 1) / kBatchChunk; }

/// The part of a batch one block works on: elements [begin, end) of tensor `tensor`.
struct Chunk {
  int tensor;
  int64_t begin, end;
};

/// Up to kMax tensors' per-tensor arguments (each with an element count `n`), passed to a kernel
/// by value; block b works on tensor i where first_block[i] <= b < first_block[i + 1].
template <typename Arg>
struct TensorBatch {
  static constexpr int kMax = 24;
  Arg arg[kMax];
  int64_t first_block[kMax + 1];
  int count = 0;

  /// The chunk of block `b` (empty tensors own no block and are never its tensor).
  __device__ Chunk chunk(int64_t b) const {
    int i = 0;
    while (first_block[i + 1] <= b) ++i;
    const int64_t begin = (b - first_block[i]) * kBatchChunk;
    return {i, begin, begin + kBatchChunk < arg[i].n ? begin + kBatchChunk : arg[i].n};
  }
};

/// Calls f(T{}, items) once per floating dtype among `count` items, with the indices of the
/// items of that dtype; dtype_of(k) names item k's dtype (bf16 and others are a pg::Error).
template <typename DTypeOf, typename F>
void for_each_floating_dtype(size_t count, DTypeOf dtype_of, const char* op, F&& f) {
  std::vector<size_t> f32, f64;
  for (size_t k = 0; k < count; ++k)
    dispatch_floating(dtype_of(k), op, [&](auto tag) {
      (std::is_same_v<decltype(tag), float> ? f32 : f64).push_back(k);
    });
  if (!f32.empty()) f(float{}, f32);
  if (!f64.empty()) f(double{}, f64);
}

/// Splits `args` into batches of at most TensorBatch::kMax tensors and calls
/// launch(batch, blocks, blocks_before) for each batch with at least one block; blocks_before
/// counts the blocks of the batches launched earlier. Returns the total block count.
template <typename Arg, typename Launch>
int64_t for_each_batch(const std::vector<Arg>& args, Launch&& launch) {
  static_assert(sizeof(TensorBatch<Arg>) <= 4000, "kernel arguments are limited to 4 KB");
  int64_t before = 0;
  for (size_t start = 0; start < args.size(); start += TensorBatch<Arg>::kMax) {
    TensorBatch<Arg> batch;
    int64_t blocks = 0;
    for (size_t k = start; k < args.size() && batch.count < TensorBatch<Arg>::kMax; ++k) {
      batch.arg[batch.count] = args[k];
      batch.first_block[batch.count] = blocks;
      blocks += chunk_blocks(args[k].n);
      ++batch.count;
    }
    batch.first_block[batch.count] = blocks;
    if (blocks == 0) continue;
    launch(batch, blocks, before);
    before += blocks;
  }
  return before;
}

}  // namespace pg::cuda
