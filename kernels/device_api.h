// What a program can ask about GPUs, whether or not polygrad was built with CUDA.
#pragma once
#include <cstdint>

#include "core/allocator.h"

namespace pg::cuda {

/// True when this build contains the CUDA backend.
bool is_built();
/// Number of usable CUDA devices (0 when none, when the driver is missing or not built).
int device_count();
/// True when at least one CUDA device can be used.
inline bool is_available() { return device_count() > 0; }
/// Waits for every kernel queued on the current device's stream.
void synchronize();
/// The caching allocator of CUDA device memory (throws pg::Error when no device is usable).
Allocator& allocator();
/// Lets cuBLAS use TF32 tensor cores for f32 matrix products (off by default).
void set_allow_tf32(bool allow);
/// Lets f32 fused attention run its tile products on tensor cores as three TF32 products
/// (3xTF32, about f32 accuracy, as PyTorch's f32 attention does); on by default. Off: FMA units.
void set_attention_tensor_cores(bool on);
/// Whether f32 fused attention uses tensor cores.
bool attention_tensor_cores();
/// Kernels of polygrad's own launched so far on every device (cuBLAS's are not counted).
uint64_t kernel_launches();

}  // namespace pg::cuda
