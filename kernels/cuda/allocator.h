// The caching allocator of CUDA device memory: freed blocks wait in size-class free lists and
// serve later requests of the same class without cudaMalloc.
#pragma once
#include "core/allocator.h"

namespace pg::cuda {

/// The process-wide caching allocator of device 0.
Allocator& caching_allocator();

}  // namespace pg::cuda
