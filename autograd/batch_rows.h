// Dropout masks as a function of the global batch, so that a batch split over processes (or
// over the micro-batches of one process) draws the masks one process draws for all of it.
#pragma once
#include <cstdint>

namespace pg {

/// While alive on this thread, says that the tensors' dim 0 holds rows [first_row, ...) of a
/// global batch, and gives dropout its randomness: the k-th dropout call in the scope draws
/// nothing from its generator and masks element i of its tensor with bits that depend only on
/// (key, k, first_row * row_size + i). So N processes, each on its slice of the batch with the
/// same key, draw the masks one process draws for the whole batch, and so does one process
/// that runs the slices one after another (a scope per slice, the same key). Scopes nest; the
/// inner one rules.
class BatchRows {
 public:
  BatchRows(uint64_t key, int64_t first_row);
  ~BatchRows();
  BatchRows(const BatchRows&) = delete;
  BatchRows& operator=(const BatchRows&) = delete;

  /// The innermost scope on this thread, or null.
  static BatchRows* current();
  /// The key of the next dropout call in this scope (one per call, in order).
  uint64_t next_key();
  int64_t first_row() const { return first_row_; }

 private:
  uint64_t key_;
  int64_t first_row_;
  uint64_t calls_ = 0;
  BatchRows* previous_;
};

}  // namespace pg
