// Batches as pure functions of (seed, step), prepared one step ahead on a background thread.
#pragma once
#include <functional>
#include <future>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "nn/mnist.h"

namespace pg {

/// Inputs and targets of one training step.
struct Batch {
  Tensor inputs;
  Tensor targets;
};

/// Runs `make(step)` for the next step on a background thread while the current one trains.
/// Because batches depend only on the step, a resumed run sees exactly the same data.
class Prefetcher {
 public:
  Prefetcher(std::function<Batch(int64_t)> make, int64_t first_step);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  /// The batch of the current step; starts preparing the following one.
  Batch next();

 private:
  std::function<Batch(int64_t)> make_;
  int64_t step_;
  std::future<Batch> pending_;
};

/// Training-time image augmentation, drawn per image from the step's own generator.
struct ImageAugment {
  bool flip = false;      ///< mirror left-right with probability 1/2
  int64_t max_shift = 0;  ///< translate by up to this many pixels each way, filling with zeros
};

/// Mini-batches of an image set: epoch e visits the images in a permutation drawn from
/// Generator(seed + e); the last partial batch of an epoch is dropped.
class ImageBatcher {
 public:
  ImageBatcher(const ImageSet& data, int64_t batch_size, uint64_t seed, ImageAugment aug = {});
  /// Batches per epoch.
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  /// Images [B, 1, H, W] and labels [B] of global step `step`.
  Batch batch(int64_t step) const;

 private:
  const std::vector<int64_t>& order(int64_t epoch) const;
  ImageSet data_;
  ImageAugment aug_;
  int64_t batch_size_, steps_per_epoch_;
  uint64_t seed_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_order_;
};

/// Random windows of a token stream: inputs [B, T] and next-token targets [B, T], i64; the
/// offsets of step s come from Generator(seed, s).
Batch text_batch(const std::vector<int32_t>& tokens, int64_t batch_size, int64_t context,
                 uint64_t seed, int64_t step);

}  // namespace pg
