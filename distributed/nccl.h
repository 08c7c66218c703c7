// The gradient all-reduce of CUDA tensors on NCCL, in builds that have it (PG_NCCL).
#pragma once
#include "core/tensor.h"
#include "distributed/dist.h"

namespace pg::dist {

/// All-reduces a contiguous CUDA tensor in place over NCCL (the communicator is made on first
/// use, its id sent by MPI from rank 0) and returns true; returns false in builds without NCCL,
/// where the caller stages the tensor through host memory instead. `op` is not Mean.
bool nccl_all_reduce(const Tensor& t, ReduceOp op);
/// Destroys the communicator, if one was made.
void nccl_finalize();

}  // namespace pg::dist
