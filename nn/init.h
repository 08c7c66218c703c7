// In-place initialisers drawing from the framework's seeded generator (PyTorch's conventions).
#pragma once
#include <cstdint>
#include <utility>

#include "core/rng.h"
#include "core/tensor.h"

namespace pg {

/// Which fan a Kaiming initialiser preserves: the forward pass's (FanIn) or the backward's.
enum class FanMode { FanIn, FanOut };

/// The non-linearity that follows a layer, for the recommended init gain.
enum class Nonlinearity { Linear, Sigmoid, Tanh, ReLU, LeakyReLU, SELU };

/// Recommended gain for `nl` (torch.nn.init.calculate_gain): 1, 1, 5/3, sqrt(2),
/// sqrt(2 / (1 + negative_slope^2)), 3/4.
double calculate_gain(Nonlinearity nl, double negative_slope = 0.01);

/// Fills t with N(mean, std^2) draws.
void normal_(Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
/// Fills t with U(a, b) draws.
void uniform_(Tensor& t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
/// Fills t with zeros.
void zeros_(Tensor& t);
/// Fills t with ones.
void ones_(Tensor& t);
/// U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)), for weights shaped [out, in, ...].
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
/// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
void xavier_normal_(Tensor& t, double gain = 1.0, Generator* gen = nullptr);
/// U(-b, b) with b = calculate_gain(nonlinearity, a) * sqrt(3 / fan); a is the negative slope
/// of a following leaky ReLU (a = 0: plain ReLU, gain sqrt(2)).
void kaiming_uniform_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                      Nonlinearity nonlinearity = Nonlinearity::LeakyReLU,
                      Generator* gen = nullptr);
/// kaiming_uniform_ for a leaky ReLU with slope a, drawing from `gen`.
void kaiming_uniform_(Tensor& t, double a, FanMode mode, Generator* gen);
/// N(0, std^2) with std = calculate_gain(nonlinearity, a) / sqrt(fan).
void kaiming_normal_(Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                     Nonlinearity nonlinearity = Nonlinearity::LeakyReLU, Generator* gen = nullptr);
/// kaiming_normal_ for a leaky ReLU with slope a, drawing from `gen`.
void kaiming_normal_(Tensor& t, double a, FanMode mode, Generator* gen);
/// (fan_in, fan_out) of a weight shaped [out, in, *receptive].
std::pair<int64_t, int64_t> fans(const Tensor& t);

}  // namespace pg
