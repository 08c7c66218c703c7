// Training checkpoints: model, optimizer, step, RNG and config in one safetensors file.
#pragma once
#include <array>
#include <map>
#include <string>

#include "nn/module.h"
#include "nn/optim.h"

namespace pg {

/// Everything a checkpoint file holds.
struct Checkpoint {
  StateDict model;                              ///< "model.<name>" entries, without the prefix
  StateDict optimizer;                          ///< "optim.<name>" entries, without the prefix
  std::map<std::string, std::string> metadata;  ///< config, model kind, vocabulary, ...
  int64_t step = 0;
  std::array<uint64_t, 6> rng{};  ///< pg::default_generator() state
};

/// Writes model + optimizer (may be null) + step + the default generator's state + metadata
/// to `path` atomically (temporary file, fsync, rename).
void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     int64_t step, const std::map<std::string, std::string>& metadata);
/// Reads and validates a checkpoint; throws pg::Error naming the file on any problem.
Checkpoint load_checkpoint(const std::string& path);
/// Loads the checkpoint's tensors into `model` and `optimizer` (strict) and restores the RNG.
void restore_checkpoint(const Checkpoint& ckpt, Module& model, Optimizer* optimizer);

}  // namespace pg
