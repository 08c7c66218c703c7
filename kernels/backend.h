// The contract every device implements. Outputs are allocated by the caller (kernels/ops.cpp)
// on the right device; inputs may have arbitrary strides unless a kernel says otherwise.
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/attention_math.h"

namespace pg {

/// Element-wise functions of one tensor (plus an optional scalar).
enum class UnaryOp {
  Neg,
  Exp,
  Log,
  Sqrt,
  Abs,
  Sign,
  Tanh,
  Sigmoid,
  Relu,
  ReluMask,
  GeluTanh,
  GeluErf,
  PowScalar,   ///< x^s
  AddScalar,   ///< x + s
  MulScalar,   ///< x * s
  RsubScalar,  ///< s - x
  RoundBf16,   ///< x rounded to the nearest bfloat16 (ties to even), kept in x's dtype
};

/// Element-wise functions of two broadcast tensors.
enum class BinaryOp {
  Add,
  Sub,
  Mul,
  Div,
  Maximum,
  Minimum,
  Eq,
  Ne,
  Gt,
  Lt,
  Ge,
  Le,
  GeluTanhBackward,  ///< a * gelu_tanh'(b): GELU's backward from (output gradient, input), one pass
  GeluErfBackward,   ///< a * gelu_erf'(b)
};

/// Reductions over a set of dims.
enum class ReduceOp { Sum, Max, Min, ArgMax };

/// What a fused attention kernel computes: A = act(scale * Q K^T) with masking, out = A V.
struct AttentionParams {
  AttnActivation act = AttnActivation::Softmax;
  int power = 3;             ///< poly: exponent p
  double n_exponent = -0.5;  ///< poly: weights are multiplied by N^n_exponent
  bool n_visible = false;    ///< N = visible keys of each row instead of the key count
  bool causal = false;       ///< query i sees keys j <= i
  double scale = 1.0;        ///< score scale, usually 1/sqrt(d_head)
  bool bf16 = false;  ///< f32 only: every tile product from operands rounded to bf16 (ties to
                      ///< even) with f32 accumulation, as matmuls under MatmulPrecision::BF16
};

/// One Adam/AdamW step with the bias corrections folded into scalars (torch.optim's form):
/// g' = g + l2 * p; p *= decay; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
/// p -= step_size * m / (sqrt(v) / sqrt_bc2 + eps).
struct AdamStep {
  double beta1, beta2, eps, step_size, sqrt_bc2, decay, l2;
};

/// One SGD step: d = g + wd p; with momentum, buf = first ? d : mom buf + d and
/// d = nesterov ? d + mom buf : buf; then p -= lr d.
struct SgdStep {
  double lr, weight_decay, momentum;
  bool nesterov, first;
};

/// The CPU sum_of_squares sums each tensor in chunks of this many elements (each in order), and
/// adds the chunk sums in order into one total: pieces of a tensor cut at multiples of it, summed
/// alone, add up (in order, from 0) to the same bits.
constexpr int64_t kSumOfSquaresChunk = 4096;

/// The chunk of the linear attention path: causal rows attend to the keys of their own chunk
/// through the exact masked polynomial and to earlier chunks through the running state.
constexpr int64_t kLinearChunk = 64;

/// One parameter of a fused Adam step: contiguous tensors of one dtype, updated in place.
struct AdamParam {
  Tensor param, grad, m, v;
  AdamStep step;
};

/// One parameter of a fused SGD step; `buf` (the momentum buffer) is undefined without momentum.
struct SgdParam {
  Tensor param, grad, buf;
  SgdStep step;
};

/// Kernels a device provides. Every method may assume devices and dtypes were checked.
class Backend {
 public:
  virtual ~Backend() = default;

  /// out[...] = value.
  virtual void fill(Tensor& out, double value) = 0;
  /// dst[...] = src[...] (same shape, any strides, dtype conversion allowed).
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  /// out[i] = start + i * step (out contiguous, 1-D).
  virtual void arange(Tensor& out, double start, double step) = 0;
  /// Copies host memory into a contiguous tensor of this device.
  virtual void from_host(const void* src, Tensor& dst) = 0;
  /// Copies a contiguous tensor of this device into host memory.
  virtual void to_host(const Tensor& src, void* dst) = 0;

  /// out = op(x, scalar); x already broadcast to out's shape, out contiguous.
  virtual void unary(UnaryOp op, const Tensor& x, Tensor& out, double scalar) = 0;
  /// out = op(a, b); a and b already broadcast (stride-0 views) to out's shape.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) = 0;
  /// out = cond != 0 ? a : b; all broadcast to out's shape.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) = 0;
  /// Reduces x over the dims where out (same rank, keepdim) has size 1 and x does not.
  virtual void reduce(ReduceOp op, const Tensor& x, Tensor& out) = 0;

  /// out[b] = a[b] @ b[b] for a [B, M, K], b [B, K, N] (any strides), out [B, M, N] contiguous;
  /// with `accumulate`, out[b] += a[b] @ b[b] (a bias written into out beforehand costs no pass).
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) = 0;

  /// out[i, :] = weight[index[i], :]; weight [V, D] contiguous, index flat i64/i32.
  virtual void index_select_rows(const Tensor& weight, const Tensor& index, Tensor& out) = 0;
  /// out[index[i], :] += src[i, :]; out [V, D] contiguous, src [N, D] contiguous.
  virtual void index_add_rows(const Tensor& index, const Tensor& src, Tensor& out) = 0;

  /// Row-wise softmax (or log-softmax) of a contiguous [R, C] tensor.
  virtual void softmax(const Tensor& x, Tensor& out, bool log) = 0;
  /// dx = y * (dy - sum(dy * y)) for softmax; dx = dy - exp(y) * sum(dy) for log-softmax.
  virtual void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx, bool log) = 0;
  /// Layer norm over rows of contiguous x [R, C]; weight/bias [C] may be undefined.
  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                          Tensor& out, Tensor& mean, Tensor& rstd) = 0;
  /// Gradients of layer_norm; dweight/dbias are written only when defined.
  virtual void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd, Tensor& dx,
                                   Tensor& dweight, Tensor& dbias) = 0;
  /// Mean cross-entropy of logits [N, C] against i64 targets [N]; writes loss (scalar) and
  /// the per-row log-sum-exp [N]. Rows whose target is ignore_index are skipped.
  virtual void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                             double label_smoothing, Tensor& loss, Tensor& lse) = 0;
  /// dlogits = scale * (softmax - smoothed one-hot) for kept rows, 0 for ignored rows;
  /// `grad` is the scalar upstream gradient, divided here by the count of kept rows.
  virtual void cross_entropy_backward(const Tensor& grad, const Tensor& logits,
                                      const Tensor& target, const Tensor& lse, int64_t ignore_index,
                                      double label_smoothing, Tensor& dlogits) = 0;
  /// Fused Adam/AdamW updates of parameters on this device (a GPU batches them into few
  /// launches: a model's step costs a handful, not one per parameter).
  virtual void adam_update(const std::vector<AdamParam>& params) = 0;
  /// Fused SGD updates of parameters on this device, batched as adam_update.
  virtual void sgd_update(const std::vector<SgdParam>& params) = 0;
  /// out (an f64 scalar on this device) = the sum of x^2 over every element of every x,
  /// accumulated in f64 in an order that does not depend on threads or timing (on the CPU:
  /// see kSumOfSquaresChunk).
  virtual void sum_of_squares(const std::vector<Tensor>& xs, Tensor& out) = 0;
  /// outs[i] = xs[i] * scale (scale rounded to their dtype, as mul(x, scale)); contiguous
  /// tensors of one floating dtype, batched as adam_update.
  virtual void scale(const std::vector<Tensor>& xs, double scale,
                     const std::vector<Tensor>& outs) = 0;

  /// out = bernoulli(keep) / keep: element i (row-major) is kept when
  /// counter_uniform(key, first_index + i) < keep, the same bits on every device.
  virtual void dropout_mask(Tensor& out, double keep, uint64_t key, uint64_t first_index) = 0;

  /// Fused attention forward. q [B,H,T,d], k [B,H,S,d], v [B,H,S,e], out [B,H,T,e] (any
  /// strides with a unit last-dim stride); key_mask [B,S] i64 (non-zero = visible) or
  /// undefined; lse [B,H,T] (softmax only) receives the log-sum-exp of each row;
  /// frob_sq (if defined: f64 [B*H] on the same device, zero on entry) receives sum(A^2) per
  /// (b, h) without a synchronisation. The [T,S] matrix is never stored whole.
  virtual void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& key_mask, const AttentionParams& p, Tensor& out,
                                 Tensor& lse, Tensor& frob_sq) = 0;
  /// Fused attention backward: recomputes A tile by tile; dk and dv must be zero on entry.
  /// grad_frob_sq (if defined, as frob_sq) receives sum((dL/dA)^2) over visible entries.
  virtual void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& key_mask, const Tensor& lse,
                                  const AttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv,
                                  Tensor& grad_frob_sq) = 0;
  /// Polynomial attention (p.act Poly) in time linear in the sequence length, through the
  /// symmetric power features (kernels/symmetric_power.h) and a running state per (b, h); causal
  /// rows in chunks of kLinearChunk. Operands as attention_forward, with T == S when causal and
  /// no key mask; the same function as attention_forward up to rounding. The default throws a
  /// pg::Error: only the CPU has this kernel.
  virtual void attention_linear_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const AttentionParams& p, Tensor& out);
  /// Its backward: dq is overwritten, dk and dv must be zero on entry.
  virtual void attention_linear_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const AttentionParams& p, Tensor& dq,
                                         Tensor& dk, Tensor& dv);
  /// The linear path's recurrent form, for decoding: the t tokens of q, k [B,H,t,d], v [B,H,t,e]
  /// at absolute positions first_position ... in order, each adding phi_k(k) v^T to state
  /// [B,H,D,e] (contiguous) and then reading out [B,H,t,e] = r * phi_q(scale q) . state (causal:
  /// a token sees itself). N is `keys`, or with n_visible the position + 1. Default: pg::Error.
  virtual void attention_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const AttentionParams& p, int64_t first_position, int64_t keys,
                                   Tensor& state, Tensor& out);
};

/// The backend serving `device`; throws pg::Error when that device is not available.
Backend& backend_for(Device device);
/// Registers the backend of a device type (device backends call this when they load).
void register_backend(DeviceType type, Backend* backend);

/// Sets the number of threads for OpenMP regions and for OpenBLAS (default: all cores).
void set_num_threads(int n);
/// The number of threads kernels use.
int get_num_threads();

}  // namespace pg
