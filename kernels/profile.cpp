#include "kernels/profile.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <map>
#include <mutex>

#include "kernels/backend.h"

namespace pg::profile {

namespace {

// Only the recording thread's calls count: the prefetcher's thread makes tensors too, while the
// training thread runs, and its time is not the step's.
thread_local bool t_recording = false;
std::mutex g_mutex;
std::map<std::pair<std::string, std::string>, Entry> g_entries;

// Kernels that call other kernels through backend_for count once, as the outermost call.
thread_local int t_depth = 0;

// Times one kernel call from construction to destruction.
class Timed {
 public:
  Timed(const char* category, std::string name)
      : category_(category),
        name_(std::move(name)),
        cpu0_(process_cpu_seconds()),
        wall0_(std::chrono::steady_clock::now()) {
    ++t_depth;
  }
  ~Timed() {
    if (--t_depth > 0) return;
    const double wall =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0_)
            .count();
    const double cpu = 1e3 * (process_cpu_seconds() - cpu0_);
    std::lock_guard lock(g_mutex);
    Entry& e = g_entries[{category_, name_}];
    e.category = category_;
    e.name = name_;
    e.calls += 1;
    e.wall_ms += wall;
    e.cpu_ms += cpu;
  }
  Timed(const Timed&) = delete;
  Timed& operator=(const Timed&) = delete;

 private:
  const char* category_;
  std::string name_;
  double cpu0_;
  std::chrono::steady_clock::time_point wall0_;
};

const char* unary_name(UnaryOp op) {
  static const char* const names[] = {
      "neg",  "exp",        "log",        "sqrt",        "abs",       "sign",
      "tanh", "sigmoid",    "relu",       "relu_mask",   "gelu_tanh", "gelu_erf",
      "pow",  "add_scalar", "mul_scalar", "rsub_scalar", "round_bf16"};
  static_assert(std::size(names) == static_cast<size_t>(UnaryOp::RoundBf16) + 1);
  return names[static_cast<int>(op)];
}

const char* binary_name(BinaryOp op) {
  static const char* const names[] = {"add",
                                      "sub",
                                      "mul",
                                      "div",
                                      "maximum",
                                      "minimum",
                                      "eq",
                                      "ne",
                                      "gt",
                                      "lt",
                                      "ge",
                                      "le",
                                      "gelu_tanh_backward",
                                      "gelu_erf_backward"};
  static_assert(std::size(names) == static_cast<size_t>(BinaryOp::GeluErfBackward) + 1);
  return names[static_cast<int>(op)];
}

const char* reduce_name(ReduceOp op) {
  static const char* const names[] = {"sum", "max", "min", "argmax"};
  static_assert(std::size(names) == static_cast<size_t>(ReduceOp::ArgMax) + 1);
  return names[static_cast<int>(op)];
}

// "n" when a matrix operand's rows are contiguous, "t" when it is read transposed.
const char* layout(const Tensor& t) { return t.strides().back() == 1 ? "n" : "t"; }

// A binary op's name with whether an operand is broadcast (a stride-0 view) or strided.
std::string elementwise_name(const char* op, std::initializer_list<const Tensor*> in) {
  std::string name = op;
  for (const Tensor* t : in) {
    if (std::find(t->strides().begin(), t->strides().end(), 0) != t->strides().end())
      return name + " (broadcast)";
    if (!t->is_contiguous()) return name + " (strided)";
  }
  return name;
}

// Forwards every call to the CPU backend, timed.
class RecordingBackend final : public Backend {
 public:
  explicit RecordingBackend(Backend& inner) : in_(inner) {}

  void fill(Tensor& out, double value) override {
    Timed t("copy & fill", "fill");
    in_.fill(out, value);
  }
  void copy(const Tensor& src, Tensor& dst) override {
    Timed t("copy & fill", src.dtype() != dst.dtype() ? "copy (convert)"
                           : src.is_contiguous()      ? "copy"
                                                      : "copy (strided source)");
    in_.copy(src, dst);
  }
  void arange(Tensor& out, double start, double step) override {
    Timed t("copy & fill", "arange");
    in_.arange(out, start, step);
  }
  void from_host(const void* src, Tensor& dst) override {
    Timed t("copy & fill", "from_host");
    in_.from_host(src, dst);
  }
  void to_host(const Tensor& src, void* dst) override {
    Timed t("copy & fill", "to_host");
    in_.to_host(src, dst);
  }
  void unary(UnaryOp op, const Tensor& x, Tensor& out, double scalar) override {
    Timed t("element-wise", elementwise_name(unary_name(op), {&x}));
    in_.unary(op, x, out, scalar);
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override {
    Timed t("element-wise", elementwise_name(binary_name(op), {&a, &b}));
    in_.binary(op, a, b, out);
  }
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out) override {
    Timed t("element-wise", "where");
    in_.where(cond, a, b, out);
  }
  void reduce(ReduceOp op, const Tensor& x, Tensor& out) override {
    Timed t("reduction", std::string(reduce_name(op)) + " " + shape_str(x.shape()) + " -> " +
                             shape_str(out.shape()));
    in_.reduce(op, x, out);
  }
  void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool accumulate) override {
    // [B] M x K @ K x N, with each operand's layout (t: read transposed).
    const int64_t batch = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
    std::string name = std::to_string(batch) + " x " + std::to_string(m) + "x" + std::to_string(k) +
                       " @ " + std::to_string(k) + "x" + std::to_string(n) + " " + layout(a) +
                       layout(b) + (accumulate ? " +=" : "");
    Timed t("GEMM", std::move(name));
    in_.matmul(a, b, out, accumulate);
  }
  void index_select_rows(const Tensor& weight, const Tensor& index, Tensor& out) override {
    Timed t("embedding", "index_select_rows");
    in_.index_select_rows(weight, index, out);
  }
  void index_add_rows(const Tensor& index, const Tensor& src, Tensor& out) override {
    Timed t("embedding", "index_add_rows");
    in_.index_add_rows(index, src, out);
  }
  void softmax(const Tensor& x, Tensor& out, bool log) override {
    Timed t("softmax & cross-entropy", log ? "log_softmax" : "softmax");
    in_.softmax(x, out, log);
  }
  void softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx, bool log) override {
    Timed t("softmax & cross-entropy", log ? "log_softmax backward" : "softmax backward");
    in_.softmax_backward(dy, y, dx, log);
  }
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  Tensor& out, Tensor& mean, Tensor& rstd) override {
    Timed t("layer norm", "layer_norm");
    in_.layer_norm(x, weight, bias, eps, out, mean, rstd);
  }
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, Tensor& dx, Tensor& dweight,
                           Tensor& dbias) override {
    Timed t("layer norm", "layer_norm backward");
    in_.layer_norm_backward(dy, x, weight, mean, rstd, dx, dweight, dbias);
  }
  void cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                     double label_smoothing, Tensor& loss, Tensor& lse) override {
    Timed t("softmax & cross-entropy", "cross_entropy");
    in_.cross_entropy(logits, target, ignore_index, label_smoothing, loss, lse);
  }
  void cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& target,
                              const Tensor& lse, int64_t ignore_index, double label_smoothing,
                              Tensor& dlogits) override {
    Timed t("softmax & cross-entropy", "cross_entropy backward");
    in_.cross_entropy_backward(grad, logits, target, lse, ignore_index, label_smoothing, dlogits);
  }
  void adam_update(const std::vector<AdamParam>& params) override {
    Timed t("optimizer", "adam_update");
    in_.adam_update(params);
  }
  void sgd_update(const std::vector<SgdParam>& params) override {
    Timed t("optimizer", "sgd_update");
    in_.sgd_update(params);
  }
  void sum_of_squares(const std::vector<Tensor>& xs, Tensor& out) override {
    Timed t("optimizer", "sum_of_squares (gradient norm)");
    in_.sum_of_squares(xs, out);
  }
  void scale(const std::vector<Tensor>& xs, double scale,
             const std::vector<Tensor>& outs) override {
    Timed t("optimizer", "scale (gradient clipping)");
    in_.scale(xs, scale, outs);
  }
  void dropout_mask(Tensor& out, double keep, uint64_t key, uint64_t first_index) override {
    Timed t("element-wise", "dropout_mask");
    in_.dropout_mask(out, keep, key, first_index);
  }
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                         const AttentionParams& p, Tensor& out, Tensor& lse,
                         Tensor& frob_sq) override {
    Timed t("attention", "fused forward");
    in_.attention_forward(q, k, v, key_mask, p, out, lse, frob_sq);
  }
  void attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& key_mask, const Tensor& lse, const AttentionParams& p,
                          Tensor& dq, Tensor& dk, Tensor& dv, Tensor& grad_frob_sq) override {
    Timed t("attention", "fused backward");
    in_.attention_backward(dout, q, k, v, key_mask, lse, p, dq, dk, dv, grad_frob_sq);
  }
  void attention_linear_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const AttentionParams& p, Tensor& out) override {
    Timed t("attention", "linear forward");
    in_.attention_linear_forward(q, k, v, p, out);
  }
  void attention_linear_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const AttentionParams& p, Tensor& dq, Tensor& dk,
                                 Tensor& dv) override {
    Timed t("attention", "linear backward");
    in_.attention_linear_backward(dout, q, k, v, p, dq, dk, dv);
  }
  void attention_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionParams& p, int64_t first_position, int64_t keys,
                           Tensor& state, Tensor& out) override {
    Timed t("attention", "recurrent");
    in_.attention_recurrent(q, k, v, p, first_position, keys, state, out);
  }

 private:
  Backend& in_;
};

}  // namespace

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

void reset() {
  std::lock_guard lock(g_mutex);
  g_entries.clear();
}

void record(bool on) { t_recording = on; }

bool recording() { return t_recording; }

std::vector<Entry> entries() {
  std::lock_guard lock(g_mutex);
  std::vector<Entry> out;
  for (auto& [key, e] : g_entries) out.push_back(e);
  std::sort(out.begin(), out.end(),
            [](const Entry& a, const Entry& b) { return a.wall_ms > b.wall_ms; });
  return out;
}

Backend& recording_backend(Backend& cpu) {
  static RecordingBackend recorder(cpu);
  return recorder;
}

}  // namespace pg::profile
