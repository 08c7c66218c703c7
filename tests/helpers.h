// Shared helpers of the core test suites: inputs in chosen layouts and value ranges, naive
// references written without the library's kernels, and checks that print what went wrong.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "nn/module.h"
#include "nn/optim.h"
#include "polygrad.h"

namespace pgt {

/// x rounded element by element with round_to_bf16, as a contiguous f32 tensor: the operand a
/// bf16 product must see.
inline pg::Tensor rounded_to_bf16(const pg::Tensor& x) {
  auto v = x.contiguous().to_vector<float>();
  for (float& f : v) f = pg::round_to_bf16(f);
  return pg::from_vector(v, x.shape());
}

using pg::DType;
using pg::Generator;
using pg::Shape;
using pg::Tensor;
using pg::TensorList;

// --- inputs -----------------------------------------------------------------------------

/// How a test input is laid out in memory.
enum class Layout {
  Contiguous,
  Transposed,  ///< a transposed view of a contiguous base (last two dims swapped)
  Stepped,     ///< every other element of a larger base along the last dim, at an offset
};

inline const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous:
      return "contiguous";
    case Layout::Transposed:
      return "transposed";
    case Layout::Stepped:
      return "stepped";
  }
  return "?";
}

/// Values drawn uniformly from [lo, hi]; with random_sign each is negated with probability 1/2.
/// With distinct, the values are instead a shuffled ladder lo, lo + 0.1, ... (no ties, so max
/// is differentiable everywhere a finite difference looks).
struct Range {
  double lo = -2, hi = 2;
  bool random_sign = false;
  bool distinct = false;
};

inline const Range kAny{-2, 2};
inline const Range kPositive{0.5, 2};
/// |x| in [0.2, 2]: keeps an eps-sized perturbation away from kinks at 0 (abs, relu).
inline const Range kAwayFromZero{0.2, 2, true};
inline const Range kDistinct{-1, 1, false, true};

/// A leaf tensor of `shape` holding values from `range`, laid out as `layout`.
inline Tensor make_input(const Shape& shape, Generator& gen, DType dt = DType::F64,
                         Layout layout = Layout::Contiguous, Range range = kAny,
                         bool requires_grad = false) {
  int64_t rank = static_cast<int64_t>(shape.size());
  if (layout == Layout::Transposed && rank < 2) layout = Layout::Contiguous;
  if (layout == Layout::Stepped && rank < 1) layout = Layout::Contiguous;
  Shape base_shape = shape;
  if (layout == Layout::Transposed) std::swap(base_shape[rank - 1], base_shape[rank - 2]);
  if (layout == Layout::Stepped) base_shape[rank - 1] = 2 * shape[rank - 1] + 1;
  int64_t n = pg::shape_numel(base_shape);
  std::vector<double> v(static_cast<size_t>(n));
  if (range.distinct) {
    for (int64_t i = 0; i < n; ++i) v[i] = range.lo + 0.1 * static_cast<double>(i);
    for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[gen.randint(0, i + 1)]);
  } else {
    for (auto& x : v) {
      x = range.lo + (range.hi - range.lo) * gen.uniform();
      if (range.random_sign && gen.uniform() < 0.5) x = -x;
    }
  }
  Tensor base = pg::from_vector<double>(v, base_shape).to(dt);
  Tensor t = base;
  if (layout == Layout::Transposed) t = base.transpose(-1, -2);
  if (layout == Layout::Stepped) t = base.slice(-1, 1, 2 * shape[rank - 1] + 1, 2);
  t = t.detach();  // a leaf with the view's strides
  if (requires_grad) t.requires_grad_(true);
  return t;
}

/// A leaf f64 tensor of standard normal values from Generator(seed), requiring grad.
inline Tensor f64_input(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return pg::randn(shape, {DType::F64}, &g).requires_grad_();
}

/// f64 values of a tensor in row-major order of its logical shape.
inline std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

// --- index arithmetic -------------------------------------------------------------------

/// Multi-index of row-major position `flat` in `shape`.
inline std::vector<int64_t> unravel(int64_t flat, const Shape& shape) {
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

/// Row-major position of a multi-index in `shape`.
inline int64_t ravel(const std::vector<int64_t>& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

/// Row-major position in `in_shape` of the element that broadcasting maps to output index `idx`.
inline int64_t broadcast_source(const std::vector<int64_t>& idx, const Shape& in_shape) {
  size_t lead = idx.size() - in_shape.size();
  int64_t flat = 0;
  for (size_t d = 0; d < in_shape.size(); ++d)
    flat = flat * in_shape[d] + (in_shape[d] == 1 ? 0 : idx[lead + d]);
  return flat;
}

// --- naive references (f64, no library math) ---------------------------------------------

/// out[i, j] = sum_k a[i, k] b[k, j] for row-major a [m, k] and b [k, n].
inline std::vector<double> naive_matmul(const std::vector<double>& a, const std::vector<double>& b,
                                        int64_t m, int64_t k, int64_t n) {
  std::vector<double> out(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += a[i * k + p] * b[p * n + j];
      out[i * n + j] = s;
    }
  return out;
}

// --- checks -----------------------------------------------------------------------------

/// Checks |actual - expected| <= atol + rtol * |expected| element-wise; reports the first miss.
inline void check_close(const std::vector<double>& actual, const std::vector<double>& expected,
                        double atol, double rtol, const std::string& what = "") {
  REQUIRE_MESSAGE(actual.size() == expected.size(),
                  what << ": size " << actual.size() << " vs expected " << expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    double tol = atol + rtol * std::fabs(expected[i]);
    bool same_nonfinite = !std::isfinite(expected[i]) && actual[i] == expected[i];
    if (!(std::fabs(actual[i] - expected[i]) <= tol) && !same_nonfinite) {
      std::ostringstream os;
      os.precision(17);
      os << what << ": element " << i << " is " << actual[i] << ", expected " << expected[i]
         << " (tolerance " << tol << ")";
      CHECK_MESSAGE(false, os.str());
      return;
    }
  }
}

inline void check_close(const Tensor& actual, const std::vector<double>& expected, double atol,
                        double rtol, const std::string& what = "") {
  check_close(values(actual), expected, atol, rtol, what);
}

/// max |a - b| / max |b| over all elements, b being the reference: the error relative to the
/// tensor's scale, so entries near zero do not dominate. An element that is NaN on either side
/// counts for neither maximum; max_rel_diff_strict counts it.
inline double max_rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  auto x = values(a), y = values(b);
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::fabs(x[i] - y[i]));
    scale = std::max(scale, std::fabs(y[i]));
  }
  return diff / std::max(scale, 1e-30);
}

/// max |a - b| / max |b| over the elements where a and b differ, b being the reference: equal
/// elements (matching infinities, NaN on both sides) are skipped, and a NaN on one side only is
/// an infinite error. Stricter than max_rel_diff, whose scale also counts the equal elements.
inline double max_rel_diff_strict(const Tensor& a, const Tensor& b) {
  auto x = values(a), y = values(b);
  REQUIRE(x.size() == y.size());
  double scale = 0, diff = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
    if (std::isnan(x[i]) || x[i] == y[i]) continue;
    scale = std::max(scale, std::fabs(y[i]));
    diff = std::max(diff, std::fabs(x[i] - y[i]));
  }
  return diff / std::max(scale, 1e-30);
}

/// The message of the pg::Error `f` throws, or a marker when it throws something else or nothing.
template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const pg::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not a pg::Error: ") + e.what() + ">";
  }
  return "<no exception>";
}

// --- training -----------------------------------------------------------------------------

/// AdamW steps (no weight decay) on one fixed batch; the loss of every step, before its update.
inline std::vector<double> overfit(pg::Module& model, const Tensor& x, const Tensor& y, int steps,
                                   double lr) {
  pg::AdamW opt({{model.parameters(), lr, 0.0}});
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    Tensor loss = pg::cross_entropy(model(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  return losses;
}

/// Every built-in attention activation at its defaults (poly as poly:3), as the golden
/// fixtures of tools/reference/make_fixtures.py name them: a new activation is compared with
/// PyTorch once it is in that script's POLICIES.
inline std::vector<std::string> builtin_specs() {
  std::vector<std::string> specs;
  for (pg::AttnActivation a : pg::attn::kBuiltinActivations)
    specs.push_back(a == pg::AttnActivation::Poly ? "poly:3" : pg::attn::activation_name(a));
  return specs;
}

// --- modules ----------------------------------------------------------------------------

/// The names of named tensors (parameters, buffers), in their order.
inline std::vector<std::string> names_of(const pg::NamedTensors& named) {
  std::vector<std::string> out;
  for (auto& [name, t] : named) out.push_back(name);
  return out;
}

/// Gradcheck of `fwd` (a forward through module `m`) in f64 with respect to x and every
/// parameter of m. gradcheck perturbs its inputs in place; the module reads the same storage,
/// so perturbing a parameter input perturbs the module.
inline void check_module_grads(pg::Module& m, const Tensor& x,
                               const std::function<Tensor(const Tensor&)>& fwd) {
  for (auto& [name, p] : m.named_parameters()) {
    INFO(name);
    REQUIRE(p.dtype() == DType::F64);
    REQUIRE(p.requires_grad());
  }
  REQUIRE(x.requires_grad());
  TensorList inputs{x};
  for (auto& p : m.parameters()) inputs.push_back(p);
  pg::GradcheckReport report =
      pg::gradcheck([&](const TensorList& in) { return fwd(in[0]); }, inputs);
  CHECK_MESSAGE(report.ok, report.message);
}

/// check_module_grads of the module's own forward.
inline void check_module_grads(pg::Module& m, const Tensor& x) {
  check_module_grads(m, x, [&](const Tensor& in) { return m(in); });
}

/// Moves every parameter away from its initial value, so that gradients with respect to norm
/// weights and biases are not those of the trivial ones/zeros initialisation.
inline void jitter_parameters(pg::Module& m, uint64_t seed) {
  Generator g(seed);
  pg::NoGradGuard no_grad;
  for (auto& [name, p] : m.named_parameters())
    p.copy_(pg::add(p, pg::mul(pg::randn(p.shape(), {p.dtype()}, &g), 0.2)));
}

}  // namespace pgt

/// Checks that `expr` throws pg::Error whose message contains every given substring.
#define CHECK_PG_ERROR(expr, ...)                                                              \
  do {                                                                                         \
    std::string pgt_msg_ = ::pgt::error_message([&] { (void)(expr); });                        \
    for (const char* pgt_part_ : {__VA_ARGS__})                                                \
      CHECK_MESSAGE(pgt_msg_.find(pgt_part_) != std::string::npos,                             \
                    #expr " should raise pg::Error containing \"" << std::string(pgt_part_)    \
                                                                  << "\"; got: " << pgt_msg_); \
  } while (0)

/// Runs pg::gradcheck and reports its message on failure.
#define CHECK_GRADCHECK(fn, inputs)                                   \
  do {                                                                \
    ::pg::GradcheckReport pgt_rep_ = ::pg::gradcheck((fn), (inputs)); \
    CHECK_MESSAGE(pgt_rep_.ok, pgt_rep_.message);                     \
  } while (0)
