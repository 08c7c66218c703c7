#include "nn/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace pg {

ConstantLR::ConstantLR(double lr) : lr_(lr) {
  PG_CHECK(lr >= 0, "ConstantLR", "learning rate must be >= 0, got ", lr);
}

double ConstantLR::lr_at(int64_t) const { return lr_; }

WarmupCosineLR::WarmupCosineLR(double base_lr, int64_t warmup_steps, int64_t total_steps,
                               double min_lr)
    : base_(base_lr), min_(min_lr), warmup_(warmup_steps), total_(total_steps) {
  PG_CHECK(warmup_steps >= 0 && total_steps > 0 && warmup_steps <= total_steps, "WarmupCosineLR",
           "need 0 <= warmup_steps <= total_steps and total_steps > 0, got warmup_steps ",
           warmup_steps, ", total_steps ", total_steps);
  PG_CHECK(min_lr >= 0 && min_lr <= base_lr, "WarmupCosineLR",
           "need 0 <= min_lr <= base_lr, got min_lr ", min_lr, ", base_lr ", base_lr);
}

double WarmupCosineLR::lr_at(int64_t step) const {
  if (step < warmup_)
    return base_ * static_cast<double>(std::max<int64_t>(step, 0) + 1) /
           static_cast<double>(warmup_);
  if (step >= total_) return min_;
  // warmup < total here, so the denominator is positive.
  double progress = static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);
  return min_ + 0.5 * (base_ - min_) * (1 + std::cos(std::numbers::pi * progress));
}

}  // namespace pg
