// CPU kernels against naive references written here: matmul (every layout BLAS can and cannot
// read, batched and broadcast), reductions (every path: per-output, split, column sums),
// element-wise ops with broadcasting and strides, and the row kernels of neural networks.
// Sizes above 32768 elements make the parallel paths run.
#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "device_check.h"
#include "helpers.h"
#include "kernels/ops.h"

using namespace pg;
using pgt::Layout;

namespace {

constexpr Layout kC = Layout::Contiguous, kT = Layout::Transposed, kS = Layout::Stepped;

// Unit roundoff of a dtype.
double unit_roundoff(DType dt) { return dt == DType::F32 ? 0x1.0p-24 : 0x1.0p-53; }

// Sets the kernel thread count for a scope, restoring the previous one.
struct ThreadScope {
  int prev = get_num_threads();
  explicit ThreadScope(int n) { set_num_threads(n); }
  ~ThreadScope() { set_num_threads(prev); }
};

// Checks c = a @ b (rank >= 2, broadcast batch) element by element against a naive product.
// The tolerance is the classic bound of a K-term dot product: 2 K u sum_k |a_ik b_kj|.
void check_matmul(const Tensor& a, const Tensor& b, const std::string& what) {
  INFO(what << ": " << shape_str(a.shape()) << " @ " << shape_str(b.shape()) << " "
            << dtype_name(a.dtype()));
  Tensor c = kernels::matmul(a, b);
  int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "test");
  Shape expected_shape = batch;
  expected_shape.insert(expected_shape.end(), {m, n});
  REQUIRE(c.shape() == expected_shape);
  REQUIRE(c.dtype() == a.dtype());
  std::vector<double> av = pgt::values(a), bv = pgt::values(b), cv = pgt::values(c);
  double u = unit_roundoff(a.dtype());
  for (int64_t bi = 0; bi < shape_numel(batch); ++bi) {
    auto idx = pgt::unravel(bi, batch);
    const double* ap = av.data() + pgt::broadcast_source(idx, ba) * m * k;
    const double* bp = bv.data() + pgt::broadcast_source(idx, bb) * k * n;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double ref = 0, mag = 0;
        for (int64_t p = 0; p < k; ++p) {
          ref += ap[i * k + p] * bp[p * n + j];
          mag += std::fabs(ap[i * k + p] * bp[p * n + j]);
        }
        double got = cv[(bi * m + i) * n + j];
        double tol = 2 * static_cast<double>(k) * u * mag + 1e-300;
        if (!(std::fabs(got - ref) <= tol)) {
          CHECK_MESSAGE(false, "c[" << bi << ", " << i << ", " << j << "] = " << got
                                    << ", expected " << ref << " (tolerance " << tol << ")");
          return;
        }
      }
  }
}

// Naive reduction of x over `dims` (keepdim layout); ArgMax returns the row-major position
// within the reduced dims, ties to the first.
std::vector<double> naive_reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
                                 bool absolute = false) {
  std::vector<double> xv = pgt::values(x);
  if (absolute)
    for (double& v : xv) v = std::fabs(v);
  Shape shape = x.shape(), out_shape = shape, red_shape;
  std::vector<bool> reduced(shape.size(), dims.empty());
  for (int64_t d : dims) reduced[d < 0 ? d + x.dim() : d] = true;
  for (size_t d = 0; d < shape.size(); ++d)
    if (reduced[d]) {
      out_shape[d] = 1;
      red_shape.push_back(shape[d]);
    }
  int64_t n_out = shape_numel(out_shape);
  std::vector<double> acc(n_out,
                          op == ReduceOp::Sum ? 0.0 : std::numeric_limits<double>::quiet_NaN());
  std::vector<double> best(n_out, 0);
  std::vector<bool> started(n_out, false);
  for (int64_t i = 0; i < static_cast<int64_t>(xv.size()); ++i) {
    auto idx = pgt::unravel(i, shape);
    std::vector<int64_t> oidx = idx, ridx;
    for (size_t d = 0; d < shape.size(); ++d)
      if (reduced[d]) {
        oidx[d] = 0;
        ridx.push_back(idx[d]);
      }
    int64_t o = pgt::ravel(oidx, out_shape), r = pgt::ravel(ridx, red_shape);
    double v = xv[i];
    if (op == ReduceOp::Sum) {
      acc[o] += v;
    } else {
      bool better = !started[o] || (op == ReduceOp::Min ? v < best[o] : v > best[o]);
      if (better) {
        best[o] = v;
        acc[o] = op == ReduceOp::ArgMax ? static_cast<double>(r) : v;
        started[o] = true;
      }
    }
  }
  return acc;
}

const char* reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
    case ReduceOp::ArgMax:
      return "argmax";
  }
  return "?";
}

void check_reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims) {
  INFO(reduce_name(op) << " over " << shape_str(dims) << " of " << shape_str(x.shape()) << " "
                       << dtype_name(x.dtype()) << (x.is_contiguous() ? "" : " (strided)"));
  Tensor out = kernels::reduce(op, x, dims, true);
  std::vector<double> ref = naive_reduce(op, x, dims);
  CHECK(out.dtype() == (op == ReduceOp::ArgMax ? DType::I64 : x.dtype()));
  if (op != ReduceOp::Sum) {
    pgt::check_close(out, ref, 0, 0, "exact");
    return;
  }
  // Sums accumulate in f64 whatever the dtype: the error is the f64 reordering plus one final
  // rounding to the output dtype.
  std::vector<double> mag = naive_reduce(ReduceOp::Sum, x, dims, true);
  std::vector<double> got = pgt::values(out);
  REQUIRE(got.size() == ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    double tol = unit_roundoff(x.dtype()) * std::fabs(ref[i]) + 1e-13 * mag[i];
    if (!(std::fabs(got[i] - ref[i]) <= tol)) {
      CHECK_MESSAGE(false, "element " << i << " is " << got[i] << ", expected " << ref[i]);
      return;
    }
  }
}

template <typename T>
T naive_binary(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::Add:
      return x + y;
    case BinaryOp::Sub:
      return x - y;
    case BinaryOp::Mul:
      return x * y;
    case BinaryOp::Div:
      return x / y;
    case BinaryOp::Maximum:
      return x > y ? x : y;
    case BinaryOp::Minimum:
      return x < y ? x : y;
    case BinaryOp::Eq:
      return x == y;
    case BinaryOp::Ne:
      return x != y;
    case BinaryOp::Gt:
      return x > y;
    case BinaryOp::Lt:
      return x < y;
    case BinaryOp::Ge:
      return x >= y;
    case BinaryOp::Le:
      return x <= y;
    case BinaryOp::GeluTanhBackward:  // not exact: checked against f64 in their own test case
    case BinaryOp::GeluErfBackward:
      break;
  }
  return 0;
}

template <typename T>
void check_binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  INFO("binary op " << static_cast<int>(op) << ": " << shape_str(a.shape()) << " "
                    << shape_str(a.strides()) << " with " << shape_str(b.shape()) << " "
                    << shape_str(b.strides()) << " " << dtype_name(a.dtype()));
  Tensor c = kernels::binary(op, a, b, "test");
  Shape shape = broadcast_shapes(a.shape(), b.shape(), "test");
  REQUIRE(c.shape() == shape);
  std::vector<T> av = a.to_vector<T>(), bv = b.to_vector<T>(), cv = c.to_vector<T>();
  for (int64_t i = 0; i < shape_numel(shape); ++i) {
    auto idx = pgt::unravel(i, shape);
    T ref = naive_binary<T>(op, av[pgt::broadcast_source(idx, a.shape())],
                            bv[pgt::broadcast_source(idx, b.shape())]);
    bool both_nan = cv[i] != cv[i] && ref != ref;  // 0 / 0
    if (!(cv[i] == ref) && !both_nan) {
      CHECK_MESSAGE(false, "element " << i << " is " << cv[i] << ", expected " << ref);
      return;
    }
  }
}

}  // namespace

TEST_CASE("matmul vs a naive triple loop: odd sizes, every operand layout, f32 and f64") {
  ThreadScope threads(2);
  struct Mkn {
    int64_t m, k, n;
  };
  const std::vector<Mkn> sizes = {{1, 1, 1},    {1, 7, 5},    {7, 1, 5},   {7, 13, 5},
                                  {5, 13, 1},   {1, 13, 1},   {13, 1, 1},  {129, 65, 33},
                                  {33, 129, 1}, {1, 64, 257}, {16, 16, 16}};
  Generator gen(11);
  for (DType dt : {DType::F32, DType::F64})
    for (const Mkn& s : sizes)
      for (Layout la : {kC, kT, kS})
        for (Layout lb : {kC, kT, kS}) {
          Tensor a = pgt::make_input({s.m, s.k}, gen, dt, la);
          Tensor b = pgt::make_input({s.k, s.n}, gen, dt, lb);
          check_matmul(a, b, std::string(pgt::layout_name(la)) + " @ " + pgt::layout_name(lb));
        }
}

TEST_CASE("matmul: batched, broadcast batch dims, stride-0 batches") {
  ThreadScope threads(2);
  Generator gen(12);
  for (DType dt : {DType::F32, DType::F64}) {
    for (Layout la : {kC, kT, kS})
      for (Layout lb : {kC, kT, kS})
        check_matmul(pgt::make_input({3, 7, 13}, gen, dt, la),
                     pgt::make_input({3, 13, 5}, gen, dt, lb), "batched");
    check_matmul(pgt::make_input({2, 1, 6, 4}, gen, dt), pgt::make_input({3, 4, 5}, gen, dt, kT),
                 "broadcast batch");
    check_matmul(pgt::make_input({6, 4}, gen, dt, kS), pgt::make_input({4, 2, 4, 5}, gen, dt),
                 "2-D @ 4-D");
    check_matmul(pgt::make_input({4, 1, 3, 4}, gen, dt, kT), pgt::make_input({1, 2, 4, 1}, gen, dt),
                 "broadcast both sides");
    Tensor a2 = pgt::make_input({5, 6}, gen, dt);
    check_matmul(a2.expand({4, 5, 6}), pgt::make_input({4, 6, 3}, gen, dt), "expanded batch");
    Tensor b2 = pgt::make_input({6, 3}, gen, dt, kT);
    check_matmul(pgt::make_input({4, 5, 6}, gen, dt, kS), b2.expand({4, 6, 3}), "expanded batch");
    // Products big enough that the batch loop hands whole products to multi-threaded BLAS.
    check_matmul(pgt::make_input({2, 130, 129}, gen, dt, kT),
                 pgt::make_input({2, 129, 131}, gen, dt), "large batched");
    // Batch with a broadcast dim in the middle (not mergeable into one batch stride).
    check_matmul(pgt::make_input({2, 1, 3, 4}, gen, dt), pgt::make_input({1, 3, 4, 2}, gen, dt),
                 "outer broadcast");
  }
  // Zero-sized dims.
  Tensor z = kernels::matmul(zeros({3, 0}), zeros({0, 4}));
  CHECK(z.shape() == Shape{3, 4});
  CHECK(z.to_vector<float>() == std::vector<float>(12, 0.0f));
  CHECK(kernels::matmul(zeros({0, 3}), zeros({3, 4})).shape() == Shape{0, 4});
}

TEST_CASE("reductions vs naive: single, multiple and all dims, strided inputs") {
  ThreadScope threads(2);
  Generator gen(21);
  const std::vector<std::vector<int64_t>> dim_sets = {{0},    {1},    {2},       {-1},
                                                      {0, 2}, {1, 2}, {0, 1, 2}, {}};
  for (DType dt : {DType::F32, DType::F64})
    for (Layout l : {kC, kT, kS}) {
      Tensor x = pgt::make_input({3, 4, 5}, gen, dt, l);
      for (const auto& dims : dim_sets) {
        check_reduce(ReduceOp::Sum, x, dims);
        check_reduce(ReduceOp::Max, x, dims);
        check_reduce(ReduceOp::Min, x, dims);
        check_reduce(ReduceOp::ArgMax, x, dims);
      }
      Tensor p = x.permute({2, 0, 1});
      check_reduce(ReduceOp::Sum, p, {1});
      check_reduce(ReduceOp::ArgMax, p, {0});
      check_reduce(ReduceOp::Max, p, {0, 2});
    }
  // Integers sum exactly.
  Tensor xi = randint(-50, 50, {6, 7}, {DType::I64}, &gen);
  for (const auto& dims : std::vector<std::vector<int64_t>>{{0}, {1}, {}}) {
    check_reduce(ReduceOp::Sum, xi, dims);
    check_reduce(ReduceOp::Max, xi.transpose(0, 1), dims);
  }
  // Ties go to the first index; NaN wins max and argmax.
  Tensor ties = from_vector<double>({1, 3, 3, 0, 2, 2, 2, 2}, {2, 4});
  CHECK(argmax(ties, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  CHECK(argmax(ties, 0).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 1});
  double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor withnan = from_vector<double>({1, nan, 3}, {3});
  CHECK(std::isnan(max(withnan).item()));
  CHECK(argmax(withnan, 0).item() == 1);
  // Empty reductions.
  CHECK(sum(zeros({0, 3}), {0}).to_vector<float>() == std::vector<float>{0, 0, 0});
  CHECK_PG_ERROR(max(zeros({0, 3}), 0), "max", "size 0");
}

TEST_CASE("reductions vs naive on inputs large enough for the parallel paths") {
  ThreadScope threads(2);
  Generator gen(22);
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = pgt::make_input({300, 200}, gen, dt);  // 60000 elements
    for (const auto& dims : std::vector<std::vector<int64_t>>{{0}, {1}, {}}) {
      check_reduce(ReduceOp::Sum, x, dims);  // {0}: the column-sum fast path
      check_reduce(ReduceOp::Max, x, dims);
      check_reduce(ReduceOp::ArgMax, x, dims);
    }
    // Transposed: every reduction is strided; all dims splits one reduction across threads.
    Tensor t = pgt::make_input({300, 200}, gen, dt, kT);
    for (const auto& dims : std::vector<std::vector<int64_t>>{{0}, {1}, {}}) {
      check_reduce(ReduceOp::Sum, t, dims);
      check_reduce(ReduceOp::Min, t, dims);
      check_reduce(ReduceOp::ArgMax, t, dims);
    }
    // Few long rows; a column sum whose width is not a multiple of the 256-column block.
    check_reduce(ReduceOp::Sum, pgt::make_input({3, 20000}, gen, dt, kS), {1});
    check_reduce(ReduceOp::Sum, pgt::make_input({150, 301}, gen, dt), {0});
    check_reduce(ReduceOp::Sum, pgt::make_input({40, 30, 50}, gen, dt), {0});
    check_reduce(ReduceOp::Sum, pgt::make_input({7, 3}, gen, dt), {0});
    check_reduce(ReduceOp::Max, pgt::make_input({20, 40, 50}, gen, dt, kS), {0, 2});
  }
  // Ties across the threads' parts still go to the first index.
  Tensor same = full({300, 200}, 1.0, {DType::F64}).transpose(0, 1);
  CHECK(kernels::reduce(ReduceOp::ArgMax, same, {}, false).item() == 0);
  CHECK(argmax(same, 1).to_vector<int64_t>() == std::vector<int64_t>(200, 0));
  // f32 sums accumulate in f64: 100000 x 0.1f summed in f32 would drift by ~1.
  Tensor tenth = full({100000}, 0.1, {DType::F32});
  double exact = 100000.0 * static_cast<double>(0.1f);
  CHECK(std::fabs(sum(tenth).item() - exact) < 1e-3);
  CHECK(std::fabs(sum(tenth.reshape({100, 1000}), {0}).select(0, 7).item() - exact / 1000) < 1e-5);
  CHECK(std::fabs(sum(tenth.reshape({1000, 100}).transpose(0, 1)).item() - exact) < 1e-3);
}

TEST_CASE("element-wise binary ops vs naive: broadcasting and strided operands") {
  ThreadScope threads(2);
  Generator gen(31);
  struct Pair {
    Shape a;
    Layout la;
    Shape b;
    Layout lb;
  };
  const std::vector<Pair> pairs = {
      {{3, 4}, kC, {3, 4}, kC},
      {{3, 1, 4}, kC, {2, 4}, kC},
      {{4}, kS, {2, 3, 4}, kT},
      {{2, 1}, kC, {1, 3}, kC},
      {{}, kC, {3, 4}, kT},
      {{3, 4}, kS, {}, kC},
      {{5, 6}, kT, {5, 6}, kS},
      {{2, 3, 4}, kT, {2, 1, 4}, kS},
      {{40, 1, 300}, kC, {5, 300}, kS},
      {{300, 200}, kT, {300, 200}, kC},
      {{300, 200}, kS, {200}, kC},
      {{300, 1}, kC, {300, 200}, kT},
  };
  const BinaryOp float_ops[] = {BinaryOp::Add,     BinaryOp::Sub,     BinaryOp::Mul, BinaryOp::Div,
                                BinaryOp::Maximum, BinaryOp::Minimum, BinaryOp::Eq,  BinaryOp::Ne,
                                BinaryOp::Gt,      BinaryOp::Lt,      BinaryOp::Ge,  BinaryOp::Le};
  for (const Pair& p : pairs) {
    // Coarse values make ties (for the comparisons) common.
    pgt::Range coarse{-2, 2};
    Tensor a64 = pgt::make_input(p.a, gen, DType::F64, p.la, coarse);
    Tensor b64 = pgt::make_input(p.b, gen, DType::F64, p.lb, coarse);
    auto round_half = [](const Tensor& t) {
      NoGradGuard ng;
      return t.to(DType::I64).to(DType::F64) * 0.5;  // multiples of 0.5
    };
    Tensor ra = round_half(a64 * 4.0), rb = round_half(b64 * 4.0);
    for (BinaryOp op : float_ops) {
      check_binary<double>(op, a64, b64);
      check_binary<double>(op, ra, rb);
      check_binary<float>(op, a64.to(DType::F32), b64.to(DType::F32));
      if (op != BinaryOp::Div)
        check_binary<int64_t>(op, (a64 * 10.0).to(DType::I64), (b64 * 10.0).to(DType::I64));
    }
  }
  // The public ops use the same kernels.
  Tensor a = from_vector<double>({1, 2, 3}, {3, 1});
  Tensor b = from_vector<double>({10, 20}, {2});
  CHECK((a + b).to_vector<double>() == std::vector<double>{11, 21, 12, 22, 13, 23});
  CHECK(gt(a, from_vector<double>({2}, {1})).to_vector<double>() == std::vector<double>{0, 0, 1});
  CHECK(le(a, a).to_vector<double>() == std::vector<double>{1, 1, 1});
}

TEST_CASE("element-wise unary ops vs the standard library") {
  ThreadScope threads(2);
  Generator gen(32);
  struct U {
    const char* name;
    std::function<Tensor(const Tensor&)> op;
    std::function<double(double)> ref;
    bool positive;
  };
  const double k = std::sqrt(2.0 / M_PI);
  const std::vector<U> ops = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double v) { return -v; }, false},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double v) { return std::exp(v); }, false},
      {"log", [](const Tensor& x) { return log(x); }, [](double v) { return std::log(v); }, true},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); },
       true},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double v) { return std::fabs(v); }, false},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double v) { return std::tanh(v); },
       false},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); },
       [](double v) { return 1 / (1 + std::exp(-v)); }, false},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double v) { return v > 0 ? v : 0; },
       false},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, GeluApprox::Tanh); },
       [k](double v) { return 0.5 * v * (1 + std::tanh(k * (v + 0.044715 * v * v * v))); }, false},
      {"gelu erf", [](const Tensor& x) { return gelu(x, GeluApprox::None); },
       [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }, false},
      {"gelu tanh grad",
       [](const Tensor& x) {
         return kernels::binary(BinaryOp::GeluTanhBackward, ones({}, {x.dtype()}), x, "gelu");
       },
       [k](double v) {
         double t = std::tanh(k * (v + 0.044715 * v * v * v));
         return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v);
       },
       false},
      {"gelu erf grad",
       [](const Tensor& x) {
         return kernels::binary(BinaryOp::GeluErfBackward, ones({}, {x.dtype()}), x, "gelu");
       },
       [](double v) {
         return 0.5 * (1 + std::erf(v / std::sqrt(2.0))) +
                v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
       },
       false},
      {"pow 2", [](const Tensor& x) { return pow(x, 2); }, [](double v) { return v * v; }, false},
      {"pow 3", [](const Tensor& x) { return pow(x, 3); }, [](double v) { return v * v * v; },
       false},
      {"pow 5", [](const Tensor& x) { return pow(x, 5); }, [](double v) { return std::pow(v, 5); },
       false},
      {"pow -1", [](const Tensor& x) { return pow(x, -1); }, [](double v) { return 1 / v; }, true},
      {"pow 0.5", [](const Tensor& x) { return pow(x, 0.5); },
       [](double v) { return std::sqrt(v); }, true},
      {"pow 2.5", [](const Tensor& x) { return pow(x, 2.5); },
       [](double v) { return std::pow(v, 2.5); }, true},
      {"pow 0", [](const Tensor& x) { return pow(x, 0); }, [](double) { return 1.0; }, false},
      {"x + 1.5", [](const Tensor& x) { return x + 1.5; }, [](double v) { return v + 1.5; }, false},
      {"x * -3", [](const Tensor& x) { return x * -3.0; }, [](double v) { return v * -3; }, false},
      {"2 - x", [](const Tensor& x) { return 2.0 - x; }, [](double v) { return 2 - v; }, false},
  };
  for (const U& u : ops)
    for (DType dt : {DType::F32, DType::F64})
      for (Layout l : {kC, kT, kS})
        for (Shape shape : {Shape{7, 9}, Shape{220, 160}}) {
          INFO(u.name << " " << dtype_name(dt) << " " << pgt::layout_name(l) << " "
                      << shape_str(shape));
          pgt::Range r = u.positive ? pgt::Range{0.1, 3} : pgt::Range{-4, 4};
          Tensor x = pgt::make_input(shape, gen, dt, l, r);
          std::vector<double> ref;
          for (double v : pgt::values(x)) ref.push_back(u.ref(v));
          double tol = dt == DType::F32 ? 4e-7 : 1e-14;
          pgt::check_close(u.op(x), ref, tol, tol, u.name);
        }
}

TEST_CASE("GELU backward: g * gelu'(x) in one pass vs f64, broadcast and strided operands") {
  ThreadScope threads(2);
  Generator gen(33);
  const double k = std::sqrt(2.0 / M_PI);
  auto tanh_grad = [k](double v) {
    double t = std::tanh(k * (v + 0.044715 * v * v * v));
    return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v);
  };
  auto erf_grad = [](double v) {
    return 0.5 * (1 + std::erf(v / std::sqrt(2.0))) +
           v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
  };
  struct Pair {
    Shape g;
    Layout lg;
    Shape x;
    Layout lx;
  };
  const std::vector<Pair> pairs = {{{300, 200}, kC, {300, 200}, kC},
                                   {{300, 200}, kT, {300, 200}, kS},
                                   {{}, kC, {7, 9}, kT},
                                   {{5, 1}, kC, {5, 6}, kC}};
  for (DType dt : {DType::F32, DType::F64})
    for (const Pair& p : pairs)
      for (bool tanh_form : {true, false}) {
        INFO(dtype_name(dt) << " " << shape_str(p.g) << " " << shape_str(p.x)
                            << (tanh_form ? " tanh" : " erf"));
        Tensor g = pgt::make_input(p.g, gen, dt, p.lg, {-3, 3});
        Tensor x = pgt::make_input(p.x, gen, dt, p.lx, {-6, 6});
        BinaryOp op = tanh_form ? BinaryOp::GeluTanhBackward : BinaryOp::GeluErfBackward;
        Tensor dx = kernels::binary(op, g, x, "gelu");
        Shape shape = broadcast_shapes(g.shape(), x.shape(), "test");
        std::vector<double> gv = pgt::values(g), xv = pgt::values(x), ref;
        for (int64_t i = 0; i < shape_numel(shape); ++i) {
          auto idx = pgt::unravel(i, shape);
          double xi = xv[pgt::broadcast_source(idx, x.shape())];
          ref.push_back(gv[pgt::broadcast_source(idx, g.shape())] *
                        (tanh_form ? tanh_grad(xi) : erf_grad(xi)));
        }
        // |g| <= 3 times the derivative's own bound (4e-7 in f32, above).
        double tol = dt == DType::F32 ? 1.2e-6 : 3e-14;
        pgt::check_close(dx, ref, tol, tol, "gelu backward");
        // The CUDA twin, against the same f64 reference: forward and backward.
        if (pgt::have_cuda()) {
          Device gpu = Device::cuda();
          Tensor xg = pgt::same_layout_on(x, gpu);
          pgt::check_close(kernels::binary(op, pgt::same_layout_on(g, gpu), xg, "gelu"), ref, tol,
                           tol, "gelu backward on the GPU");
          std::vector<double> fwd;
          for (double v : xv)
            fwd.push_back(tanh_form ? 0.5 * v * (1 + std::tanh(k * (v + 0.044715 * v * v * v)))
                                    : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
          double ftol = dt == DType::F32 ? 4e-7 : 1e-14;
          pgt::check_close(gelu(xg, tanh_form ? GeluApprox::Tanh : GeluApprox::None), fwd, ftol,
                           ftol, "gelu on the GPU");
        }
      }
  // Integer tensors have no gradient.
  Tensor i = arange(0, 4, 1, {DType::I64});
  CHECK_PG_ERROR(kernels::binary(BinaryOp::GeluTanhBackward, i, i, "gelu"), "gelu", "integer");
}

TEST_CASE("softmax and log_softmax vs naive f64") {
  ThreadScope threads(2);
  Generator gen(41);
  for (DType dt : {DType::F32, DType::F64})
    for (Shape shape : {Shape{7, 13}, Shape{3, 4, 5}, Shape{300, 200}, Shape{1}})
      for (double scale : {1.0, 60.0}) {
        Tensor x = pgt::make_input(shape, gen, dt, kT) * scale;
        for (int64_t dim : {int64_t{-1}, int64_t{0}}) {
          INFO(dtype_name(dt) << " " << shape_str(shape) << " x" << scale << " dim " << dim);
          std::vector<double> xv = pgt::values(x);
          int64_t d = dim < 0 ? dim + x.dim() : dim, len = shape[d];
          int64_t inner = 1;
          for (size_t i = d + 1; i < shape.size(); ++i) inner *= shape[i];
          std::vector<double> sm(xv.size()), lsm(xv.size());
          for (int64_t base = 0; base < static_cast<int64_t>(xv.size()); ++base) {
            if ((base / inner) % len != 0) continue;  // first element of each line along d
            double mx = -INFINITY, s = 0;
            for (int64_t j = 0; j < len; ++j) mx = std::max(mx, xv[base + j * inner]);
            for (int64_t j = 0; j < len; ++j) s += std::exp(xv[base + j * inner] - mx);
            for (int64_t j = 0; j < len; ++j) {
              sm[base + j * inner] = std::exp(xv[base + j * inner] - mx) / s;
              lsm[base + j * inner] = xv[base + j * inner] - mx - std::log(s);
            }
          }
          double tol = dt == DType::F32 ? 2e-6 : 1e-13;
          pgt::check_close(softmax(x, dim), sm, tol, tol, "softmax");
          // x - logsumexp(x) cancels: its error scales with the inputs' magnitude.
          double mag = 1;
          for (double v : xv) mag = std::max(mag, std::fabs(v));
          pgt::check_close(log_softmax(x, dim), lsm, tol * mag, tol, "log_softmax");
        }
      }
  // Masked entries (-inf) get weight 0.
  Tensor m = from_vector<double>({1, -INFINITY, 2, -INFINITY}, {1, 4});
  std::vector<double> sm = pgt::values(softmax(m, 1));
  double e = std::exp(1.0) + std::exp(2.0);
  pgt::check_close(sm, {std::exp(1.0) / e, 0, std::exp(2.0) / e, 0}, 1e-15, 1e-15, "masked");
  CHECK(log_softmax(m, 1).to_vector<double>()[1] == -INFINITY);
}

TEST_CASE("layer_norm forward vs naive f64") {
  ThreadScope threads(2);
  Generator gen(42);
  for (DType dt : {DType::F32, DType::F64})
    for (Shape shape : {Shape{7, 13}, Shape{2, 3, 16}, Shape{400, 100}})
      for (bool affine : {false, true})
        for (double eps : {1e-5, 0.5}) {
          INFO(dtype_name(dt) << " " << shape_str(shape) << (affine ? " affine" : "") << " eps "
                              << eps);
          int64_t c = shape.back();
          Tensor x = pgt::make_input(shape, gen, dt, kS) * 3.0 + 1.0;
          Tensor w = affine ? pgt::make_input({c}, gen, dt) : Tensor();
          Tensor b = affine ? pgt::make_input({c}, gen, dt) : Tensor();
          std::vector<double> xv = pgt::values(x), ref(xv.size());
          std::vector<double> wv = affine ? pgt::values(w) : std::vector<double>(c, 1.0);
          std::vector<double> bv = affine ? pgt::values(b) : std::vector<double>(c, 0.0);
          for (size_t r = 0; r < xv.size() / c; ++r) {
            double mu = 0, var = 0;
            for (int64_t j = 0; j < c; ++j) mu += xv[r * c + j] / static_cast<double>(c);
            for (int64_t j = 0; j < c; ++j)
              var += (xv[r * c + j] - mu) * (xv[r * c + j] - mu) / static_cast<double>(c);
            for (int64_t j = 0; j < c; ++j)
              ref[r * c + j] = (xv[r * c + j] - mu) / std::sqrt(var + eps) * wv[j] + bv[j];
          }
          double tol = dt == DType::F32 ? 4e-6 : 1e-13;
          pgt::check_close(layer_norm(x, w, b, eps), ref, tol, tol, "layer_norm");
        }
}

TEST_CASE("cross_entropy forward vs naive f64") {
  ThreadScope threads(2);
  Generator gen(43);
  struct Case {
    Shape shape;
    int64_t ignore;
    double smoothing;
  };
  const std::vector<Case> cases = {{{9, 6}, -100, 0},       {{9, 6}, -100, 0.1},
                                   {{9, 6}, 2, 0},          {{2, 5, 7}, -100, 0.2},
                                   {{400, 100}, -100, 0.1}, {{1, 1}, -100, 0}};
  for (DType dt : {DType::F32, DType::F64})
    for (const Case& cs : cases) {
      INFO(dtype_name(dt) << " " << shape_str(cs.shape) << " ignore " << cs.ignore << " smoothing "
                          << cs.smoothing);
      Tensor logits = pgt::make_input(cs.shape, gen, dt, kT) * 4.0;
      int64_t c = cs.shape.back();
      Shape lead(cs.shape.begin(), cs.shape.end() - 1);
      Tensor target = randint(0, c, lead, {DType::I64}, &gen);
      int64_t* tp = target.data<int64_t>();
      for (int64_t i = 0; i < target.numel(); i += 4)
        tp[i] = cs.ignore == -100 && i % 8 ? -100 : tp[i];
      std::vector<double> lv = pgt::values(logits);
      double total = 0;
      int64_t kept = 0;
      for (int64_t i = 0; i < target.numel(); ++i) {
        if (tp[i] == cs.ignore) continue;
        double mx = -INFINITY, s = 0, mean_x = 0;
        for (int64_t j = 0; j < c; ++j) mx = std::max(mx, lv[i * c + j]);
        for (int64_t j = 0; j < c; ++j) {
          s += std::exp(lv[i * c + j] - mx);
          mean_x += lv[i * c + j] / static_cast<double>(c);
        }
        double lse = mx + std::log(s);
        total += (1 - cs.smoothing) * (lse - lv[i * c + tp[i]]) + cs.smoothing * (lse - mean_x);
        ++kept;
      }
      REQUIRE(kept > 0);
      double tol = dt == DType::F32 ? 2e-6 : 1e-13;
      pgt::check_close(cross_entropy(logits, target, cs.ignore, cs.smoothing),
                       {total / static_cast<double>(kept)}, tol, tol, "cross_entropy");
    }
}

TEST_CASE("embedding gather and its scatter-add backward vs naive") {
  ThreadScope threads(2);
  Generator gen(44);
  for (DType dt : {DType::F32, DType::F64})
    for (auto [rows, d, n] :
         std::vector<std::tuple<int64_t, int64_t, int64_t>>{{7, 3, 10}, {50, 256, 300}}) {
      INFO(dtype_name(dt) << " " << rows << "x" << d << " n=" << n);
      Tensor w = pgt::make_input({rows, d}, gen, dt, kT, pgt::kAny, true);
      Tensor idx = randint(0, rows / 2, {n}, {DType::I64}, &gen);  // many repeats
      Tensor out = embedding(w, idx.reshape({n / 2, 2}));
      CHECK(out.shape() == Shape{n / 2, 2, d});
      std::vector<double> wv = pgt::values(w), ov = pgt::values(out);
      std::vector<int64_t> iv = idx.to_vector<int64_t>();
      std::vector<double> ref;
      for (int64_t i : iv)
        for (int64_t j = 0; j < d; ++j) ref.push_back(wv[i * d + j]);
      pgt::check_close(ov, ref, 0, 0, "gather");
      Tensor g = pgt::make_input(out.shape(), gen, dt);
      out.backward(g);
      std::vector<double> gv = pgt::values(g), dref(rows * d, 0.0);
      for (int64_t k = 0; k < n; ++k)
        for (int64_t j = 0; j < d; ++j) dref[iv[k] * d + j] += gv[k * d + j];
      double tol = dt == DType::F32 ? 1e-5 : 1e-13;
      pgt::check_close(w.grad(), dref, tol, tol, "scatter-add");
    }
}

TEST_CASE("one and two threads give the same results") {
  Generator gen(51);
  Tensor a = pgt::make_input({256, 256}, gen, DType::F64);
  Tensor b = pgt::make_input({256, 256}, gen, DType::F64, kT);
  Tensor af = a.to(DType::F32), bf = b.to(DType::F32);
  Tensor big = pgt::make_input({400, 300}, gen, DType::F64, kT);
  auto run = [&](int n) {
    ThreadScope threads(n);
    CHECK(get_num_threads() == n);
    // BLAS may order its sums differently per thread count: both must meet the error bound.
    check_matmul(a, b, std::to_string(n) + " threads");
    check_matmul(af, bf, std::to_string(n) + " threads");
    return std::vector<Tensor>{sum(big),
                               sum(big, {0}),
                               sum(big.contiguous(), {0}),
                               sum(big.contiguous(), {1}),
                               max(big, 1),
                               softmax(big, -1),
                               argmax(big, 0),
                               layer_norm(big, {}, {})};
  };
  std::vector<Tensor> one = run(1), two = run(2);
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    pgt::check_close(two[i], pgt::values(one[i]), 1e-13, 1e-13, "threads");
  }
  CHECK_PG_ERROR(set_num_threads(0), "set_num_threads", "at least 1");
  CHECK_PG_ERROR(set_num_threads(-2), "set_num_threads", "-2");
}

TEST_CASE("forward values of mean, where, masked_fill, cat, stack, sum_to, max") {
  Generator gen(61);
  Tensor x = pgt::make_input({3, 4, 5}, gen, DType::F64, kT);
  for (const auto& dims : std::vector<std::vector<int64_t>>{{0}, {1, 2}, {-1}, {}}) {
    INFO("mean over " << shape_str(dims));
    std::vector<double> s = naive_reduce(ReduceOp::Sum, x, dims);
    int64_t count = 1;
    for (int64_t d = 0; d < 3; ++d)
      if (dims.empty() || std::find(dims.begin(), dims.end(), d) != dims.end() ||
          std::find(dims.begin(), dims.end(), d - 3) != dims.end())
        count *= x.size(d);
    for (double& v : s) v /= static_cast<double>(count);
    pgt::check_close(mean(x, dims, true), s, 1e-15, 1e-14, "mean");
  }
  CHECK(mean(x, {1}).shape() == Shape{3, 5});
  CHECK(mean(x, {1}, true).shape() == Shape{3, 1, 5});

  Tensor a = pgt::make_input({2, 3}, gen), b = pgt::make_input({3}, gen, DType::F64, kS);
  Tensor cond = from_vector<double>({1, 0}, {2, 1});
  std::vector<double> av = pgt::values(a), bv = pgt::values(b), ref;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) ref.push_back(i == 0 ? av[i * 3 + j] : bv[j]);
  pgt::check_close(where(cond, a, b), ref, 0, 0, "where");
  ref.clear();
  for (int64_t i = 0; i < 6; ++i) ref.push_back(i < 3 ? -7.0 : av[i]);
  pgt::check_close(masked_fill(a, cond, -7), ref, 0, 0, "masked_fill");

  Tensor c = pgt::make_input({2, 1}, gen, DType::F64, kS);
  std::vector<double> cv = pgt::values(c);
  pgt::check_close(cat({a, c}, 1), {av[0], av[1], av[2], cv[0], av[3], av[4], av[5], cv[1]}, 0, 0,
                   "cat dim 1");
  pgt::check_close(cat({a, a.slice(0, 1, 2)}, 0),
                   {av[0], av[1], av[2], av[3], av[4], av[5], av[3], av[4], av[5]}, 0, 0, "cat 0");
  Tensor bt = b.reshape({1, 3}).expand({2, 3});
  pgt::check_close(
      stack({a, bt}, 2),
      {av[0], bv[0], av[1], bv[1], av[2], bv[2], av[3], bv[0], av[4], bv[1], av[5], bv[2]}, 0, 0,
      "stack dim 2");
  CHECK(stack({a, bt}, 0).shape() == Shape{2, 2, 3});
  pgt::check_close(sum_to(a, {1, 3}), {av[0] + av[3], av[1] + av[4], av[2] + av[5]}, 1e-15, 0,
                   "sum_to");
  pgt::check_close(sum_to(a.unsqueeze(0).expand({4, 2, 3}), {2, 1}),
                   {4 * (av[0] + av[1] + av[2]), 4 * (av[3] + av[4] + av[5])}, 1e-14, 1e-15,
                   "sum_to lead");
  CHECK(max(a).item() == *std::max_element(av.begin(), av.end()));
  std::vector<double> row_max = {std::max({av[0], av[1], av[2]}), std::max({av[3], av[4], av[5]})};
  pgt::check_close(max(a, 1), row_max, 0, 0, "max dim");
  CHECK(max(a, -1, true).shape() == Shape{2, 1});
}
