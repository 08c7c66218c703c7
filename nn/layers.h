// Standard layers. Every forward accepts leading batch dims: [..., features].
#pragma once
#include <memory>

#include "autograd/ops.h"
#include "nn/module.h"

namespace pg {

/// y = x W^T + b with W [out, in]; PyTorch's default init U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  Tensor weight, bias;
};

/// Rows of a [num, dim] table picked by i64 indices; init N(0, 1).
class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim);
  Tensor forward(const Tensor& index) override;
  std::string type_name() const override { return "Embedding"; }
  Tensor weight;
};

/// Layer normalisation over the last dim (fused kernel); affine adds weight (ones) and bias
/// (zeros).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  Tensor weight, bias;
  double eps;

 private:
  int64_t dim_;
};

/// x / sqrt(mean(x^2) + eps) * weight over the last dim (composite); weight starts at ones.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "RMSNorm"; }
  Tensor weight;
  double eps;
};

/// Zeroes elements with probability p and scales the rest by 1/(1-p), in training mode only;
/// draws from `gen` when given, else from the default generator.
class Dropout : public Module {
 public:
  explicit Dropout(double p, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  double p;

 private:
  Generator* gen_;
};

/// GELU activation (tanh approximation by default).
class GELU : public Module {
 public:
  explicit GELU(GeluApprox approx = GeluApprox::Tanh) : approx_(approx) {}
  Tensor forward(const Tensor& x) override { return gelu(x, approx_); }
  std::string type_name() const override { return "GELU"; }

 private:
  GeluApprox approx_;
};

/// max(x, 0).
class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

/// fc1 (dim -> hidden) -> GELU (tanh) -> fc2 (hidden -> dim) -> dropout.
class MLP : public Module {
 public:
  MLP(int64_t dim, int64_t hidden, double dropout = 0.0);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MLP"; }
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<Dropout> drop;
};

/// Children "0", "1", ... applied in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  /// Appends a module; returns *this for chaining.
  Sequential& add(std::shared_ptr<Module> m);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

}  // namespace pg
