// The CPU backend: OpenBLAS for matrix products, OpenMP loops for everything else.
#pragma once
#include "kernels/backend.h"

namespace pg::cpu {

class CpuBackend final : public Backend {
 public:
  void fill(Tensor& out, double value) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void arange(Tensor& out, double start, double step) override;
  void from_host(const void* src, Tensor& dst) override;
  void to_host(const Tensor& src, void* dst) override;
  void unary(UnaryOp op, const Tensor& x, Tensor& out, double scalar) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& x, Tensor& out) override;
  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) override;
  void index_select_rows(const Tensor& weight, const Tensor& index, Tensor& out) override;
  void index_add_rows(const Tensor& index, const Tensor& src, Tensor& out) override;
  void softmax(const Tensor& x, Tensor& out, bool log) override;
  void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx, bool log) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  Tensor& out, Tensor& mean, Tensor& rstd) override;
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dweight,
                           Tensor& dbias) override;
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing, Tensor& loss, Tensor& lse) override;
  void cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& target,
                              const Tensor& lse, int64_t ignore_index, double label_smoothing,
                              Tensor& dlogits) override;
  void adam_update(const std::vector<AdamParam>& params) override;
  void sgd_update(const std::vector<SgdParam>& params) override;
  void sum_of_squares(const std::vector<Tensor>& xs, Tensor& out) override;
  void scale(const std::vector<Tensor>& xs, double scale, const std::vector<Tensor>& outs) override;
  void dropout_mask(Tensor& out, double keep, uint64_t key, uint64_t first_index) override;
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                         const AttentionParams& p, Tensor& out, Tensor& lse,
                         Tensor& frob_sq) override;
  void attention_linear_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const AttentionParams& p, Tensor& out) override;
  void attention_linear_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const AttentionParams& p, Tensor& dq, Tensor& dk,
                                 Tensor& dv) override;
  void attention_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionParams& p, int64_t first_position, int64_t keys,
                           Tensor& state, Tensor& out) override;
  void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& key_mask, const Tensor& lse, const AttentionParams& p,
                          Tensor& dq, Tensor& dk, Tensor& dv, Tensor& grad_frob_sq) override;
};

}  // namespace pg::cpu
