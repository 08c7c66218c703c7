// The safetensors file format (interoperable with PyTorch and Hugging Face tools).
#pragma once
#include <map>
#include <string>

#include "nn/state_dict.h"

namespace pg {

/// The contents of a safetensors file.
struct SafetensorsFile {
  StateDict tensors;
  std::map<std::string, std::string> metadata;  ///< the "__metadata__" object
};

/// Writes tensors (any device and layout) and metadata to `path` atomically: a temporary file
/// in the same directory is written, flushed, fsync'ed and renamed over `path`.
void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// Reads a whole file; F32/F64/I64/I32 load as such, BF16/F16 are converted to f32. A
/// truncated or corrupt file is refused with a pg::Error naming the file (and tensor).
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace pg
