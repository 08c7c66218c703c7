#include "distributed/nccl.h"

#ifdef PG_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "kernels/factory.h"
#endif

namespace pg::dist {

#ifdef PG_WITH_NCCL
namespace {

struct Nccl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // NCCL's own stream: the collective overlaps other work
  int device = -1;
};

Nccl& nccl() {
  static Nccl n;
  return n;
}

void check_nccl(ncclResult_t r, const char* call) {
  PG_CHECK(r == ncclSuccess, "dist", call, " failed on rank ", rank(), ": ", ncclGetErrorString(r));
}

void check_cuda(cudaError_t e, const char* call) {
  PG_CHECK(e == cudaSuccess, "dist", call, " failed on rank ", rank(), ": ", cudaGetErrorString(e));
}

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
    case DType::BF16:
      return ncclBfloat16;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max:
      return ncclMax;
    case ReduceOp::Min:
      return ncclMin;
    default:
      return ncclSum;
  }
}

void init(int device) {
  Nccl& n = nccl();
  static_assert(sizeof(ncclUniqueId) % sizeof(int64_t) == 0);
  Tensor id = zeros({int64_t(sizeof(ncclUniqueId) / sizeof(int64_t))}, {DType::I64});
  if (rank() == 0)
    check_nccl(ncclGetUniqueId(static_cast<ncclUniqueId*>(id.raw_data())), "ncclGetUniqueId");
  broadcast({id}, 0);
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  ncclUniqueId uid;
  std::memcpy(&uid, id.raw_data(), sizeof(uid));
  check_nccl(ncclCommInitRank(&n.comm, world_size(), uid, rank()), "ncclCommInitRank");
  check_cuda(cudaStreamCreateWithFlags(&n.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  n.device = device;
}

}  // namespace

bool nccl_all_reduce(const Tensor& t, ReduceOp op) {
  Nccl& n = nccl();
  if (!n.comm) init(t.device().index);
  PG_CHECK(t.device().index == n.device, "all_reduce",
           "this rank's NCCL communicator is on cuda:", n.device, ", the tensor on ",
           t.device().str());
  // polygrad's kernels wrote the tensor on their own stream.
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  check_nccl(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                           nccl_type(t.dtype()), nccl_op(op), n.comm, n.stream),
             "ncclAllReduce");
  // NCCL reports a dead peer asynchronously: poll for it instead of blocking forever.
  while (true) {
    cudaError_t q = cudaStreamQuery(n.stream);
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) check_cuda(q, "cudaStreamQuery");
    ncclResult_t async = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(n.comm, &async), "ncclCommGetAsyncError");
    if (async != ncclSuccess) {
      ncclCommAbort(n.comm);
      n.comm = nullptr;
      check_nccl(async, "ncclAllReduce (asynchronous error)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

void nccl_finalize() {
  Nccl& n = nccl();
  if (n.comm) ncclCommDestroy(n.comm);
  if (n.stream) cudaStreamDestroy(n.stream);
  n = Nccl{};
}

#else

bool nccl_all_reduce(const Tensor&, ReduceOp) { return false; }
void nccl_finalize() {}

#endif

}  // namespace pg::dist
