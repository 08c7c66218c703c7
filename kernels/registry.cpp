// Maps devices to backends; owns the thread setting shared by OpenMP and OpenBLAS.
#include <cblas.h>
#include <omp.h>

#include "core/storage.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/ops.h"
#include "kernels/profile.h"

namespace pg {

namespace {
Backend* g_cuda_backend = nullptr;
}

void register_backend(DeviceType type, Backend* backend) {
  if (type == DeviceType::CUDA) g_cuda_backend = backend;
}

Backend& backend_for(Device device) {
  static cpu::CpuBackend cpu_backend;
  if (device.is_cpu())
    return profile::recording() ? profile::recording_backend(cpu_backend) : cpu_backend;
  if (g_cuda_backend == nullptr) detail::load_device_runtime(device.type);
  PG_CHECK(g_cuda_backend != nullptr, "backend", "device ", device.str(),
           " is not available: polygrad was built without the CUDA backend or no GPU was found");
  return *g_cuda_backend;
}

namespace {
[[noreturn]] void no_linear_kernel(const Device& device) {
  throw Error("attention", "the linear path has no kernel on " + device.str() +
                               " (only on the CPU); use the quadratic path there");
}
}  // namespace

void Backend::attention_linear_forward(const Tensor& q, const Tensor&, const Tensor&,
                                       const AttentionParams&, Tensor&) {
  no_linear_kernel(q.device());
}

void Backend::attention_linear_backward(const Tensor&, const Tensor& q, const Tensor&,
                                        const Tensor&, const AttentionParams&, Tensor&, Tensor&,
                                        Tensor&) {
  no_linear_kernel(q.device());
}

void Backend::attention_recurrent(const Tensor& q, const Tensor&, const Tensor&,
                                  const AttentionParams&, int64_t, int64_t, Tensor&, Tensor&) {
  no_linear_kernel(q.device());
}

void set_num_threads(int n) {
  PG_CHECK(n >= 1, "set_num_threads", "expected at least 1 thread, got ", n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

Tensor& Tensor::fill_(double value) {
  if (numel()) backend_for(device()).fill(*this, value);
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  kernels::check_same_device("copy_", {this, &src});
  Shape st = broadcast_strides(src.shape(), src.strides(), shape(), "copy_");
  if (numel()) backend_for(device()).copy(src.as_strided(shape(), st, src.offset()), *this);
  return *this;
}

}  // namespace pg
