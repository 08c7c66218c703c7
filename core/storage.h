// A reference-counted block of device memory that tensors view.
#pragma once
#include <cstddef>
#include <memory>

#include "core/allocator.h"
#include "core/device.h"

namespace pg {

/// Owns one allocation; shared by every view of it.
class Storage {
 public:
  /// Allocates `nbytes` on `device` from that device's allocator.
  Storage(size_t nbytes, Device device, Allocator& allocator);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Allocator& allocator_;
};

/// Returns the allocator that serves `device`; throws pg::Error when that device is unavailable.
Allocator& allocator_for(Device device);
/// Registers the allocator of a non-CPU device type (called by device backends at start-up).
void register_allocator(DeviceType type, Allocator* allocator);

namespace detail {
/// Starts a device type's runtime and registers its allocator and backend; false when the
/// device type is absent. Defined by the kernels layer (kernels/cuda or kernels/cuda_absent).
bool load_device_runtime(DeviceType type);
}  // namespace detail

}  // namespace pg
