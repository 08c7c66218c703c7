#include "core/dtype.h"

namespace pg {

size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::F32:
      return 4;
    case DType::F64:
      return 8;
    case DType::I64:
      return 8;
    case DType::I32:
      return 4;
    case DType::BF16:
      return 2;
  }
  return 0;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::I64:
      return "i64";
    case DType::I32:
      return "i32";
    case DType::BF16:
      return "bf16";
  }
  return "?";
}

bool is_floating(DType dt) { return dt == DType::F32 || dt == DType::F64; }

}  // namespace pg
