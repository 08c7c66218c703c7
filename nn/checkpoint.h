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
  std::string path;                             ///< the file it was read from (errors name it)
  StateDict model;                              ///< "model.<name>" entries, without the prefix
  StateDict optimizer;                          ///< "optim.<name>" entries, without the prefix
  std::map<std::string, std::string> metadata;  ///< config, model kind, vocabulary, ...
  int64_t step = 0;
  std::array<uint64_t, 6> rng{};  ///< pg::default_generator() state

  /// Metadata entry `key`; throws pg::Error naming the file and the key when it is absent.
  const std::string& field(const std::string& key) const;
  /// "FILE: metadata 'key'", the `who` for errors about that entry's contents.
  std::string source(const std::string& key) const;
};

/// Writes model + optimizer (may be null) + step + the default generator's state + metadata
/// to `path` atomically (temporary file, fsync, rename).
void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     int64_t step, const std::map<std::string, std::string>& metadata);
/// The same with the optimizer's state dict given (a sharded optimizer gathers it collectively,
/// then one process writes).
void save_checkpoint(const std::string& path, const Module& model, const StateDict& optimizer_state,
                     int64_t step, const std::map<std::string, std::string>& metadata);
/// Reads and validates a checkpoint: the format tag, the step (a whole number >= 0), the RNG
/// state and the tensor names; throws pg::Error naming the file and the field on any problem.
/// The other metadata entries are the writer's: read them with Checkpoint::field.
Checkpoint load_checkpoint(const std::string& path);
/// Loads the checkpoint's tensors into `model` and `optimizer` (strict) and restores the RNG;
/// a mismatch is a pg::Error naming the file and the tensor. Both parts are checked before
/// either is loaded, so a refused checkpoint leaves model, optimizer and generator unchanged.
void restore_checkpoint(const Checkpoint& ckpt, Module& model, RestorableOptimizer* optimizer);

}  // namespace pg
