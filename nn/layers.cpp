#include "nn/layers.h"

#include <cmath>

#include "kernels/factory.h"
#include "nn/init.h"

namespace pg {

Linear::Linear(int64_t in, int64_t out, bool has_bias) {
  PG_CHECK(in > 0 && out > 0, "Linear", "sizes must be positive, got in ", in, ", out ", out);
  double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = empty({out, in});
  uniform_(weight, -bound, bound);
  register_parameter("weight", &weight);
  if (has_bias) {
    bias = empty({out});
    uniform_(bias, -bound, bound);
    register_parameter("bias", &bias);
  }
}

Tensor Linear::forward(const Tensor& x) {
  PG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "Linear", "expected input [..., ",
           weight.size(1), "], got ", shape_str(x.shape()));
  return linear(x, weight, bias);
}

Embedding::Embedding(int64_t num, int64_t dim) {
  PG_CHECK(num > 0 && dim > 0, "Embedding", "sizes must be positive, got ", num, ", ", dim);
  weight = empty({num, dim});
  normal_(weight, 0.0, 1.0);
  register_parameter("weight", &weight);
}

Tensor Embedding::forward(const Tensor& index) {
  PG_CHECK(index.defined() && !is_floating(index.dtype()), "Embedding",
           "expected an integer index tensor, got ",
           index.defined() ? dtype_name(index.dtype()) : "an undefined tensor");
  return embedding(weight, index);
}

LayerNorm::LayerNorm(int64_t dim, double eps_, bool affine) : eps(eps_), dim_(dim) {
  PG_CHECK(dim > 0, "LayerNorm", "dim must be positive, got ", dim);
  PG_CHECK(eps >= 0, "LayerNorm", "eps must be >= 0, got ", eps);
  if (affine) {
    weight = ones({dim});
    bias = zeros({dim});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  PG_CHECK(x.dim() >= 1 && x.size(-1) == dim_, "LayerNorm", "expected input [..., ", dim_,
           "], got ", shape_str(x.shape()));
  return layer_norm(x, weight, bias, eps);
}

RMSNorm::RMSNorm(int64_t dim, double eps_) : eps(eps_) {
  PG_CHECK(dim > 0, "RMSNorm", "dim must be positive, got ", dim);
  PG_CHECK(eps >= 0, "RMSNorm", "eps must be >= 0, got ", eps);
  weight = ones({dim});
  register_parameter("weight", &weight);
}

Tensor RMSNorm::forward(const Tensor& x) {
  PG_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(0), "RMSNorm", "expected input [..., ",
           weight.size(0), "], got ", shape_str(x.shape()));
  Tensor inv = pow(add(mean(mul(x, x), {-1}, true), eps), -0.5);
  return mul(mul(x, inv), weight);
}

Dropout::Dropout(double p_, Generator* gen) : p(p_), gen_(gen) {
  PG_CHECK(p >= 0 && p <= 1, "Dropout", "probability must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), gen_); }

MLP::MLP(int64_t dim, int64_t hidden, double p) {
  PG_CHECK(dim > 0 && hidden > 0, "MLP", "sizes must be positive, got dim ", dim, ", hidden ",
           hidden);
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim));
  drop = register_module("drop", std::make_shared<Dropout>(p));
}

Tensor MLP::forward(const Tensor& x) { return (*drop)((*fc2)(gelu((*fc1)(x)))); }

Sequential& Sequential::add(std::shared_ptr<Module> m) {
  layers_.push_back(register_module(std::to_string(layers_.size()), std::move(m)));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& m : layers_) h = (*m)(h);
  return h;
}

}  // namespace pg
