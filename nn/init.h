// In-place initialisers drawing from the framework's seeded generator.
#pragma once
#include <string>

#include "core/rng.h"
#include "core/tensor.h"

namespace pg {

/// Which fan a Kaiming initialiser preserves.
enum class FanMode { FanIn, FanOut };

/// N(mean, std^2).
void normal_(Tensor& t, double mean, double std, Generator* gen = nullptr);
/// U(a, b).
void uniform_(Tensor& t, double a, double b, Generator* gen = nullptr);
void zeros_(Tensor& t);
void ones_(Tensor& t);
/// U(-g*sqrt(6/(fan_in+fan_out)), +...) for weights shaped [out, in, ...].
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
/// N(0, g^2 * 2/(fan_in+fan_out)).
void xavier_normal_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
/// U(-b, b) with b = gain * sqrt(3 / fan), gain = sqrt(2 / (1 + a^2)) (leaky-ReLU slope a).
void kaiming_uniform_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                      Generator* gen = nullptr);
/// N(0, (gain / sqrt(fan))^2), gain as in kaiming_uniform_.
void kaiming_normal_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                     Generator* gen = nullptr);
/// (fan_in, fan_out) of a weight shaped [out, in, *receptive].
std::pair<int64_t, int64_t> fans(const Tensor& t);

}  // namespace pg
