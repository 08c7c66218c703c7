// Seeded, reproducible random numbers: the same seed gives the same numbers on every machine.
#pragma once
#include <array>
#include <cstdint>

namespace pg {

/// xoshiro256** seeded through splitmix64; all draws use only integer arithmetic and
/// IEEE-exact operations so streams are identical across machines.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { seed_with(seed); }
  /// Restarts the stream from `seed`.
  void seed_with(uint64_t seed);
  /// Next raw 64-bit value.
  uint64_t next_u64();
  /// Uniform double in [0, 1) with 53 random bits.
  double uniform();
  /// Standard normal (Box–Muller; the second value of each pair is cached).
  double normal();
  /// Uniform integer in [low, high).
  int64_t randint(int64_t low, int64_t high);
  /// The full state (for checkpoints).
  std::array<uint64_t, 6> state() const;
  /// Restores a state returned by state().
  void set_state(const std::array<uint64_t, 6>& s);

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0;
};

/// The process-wide generator that factories and dropout use when none is given.
Generator& default_generator();
/// Re-seeds the default generator.
void manual_seed(uint64_t seed);

}  // namespace pg
