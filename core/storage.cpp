#include "core/storage.h"

#include "core/error.h"

namespace pg {

namespace {
Allocator* g_cuda_allocator = nullptr;
}

Storage::Storage(size_t nbytes, Device device, Allocator& allocator)
    : data_(nbytes ? allocator.allocate(nbytes) : nullptr),
      nbytes_(nbytes),
      device_(device),
      allocator_(allocator) {}

Storage::~Storage() { allocator_.deallocate(data_, nbytes_); }

void register_allocator(DeviceType type, Allocator* allocator) {
  if (type == DeviceType::CUDA) g_cuda_allocator = allocator;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  if (g_cuda_allocator == nullptr) detail::load_device_runtime(device.type);
  PG_CHECK(g_cuda_allocator != nullptr, "to", "device ", device.str(),
           " is not available: polygrad was built without the CUDA backend or no GPU was found");
  // One stream, one cuBLAS handle and one memory pool: device 0 is the device this version drives.
  PG_CHECK(device.index == 0, "to", "device ", device.str(),
           " is not supported: this version of polygrad drives cuda:0 only");
  return *g_cuda_allocator;
}

}  // namespace pg
