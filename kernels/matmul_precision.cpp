#include "kernels/matmul_precision.h"

#include <atomic>

#include "core/error.h"

namespace pg {

namespace {

// Process-wide, like torch.set_float32_matmul_precision: a training program sets it once.
std::atomic<MatmulPrecision> g_precision{MatmulPrecision::F32};

}  // namespace

void set_matmul_precision(MatmulPrecision precision) { g_precision.store(precision); }

MatmulPrecision matmul_precision() { return g_precision.load(); }

MatmulPrecision parse_matmul_precision(const std::string& name) {
  if (name == "f32") return MatmulPrecision::F32;
  if (name == "bf16") return MatmulPrecision::BF16;
  throw Error("matmul precision", "expected 'f32' or 'bf16', got '" + name + "'");
}

}  // namespace pg
