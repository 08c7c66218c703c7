// Multi-query associative recall (MQAR, from the Zoology benchmark): a synthetic task that
// measures how many key-value associations a sequence model can hold and look up.
#pragma once
#include <cstdint>
#include <string>

#include "nn/data_loader.h"

namespace pg {

/// The shape of a recall task. A sequence of `context` tokens starts with `pairs` key-value
/// pairs (k1 v1 k2 v2 ..., keys distinct from [1, vocab/2), values distinct from
/// [vocab/2, vocab)); the rest is random tokens, among which each key appears once more, at a
/// slot drawn with weight (j+1)^(power-1) (short gaps likelier), and the target there is its value.
struct RecallTask {
  int64_t vocab = 8192;
  int64_t context = 256;
  int64_t pairs = 16;
  double power = 0.01;

  /// Throws pg::Error naming `who` and the field unless the sizes fit: pairs >= 1,
  /// 4 * pairs <= context (as many query slots as pairs), pairs <= vocab / 2 - 1 distinct keys
  /// and values, power in (0, 1].
  void check(const std::string& who) const;
  /// JSON text of the task (checkpoints keep it).
  std::string to_json() const;
  /// Parses to_json()'s text and check()s it; errors name `who` and the field.
  static RecallTask from_json(const std::string& text, const std::string& who = "RecallTask");
};

/// Target value of the positions that carry no loss.
inline constexpr int64_t kRecallNoTarget = -100;

/// The stream test sets are drawn from (training streams are seeded with --seed, a smaller number).
inline constexpr uint64_t kRecallTestSeed = ~uint64_t{0};

/// Sequences first, first + 1, ..., first + count - 1 of the stream `seed`: inputs [count,
/// context] and targets [count, context] (i64), the key's value at its second occurrence and
/// kRecallNoTarget elsewhere. Each sequence depends only on (seed, its index), so a batch split
/// across processes holds the same sequences as one process's.
Batch recall_batch(const RecallTask& task, uint64_t seed, int64_t first, int64_t count);

}  // namespace pg
