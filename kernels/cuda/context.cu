// Start-up of the CUDA runtime: device discovery, the stream and cuBLAS handle, error messages,
// and registration of the CUDA allocator and backend with the core.
#include <atomic>
#include <mutex>
#include <string>

#include "core/error.h"
#include "core/storage.h"
#include "kernels/cuda/allocator.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/device_api.h"

namespace pg {

namespace cuda {

namespace {

// Per-process state of device 0 (the only device this version drives).
struct Runtime {
  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  bool tf32 = false;
  bool attention_mma = true;
  std::atomic<uint64_t> launches{0};
};

Runtime& runtime() {
  static Runtime rt;
  return rt;
}

int count_devices() {
  int n = 0;
  // No driver or no GPU is not an error here: it means "no CUDA devices".
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

const char* cublas_status_name(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "cuBLAS error";
  }
}

}  // namespace

void throw_cuda_error(const char* call, cudaError_t err, const char* file, int line) {
  (void)cudaGetLastError();  // clear a sticky launch error so the next call can proceed
  throw Error("cuda", detail::concat(call, " failed: ", cudaGetErrorName(err), " (",
                                     cudaGetErrorString(err), ") at ", file, ":", line));
}

void throw_cublas_error(const char* call, cublasStatus_t st, const char* file, int line) {
  throw Error("cublas",
              detail::concat(call, " failed: ", cublas_status_name(st), " at ", file, ":", line));
}

DeviceGuard::DeviceGuard(int index) {
  PG_CUDA_CHECK(cudaGetDevice(&previous_));
  if (index != previous_) PG_CUDA_CHECK(cudaSetDevice(index));
}

DeviceGuard::~DeviceGuard() { (void)cudaSetDevice(previous_); }

cudaStream_t stream() {
  Runtime& rt = runtime();
  static std::once_flag once;
  std::call_once(
      once, [&] { PG_CUDA_CHECK(cudaStreamCreateWithFlags(&rt.stream, cudaStreamNonBlocking)); });
  return rt.stream;
}

cublasHandle_t cublas() {
  Runtime& rt = runtime();
  static std::once_flag once;
  std::call_once(once, [&] {
    PG_CUBLAS_CHECK(cublasCreate(&rt.handle));
    PG_CUBLAS_CHECK(cublasSetStream(rt.handle, stream()));
  });
  PG_CUBLAS_CHECK(
      cublasSetMathMode(rt.handle, rt.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return rt.handle;
}

bool allow_tf32() { return runtime().tf32; }

bool is_built() { return true; }

int device_count() {
  static int n = count_devices();
  return n;
}

void synchronize() {
  if (device_count() > 0) PG_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

Allocator& allocator() {
  PG_CHECK(device_count() > 0, "cuda", "no CUDA device is available");
  return caching_allocator();
}

void set_allow_tf32(bool allow) { runtime().tf32 = allow; }
void set_attention_tensor_cores(bool on) { runtime().attention_mma = on; }
bool attention_tensor_cores() { return runtime().attention_mma; }
uint64_t kernel_launches() { return runtime().launches.load(std::memory_order_relaxed); }
void count_launch() { runtime().launches.fetch_add(1, std::memory_order_relaxed); }

}  // namespace cuda

namespace detail {

bool load_device_runtime(DeviceType type) {
  if (type != DeviceType::CUDA || cuda::device_count() == 0) return false;
  static cuda::CudaBackend backend;
  static std::once_flag once;
  std::call_once(once, [] {
    register_allocator(DeviceType::CUDA, &cuda::caching_allocator());
    register_backend(DeviceType::CUDA, &backend);
  });
  return true;
}

}  // namespace detail

}  // namespace pg
