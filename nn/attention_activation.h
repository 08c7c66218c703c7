// The attention-activation policy: how scores s = QK^T/sqrt(d) become weights A.
#pragma once
#include <functional>
#include <string>

#include "kernels/attention_math.h"
#include "kernels/backend.h"

namespace pg {

/// One entry of the policy table (docs/design.md), chosen by a spec string; the math of each
/// built-in lives in kernels/attention_math.h.
///   softmax                      softmax over the visible keys of each row
///   poly:P  | poly:p=P,scale=n^E  s^P * N^E (default P = 3, E = -0.5), P in 1..8
///   relu                         relu(s) / N
///   relu2                        relu(s)^2 / N
///   sigmoid                      sigmoid(s - log N)
/// Any spec but softmax takes ":n=visible" (poly: ",n=visible") to use the number of visible
/// keys of each row as N instead of the key count. Masked entries are zeroed after the
/// activation (softmax: set to -inf before).
class AttentionActivation {
 public:
  using Kind = AttnActivation;
  /// A user activation: maps scores [B,H,T,S] to weights through autograd ops.
  using CustomFn = std::function<Tensor(const Tensor& scores)>;

  /// Softmax.
  AttentionActivation() = default;
  /// The valid specs, in words (for errors and command-line help).
  static std::string valid_specs();
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
  /// Refuses (pg::Error naming the spec, N and the dtype) a poly scale N^e that `dtype` cannot
  /// hold for rows of up to `keys` keys: it would overflow to inf or vanish to 0 mid-kernel.
  void check_scale(int64_t keys, DType dtype) const;
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

}  // namespace pg
