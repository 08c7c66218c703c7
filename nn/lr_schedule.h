// Learning rate as a function of the step: the optimizer's lr is set from lr_at(step) before
// each step, so a resumed run only needs the step count to continue the schedule exactly.
#pragma once
#include <cstdint>

namespace pg {

/// A learning-rate schedule; steps count from 0.
class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  /// The learning rate of step `step` (0-based).
  virtual double lr_at(int64_t step) const = 0;
};

/// The same rate at every step.
class ConstantLR : public LrSchedule {
 public:
  /// Always `lr` (>= 0).
  explicit ConstantLR(double lr);
  /// `lr` at every step.
  double lr_at(int64_t step) const override;

 private:
  double lr_;
};

/// Linear warm-up, then cosine decay: step s < warmup gets base * (s + 1) / warmup (the ramp
/// from 0 whose first step is not wasted at lr 0, as nanoGPT and tools/reference do), step
/// warmup gets base, the rate falls along a half cosine to min_lr at total, and stays there.
class WarmupCosineLR : public LrSchedule {
 public:
  /// Needs 0 <= warmup <= total, total > 0 and 0 <= min_lr <= base.
  WarmupCosineLR(double base_lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);
  /// The warm-up ramp, the cosine, or min_lr, as described above.
  double lr_at(int64_t step) const override;

 private:
  double base_, min_;
  int64_t warmup_, total_;
};

}  // namespace pg
