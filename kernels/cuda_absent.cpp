// The CUDA entry points of a build without the CUDA backend: no devices, clear errors.
#ifndef PG_WITH_CUDA
#include "core/error.h"
#include "core/storage.h"
#include "kernels/device_api.h"

namespace pg {

namespace detail {
bool load_device_runtime(DeviceType) { return false; }
}  // namespace detail

namespace cuda {
bool is_built() { return false; }
int device_count() { return 0; }
void synchronize() {}
Allocator& allocator() {
  throw Error("cuda", "polygrad was built without the CUDA backend (configure with PG_CUDA=ON)");
}
void set_allow_tf32(bool) {}
void set_attention_tensor_cores(bool) {}
bool attention_tensor_cores() { return false; }
uint64_t kernel_launches() { return 0; }
}  // namespace cuda

}  // namespace pg
#endif
