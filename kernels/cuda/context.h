// The CUDA runtime as polygrad uses it: checked calls, one stream and one cuBLAS handle per
// device, and the device guard every backend entry point takes. Host code; safe in .cpp and .cu.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace pg::cuda {

/// Throws pg::Error naming the failed CUDA call and the runtime's own explanation.
[[noreturn]] void throw_cuda_error(const char* call, cudaError_t err, const char* file, int line);
/// Throws pg::Error naming the failed cuBLAS call and its status.
[[noreturn]] void throw_cublas_error(const char* call, cublasStatus_t st, const char* file,
                                     int line);

/// The stream polygrad's kernels run on for the current device (created on first use).
cudaStream_t stream();
/// The cuBLAS handle of the current device, bound to stream().
cublasHandle_t cublas();
/// Whether cuBLAS may use TF32 tensor cores for f32 GEMMs (off by default, and in tests).
bool allow_tf32();
/// Adds one to cuda::kernel_launches(); PG_CUDA_LAUNCH_CHECK calls it after every launch.
void count_launch();

/// Makes `index` the current device for its lifetime and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

/// Threads per block for one-dimensional launches.
constexpr int kThreads = 256;
/// Blocks for `n` elements at kThreads per block, capped so grid-stride loops cover the rest.
inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

}  // namespace pg::cuda

/// Runs a CUDA runtime call; a failure becomes a pg::Error naming the call.
#define PG_CUDA_CHECK(call)                                                                       \
  do {                                                                                            \
    cudaError_t pg_err_ = (call);                                                                 \
    if (pg_err_ != cudaSuccess) ::pg::cuda::throw_cuda_error(#call, pg_err_, __FILE__, __LINE__); \
  } while (0)

/// Runs a cuBLAS call; a failure becomes a pg::Error naming the call.
#define PG_CUBLAS_CHECK(call)                                            \
  do {                                                                   \
    cublasStatus_t pg_st_ = (call);                                      \
    if (pg_st_ != CUBLAS_STATUS_SUCCESS)                                 \
      ::pg::cuda::throw_cublas_error(#call, pg_st_, __FILE__, __LINE__); \
  } while (0)

/// Checks the launch that just happened (bad configuration, missing kernel image) and counts it
/// (cuda::kernel_launches()).
#define PG_CUDA_LAUNCH_CHECK()         \
  do {                                 \
    ::pg::cuda::count_launch();        \
    PG_CUDA_CHECK(cudaGetLastError()); \
  } while (0)
