// The attention-activation policy: how scores s = QK^T/sqrt(d) become weights A.
#pragma once
#include <functional>
#include <string>

#include "autograd/attention.h"

namespace pg {

/// One entry of DESIGN.md's policy table, chosen by a spec string.
///   softmax                      softmax over the visible keys of each row
///   poly:P  | poly:p=P,scale=n^E  s^P * N^E (default P = 3, E = -0.5), P in 1..8
///   relu                         relu(s) / N
///   sigmoid                      sigmoid(s - log N)
/// Any spec but softmax takes ",n=visible" (poly: also as a key) to use the number of visible
/// keys of each row as N instead of the key count. Masked entries are zeroed after the
/// activation (softmax: set to -inf before).
class AttentionActivation {
 public:
  enum class Kind { Softmax, Poly, Relu, Sigmoid, Custom };
  /// A user activation: maps scores [B,H,T,S] to weights through autograd ops.
  using CustomFn = std::function<Tensor(const Tensor& scores)>;

  /// Softmax.
  AttentionActivation() = default;
  /// Parses a spec; throws pg::Error listing the valid specs when it is unknown or malformed.
  static AttentionActivation parse(const std::string& spec);
  /// A user-supplied activation (runs through autograd ops; no fused kernel).
  static AttentionActivation custom(std::string name, CustomFn fn);

  Kind kind() const { return kind_; }
  int power() const { return power_; }
  double n_exponent() const { return n_exponent_; }
  bool n_visible() const { return n_visible_; }
  /// The canonical spec string (round-trips through parse for built-ins).
  std::string spec() const;
  /// True for the built-ins, which have fused kernels.
  bool has_fused_kernel() const { return kind_ != Kind::Custom; }
  /// Parameters of the fused kernels.
  AttentionParams kernel_params(bool causal, double scale) const;
  /// Composite path: weights from scores [B,H,T,S] through autograd ops; `visible` is a 0/1
  /// tensor broadcastable to the scores (undefined = everything visible).
  Tensor apply(const Tensor& scores, const Tensor& visible) const;

 private:
  Kind kind_ = Kind::Softmax;
  int power_ = 3;
  double n_exponent_ = -0.5;
  bool n_visible_ = false;
  std::string custom_name_;
  CustomFn custom_;
};

/// Attention through autograd ops (matmul -> activation -> matmul): the reference every fused
/// kernel is tested against, and the path of custom activations. Same arguments as
/// fused_attention plus the policy; `stats` receives ||A||_F (not the gradient norm).
Tensor composite_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionActivation& act, bool causal, double scale,
                           const Tensor& key_padding_mask = Tensor(),
                           AttentionStats* stats = nullptr);

}  // namespace pg
