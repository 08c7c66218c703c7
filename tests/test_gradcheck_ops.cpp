// Every differentiable op against central differences in f64 (pg::gradcheck), table-driven:
// each case lists its inputs (shape, layout, value range) and the function of them to check.
// Inputs come contiguous, as transposed views and as views sliced with a step, and binary ops
// are checked with broadcast shapes. Second derivatives are checked by gradchecking a function
// that returns a gradient built with create_graph.
#include <doctest/doctest.h>

#include "device_check.h"
#include "helpers.h"

using namespace pg;
using pgt::kAny;
using pgt::kAwayFromZero;
using pgt::kDistinct;
using pgt::kPositive;
using pgt::Layout;
using pgt::Range;

namespace {

using Fn = std::function<Tensor(const TensorList&)>;

struct In {
  Shape shape;
  Layout layout = Layout::Contiguous;
  Range range = kAny;
};

struct OpCase {
  std::string name;
  std::vector<In> inputs;
  Fn fn;
};

constexpr Layout kC = Layout::Contiguous, kT = Layout::Transposed, kS = Layout::Stepped;
const Layout kLayouts[] = {kC, kT, kS};

std::string describe(const OpCase& c) {
  std::ostringstream os;
  os << c.name << " (";
  for (size_t i = 0; i < c.inputs.size(); ++i)
    os << (i ? ", " : "") << shape_str(c.inputs[i].shape) << " "
       << pgt::layout_name(c.inputs[i].layout);
  os << ")";
  return os.str();
}

// Builds the inputs of a case (all f64 leaves requiring grad) and gradchecks it.
void run_cases(const std::vector<OpCase>& cases, uint64_t seed) {
  Generator gen(seed);
  for (const OpCase& c : cases) {
    TensorList inputs;
    for (const In& in : c.inputs)
      inputs.push_back(pgt::make_input(in.shape, gen, DType::F64, in.layout, in.range, true));
    INFO(describe(c));
    for (size_t i = 0; i < inputs.size(); ++i) {
      // The layout really is what the name says (size-1 dims can make any layout contiguous).
      const Shape& s = c.inputs[i].shape;
      bool wide = s.size() >= 2 && s[s.size() - 1] > 1 && s[s.size() - 2] > 1;
      if (c.inputs[i].layout == kT && wide) REQUIRE_FALSE(inputs[i].is_contiguous());
      if (c.inputs[i].layout == kS && !s.empty() && s.back() > 1)
        REQUIRE_FALSE(inputs[i].is_contiguous());
    }
    CHECK_GRADCHECK(c.fn, inputs);
    pgt::check_on_devices(c.fn, inputs, describe(c));
  }
}

// --- element-wise ---------------------------------------------------------------------

struct Unary {
  const char* name;
  Range range;
  std::function<Tensor(const Tensor&)> f;
};

const std::vector<Unary> kUnary = {
    {"neg", kAny, [](const Tensor& x) { return neg(x); }},
    {"-x", kAny, [](const Tensor& x) { return -x; }},
    {"exp", kAny, [](const Tensor& x) { return exp(x); }},
    {"log", kPositive, [](const Tensor& x) { return log(x); }},
    {"sqrt", kPositive, [](const Tensor& x) { return sqrt(x); }},
    {"abs", kAwayFromZero, [](const Tensor& x) { return abs(x); }},
    {"tanh", kAny, [](const Tensor& x) { return tanh(x); }},
    {"sigmoid", kAny, [](const Tensor& x) { return sigmoid(x); }},
    {"relu", kAwayFromZero, [](const Tensor& x) { return relu(x); }},
    {"gelu tanh", kAny, [](const Tensor& x) { return gelu(x, GeluApprox::Tanh); }},
    {"gelu erf", kAny, [](const Tensor& x) { return gelu(x, GeluApprox::None); }},
    {"pow 2", kAny, [](const Tensor& x) { return pow(x, 2); }},
    {"pow 3", kAny, [](const Tensor& x) { return pow(x, 3); }},
    {"pow 1", kAny, [](const Tensor& x) { return pow(x, 1); }},
    {"pow 0", kAny, [](const Tensor& x) { return pow(x, 0) + x; }},
    {"pow -2", kAwayFromZero, [](const Tensor& x) { return pow(x, -2); }},
    {"pow 0.5", kPositive, [](const Tensor& x) { return pow(x, 0.5); }},
    {"pow -1.5", kPositive, [](const Tensor& x) { return pow(x, -1.5); }},
    {"pow 2.7", kPositive, [](const Tensor& x) { return pow(x, 2.7); }},
    {"add scalar", kAny, [](const Tensor& x) { return add(x, 2.5); }},
    {"mul scalar", kAny, [](const Tensor& x) { return mul(x, -1.5); }},
    {"rsub", kAny, [](const Tensor& x) { return rsub(x, 3.0); }},
    {"x + s", kAny, [](const Tensor& x) { return x + 0.5; }},
    {"s + x", kAny, [](const Tensor& x) { return 0.5 + x; }},
    {"x - s", kAny, [](const Tensor& x) { return x - 0.5; }},
    {"s - x", kAny, [](const Tensor& x) { return 0.5 - x; }},
    {"x * s", kAny, [](const Tensor& x) { return x * 3.0; }},
    {"s * x", kAny, [](const Tensor& x) { return 3.0 * x; }},
    {"x / s", kAny, [](const Tensor& x) { return x / 4.0; }},
};

struct Binary {
  const char* name;
  Range b_range;
  std::function<Tensor(const Tensor&, const Tensor&)> f;
};

const Range kDenominator{0.5, 2, true};

const std::vector<Binary> kBinary = {
    {"add", kAny, [](const Tensor& a, const Tensor& b) { return add(a, b); }},
    {"a + b", kAny, [](const Tensor& a, const Tensor& b) { return a + b; }},
    {"sub", kAny, [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
    {"a - b", kAny, [](const Tensor& a, const Tensor& b) { return a - b; }},
    {"mul", kAny, [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
    {"a * b", kAny, [](const Tensor& a, const Tensor& b) { return a * b; }},
    {"div", kDenominator, [](const Tensor& a, const Tensor& b) { return div(a, b); }},
    {"a / b", kDenominator, [](const Tensor& a, const Tensor& b) { return a / b; }},
};

// (a, b) shapes and layouts every binary op is checked with: equal shapes, broadcasting both
// ways (including 0-d and size-1 dims on both sides) and non-contiguous operands.
const std::vector<std::pair<In, In>> kBinaryShapes = {
    {{{3, 4}}, {{3, 4}}},
    {{{3, 1, 4}}, {{2, 4}}},
    {{{4}}, {{2, 3, 4}}},
    {{{2, 1}}, {{1, 3}}},
    {{{}}, {{3, 4}}},
    {{{3, 4}}, {{}}},
    {{{3, 4}, kT}, {{3, 4}, kS}},
    {{{3, 4}, kS}, {{3, 4}, kT}},
    {{{3, 1, 4}, kS}, {{2, 4}, kT}},
    {{{2, 3, 4}, kT}, {{2, 1, 4}, kS}},
};

}  // namespace

TEST_CASE("gradcheck: unary and scalar element-wise ops in every layout") {
  std::vector<OpCase> cases;
  for (const Unary& u : kUnary)
    for (Layout l : kLayouts) {
      Range r = u.range;
      auto f = u.f;
      cases.push_back({u.name, {{{3, 4}, l, r}}, [f](const TensorList& x) { return f(x[0]); }});
    }
  // A 0-d input and a rank-3 input for a few.
  for (const char* name : {"exp", "tanh", "sqrt", "gelu erf"})
    for (const Unary& u : kUnary)
      if (std::string(u.name) == name) {
        auto f = u.f;
        cases.push_back(
            {u.name, {{{}, kC, u.range}}, [f](const TensorList& x) { return f(x[0]); }});
        cases.push_back(
            {u.name, {{{2, 3, 2}, kT, u.range}}, [f](const TensorList& x) { return f(x[0]); }});
      }
  run_cases(cases, 101);
}

TEST_CASE("gradcheck: binary element-wise ops with broadcasting and strided operands") {
  std::vector<OpCase> cases;
  for (const Binary& op : kBinary)
    for (auto [a, b] : kBinaryShapes) {
      b.range = op.b_range;
      auto f = op.f;
      cases.push_back({op.name, {a, b}, [f](const TensorList& x) { return f(x[0], x[1]); }});
    }
  // The same tensor on both sides (two edges into one leaf).
  cases.push_back({"x * x", {{{3, 4}, kT}}, [](const TensorList& x) { return x[0] * x[0]; }});
  cases.push_back({"x / x^2", {{{3, 4}, kS, kAwayFromZero}}, [](const TensorList& x) {
                     return x[0] / (x[0] * x[0]);
                   }});
  cases.push_back(
      {"x - x.T", {{{4, 4}}}, [](const TensorList& x) { return x[0] - x[0].transpose(0, 1); }});
  run_cases(cases, 202);
}

TEST_CASE("gradcheck: where and masked_fill") {
  Tensor cond = from_vector<double>({1, 0, 0, 1, 1, 0}, {3, 1, 2});  // broadcast over dim 1
  Tensor mask = from_vector<double>({0, 1, 1, 0}, {4});
  Tensor mask_t = from_vector<double>({1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1}, {4, 3}).transpose(0, 1);
  std::vector<OpCase> cases = {
      {"where",
       {{{3, 2, 2}}, {{3, 2, 2}}},
       [cond](const TensorList& x) { return where(pgt::here(cond), x[0], x[1]); }},
      {"where broadcast",
       {{{2, 2}, kT}, {{3, 1, 1}}},
       [cond](const TensorList& x) { return where(pgt::here(cond), x[0], x[1]); }},
      {"where strided cond",
       {{{3, 4}, kS}, {{4}}},
       [mask_t](const TensorList& x) { return where(pgt::here(mask_t), x[0], x[1]); }},
      {"masked_fill",
       {{{3, 4}, kT}},
       [mask](const TensorList& x) { return masked_fill(x[0], pgt::here(mask), -1.5); }},
      {"masked_fill strided mask",
       {{{3, 4}}},
       [mask_t](const TensorList& x) { return masked_fill(x[0], pgt::here(mask_t), 2.0); }},
  };
  run_cases(cases, 303);
}

TEST_CASE("gradcheck: matmul 2-D, batched and with broadcast batch dims") {
  auto mm = [](const TensorList& x) { return matmul(x[0], x[1]); };
  std::vector<OpCase> cases = {
      {"matmul", {{{3, 4}}, {{4, 5}}}, mm},
      {"matmul", {{{3, 4}, kT}, {{4, 5}, kS}}, mm},
      {"matmul", {{{3, 4}, kS}, {{4, 5}, kT}}, mm},
      {"matmul", {{{1, 4}}, {{4, 1}}}, mm},
      {"matmul", {{{4, 1}}, {{1, 3}, kT}}, mm},
      {"matmul", {{{2, 3, 4}}, {{2, 4, 5}}}, mm},
      {"matmul", {{{2, 3, 4}, kT}, {{2, 4, 2}, kS}}, mm},
      {"matmul", {{{2, 1, 3, 4}}, {{3, 4, 2}}}, mm},
      {"matmul", {{{3, 4}}, {{2, 4, 5}, kT}}, mm},
      {"matmul", {{{2, 3, 4}, kS}, {{4, 5}}}, mm},
      {"x @ x.T",
       {{{3, 4}}},
       [](const TensorList& x) { return matmul(x[0], x[0].transpose(0, 1)); }},
  };
  run_cases(cases, 404);
}

TEST_CASE("gradcheck: linear (bias inside the GEMM) on 2-D, 3-D, 1-D and strided operands") {
  auto lin = [](const TensorList& x) { return linear(x[0], x[1], x[2]); };
  auto nobias = [](const TensorList& x) { return linear(x[0], x[1]); };
  std::vector<OpCase> cases = {
      {"linear", {{{3, 4}}, {{5, 4}}, {{5}}}, lin},
      {"linear", {{{3, 4}, kT}, {{5, 4}, kS}, {{5}, kS}}, lin},
      {"linear", {{{3, 4}, kS}, {{5, 4}, kT}, {{5}}}, lin},
      {"linear", {{{2, 3, 4}}, {{2, 4}, kT}, {{2}}}, lin},
      // A stepped 3-D input cannot be viewed as rows: the op copies it.
      {"linear", {{{2, 3, 4}, kS}, {{3, 4}}, {{3}, kS}}, lin},
      {"linear", {{{2, 3, 4}, kT}, {{3, 4}}, {{3}}}, lin},
      {"linear", {{{4}}, {{3, 4}}, {{3}}}, lin},
      {"linear no bias", {{{2, 3, 4}, kT}, {{5, 4}, kS}}, nobias},
      {"linear no bias", {{{4}, kS}, {{1, 4}}}, nobias},
  };
  run_cases(cases, 405);
}

TEST_CASE("gradcheck: reductions") {
  std::vector<OpCase> cases = {
      {"sum all", {{{3, 4}, kT}}, [](const TensorList& x) { return sum(x[0]); }},
      {"sum dim 1", {{{2, 3, 4}}}, [](const TensorList& x) { return sum(x[0], {1}); }},
      {"sum dims 0,2 keepdim",
       {{{2, 3, 4}, kS}},
       [](const TensorList& x) {
         return sum(x[0], {0, 2}, true);
       }},
      {"sum dim -1", {{{3, 4}, kT}}, [](const TensorList& x) { return sum(x[0], {-1}); }},
      {"sum 0-d", {{{}}}, [](const TensorList& x) { return sum(x[0]); }},
      {"mean all", {{{3, 4}, kS}}, [](const TensorList& x) { return mean(x[0]); }},
      {"mean dim 1", {{{2, 3, 4}, kT}}, [](const TensorList& x) { return mean(x[0], {1}); }},
      {"mean dims 0,-1 keepdim",
       {{{2, 3, 4}}},
       [](const TensorList& x) {
         return mean(x[0], {0, -1}, true);
       }},
      {"max all", {{{3, 4}, kC, kDistinct}}, [](const TensorList& x) { return max(x[0]); }},
      {"max all", {{{3, 4}, kT, kDistinct}}, [](const TensorList& x) { return max(x[0]); }},
      {"max dim 1", {{{3, 4}, kC, kDistinct}}, [](const TensorList& x) { return max(x[0], 1); }},
      {"max dim 0 keepdim",
       {{{3, 4}, kS, kDistinct}},
       [](const TensorList& x) { return max(x[0], 0, true); }},
      {"max dim -1",
       {{{2, 3, 4}, kT, kDistinct}},
       [](const TensorList& x) { return max(x[0], -1); }},
      {"sum_to",
       {{{2, 3, 4}, kT}},
       [](const TensorList& x) {
         return sum_to(x[0], {3, 1});
       }},
  };
  run_cases(cases, 505);
}

TEST_CASE("gradcheck: shape ops and views") {
  std::vector<OpCase> cases = {
      {"reshape",
       {{{3, 4}}},
       [](const TensorList& x) {
         return reshape(x[0], {2, 6});
       }},
      {"reshape -1",
       {{{3, 4}, kS}},
       [](const TensorList& x) {
         return x[0].reshape({4, -1});
       }},
      {"reshape copies", {{{3, 4}, kT}}, [](const TensorList& x) { return x[0].reshape({12}); }},
      {"view",
       {{{3, 4}}},
       [](const TensorList& x) {
         return x[0].view({2, 2, 3});
       }},
      {"flatten", {{{2, 3, 2}, kS}}, [](const TensorList& x) { return x[0].flatten(); }},
      {"permute",
       {{{2, 3, 4}}},
       [](const TensorList& x) {
         return permute(x[0], {2, 0, 1});
       }},
      {"permute",
       {{{2, 3, 4}, kS}},
       [](const TensorList& x) {
         return x[0].permute({1, -1, 0});
       }},
      {"transpose", {{{2, 3, 4}}}, [](const TensorList& x) { return transpose(x[0], 0, 2); }},
      {"transpose", {{{3, 4}, kT}}, [](const TensorList& x) { return x[0].transpose(-1, -2); }},
      {"slice step 2", {{{3, 8}}}, [](const TensorList& x) { return slice(x[0], 1, 1, 7, 2); }},
      {"slice negative start",
       {{{5, 3}, kT}},
       [](const TensorList& x) { return x[0].slice(0, -3, 5); }},
      {"slice step 3", {{{3, 8}, kS}}, [](const TensorList& x) { return x[0].slice(1, 0, 8, 3); }},
      {"slice of slice",
       {{{6, 4}}},
       [](const TensorList& x) { return x[0].slice(0, 1, 6, 2).slice(1, 1, 4, 2); }},
      {"narrow", {{{3, 6}, kT}}, [](const TensorList& x) { return x[0].narrow(1, 2, 3); }},
      {"select", {{{3, 4}}}, [](const TensorList& x) { return x[0].select(0, -1); }},
      {"select", {{{3, 4}, kT}}, [](const TensorList& x) { return x[0].select(1, 2); }},
      {"cat dim 1",
       {{{2, 3}}, {{2, 1}, kS}, {{2, 4}, kT}},
       [](const TensorList& x) {
         return cat({x[0], x[1], x[2]}, 1);
       }},
      {"cat dim 0",
       {{{2, 3}, kT}, {{1, 3}, kS}},
       [](const TensorList& x) {
         return cat({x[0], x[1]}, 0);
       }},
      {"cat same tensor",
       {{{2, 3}}},
       [](const TensorList& x) {
         return cat({x[0], x[0]}, -1);
       }},
      {"stack dim 0",
       {{{2, 3}}, {{2, 3}, kT}},
       [](const TensorList& x) {
         return stack({x[0], x[1]}, 0);
       }},
      {"stack dim -1",
       {{{2, 3}, kS}, {{2, 3}}, {{2, 3}}},
       [](const TensorList& x) {
         return stack({x[0], x[1], x[2]}, -1);
       }},
      {"expand",
       {{{3, 1}}},
       [](const TensorList& x) {
         return expand(x[0], {2, 3, 4});
       }},
      {"expand -1",
       {{{4}, kS}},
       [](const TensorList& x) {
         return x[0].expand({3, -1});
       }},
      {"expand",
       {{{3, 1, 2}, kT}},
       [](const TensorList& x) {
         return x[0].expand({3, 4, 2});
       }},
      {"squeeze", {{{3, 1, 4}}}, [](const TensorList& x) { return x[0].squeeze(1); }},
      {"unsqueeze", {{{3, 4}, kT}}, [](const TensorList& x) { return x[0].unsqueeze(0); }},
      {"unsqueeze -1", {{{3, 4}, kS}}, [](const TensorList& x) { return x[0].unsqueeze(-1); }},
      {"contiguous", {{{3, 4}, kT}}, [](const TensorList& x) { return x[0].contiguous(); }},
      {"clone", {{{3, 4}, kS}}, [](const TensorList& x) { return x[0].clone(); }},
  };
  run_cases(cases, 606);
}

TEST_CASE("gradcheck: softmax and log_softmax over any dim") {
  std::vector<OpCase> cases;
  for (bool log : {false, true}) {
    auto sm = [log](const Tensor& x, int64_t d) { return log ? log_softmax(x, d) : softmax(x, d); };
    std::string name = log ? "log_softmax" : "softmax";
    cases.push_back(
        {name + " dim -1", {{{3, 5}}}, [sm](const TensorList& x) { return sm(x[0], -1); }});
    cases.push_back(
        {name + " dim 0", {{{3, 5}}}, [sm](const TensorList& x) { return sm(x[0], 0); }});
    cases.push_back(
        {name + " dim 1", {{{2, 3, 4}}}, [sm](const TensorList& x) { return sm(x[0], 1); }});
    cases.push_back(
        {name + " dim -1", {{{3, 5}, kT}}, [sm](const TensorList& x) { return sm(x[0], -1); }});
    cases.push_back(
        {name + " dim 0", {{{3, 5}, kS}}, [sm](const TensorList& x) { return sm(x[0], 0); }});
    cases.push_back({name + " 1-D", {{{6}}}, [sm](const TensorList& x) { return sm(x[0], 0); }});
  }
  run_cases(cases, 707);
}

TEST_CASE("gradcheck: layer_norm with and without weight and bias") {
  std::vector<OpCase> cases = {
      {"layer_norm w b",
       {{{4, 6}}, {{6}}, {{6}}},
       [](const TensorList& x) { return layer_norm(x[0], x[1], x[2]); }},
      {"layer_norm", {{{4, 6}}}, [](const TensorList& x) { return layer_norm(x[0], {}, {}); }},
      {"layer_norm w",
       {{{4, 6}, kT}, {{6}, kS}},
       [](const TensorList& x) { return layer_norm(x[0], x[1], {}); }},
      {"layer_norm b",
       {{{2, 3, 5}, kS}, {{5}}},
       [](const TensorList& x) { return layer_norm(x[0], {}, x[1]); }},
      {"layer_norm w b eps",
       {{{2, 3, 5}, kT}, {{5}}, {{5}, kS}},
       [](const TensorList& x) { return layer_norm(x[0], x[1], x[2], 0.1); }},
  };
  run_cases(cases, 808);
}

TEST_CASE("gradcheck: embedding with repeated indices") {
  Tensor idx64 = from_vector<int64_t>({0, 3, 3, 1, 4, 0, 3, 3}, {2, 4});
  Tensor idx32 = from_vector<int32_t>({2, 2, 2, 0, 4, 1}, {6});
  Tensor idx_t = from_vector<int64_t>({1, 1, 0, 2, 4, 1}, {2, 3}).transpose(0, 1);
  std::vector<OpCase> cases = {
      {"embedding i64",
       {{{5, 3}}},
       [idx64](const TensorList& x) { return embedding(x[0], pgt::here(idx64)); }},
      {"embedding i32",
       {{{5, 3}, kT}},
       [idx32](const TensorList& x) { return embedding(x[0], pgt::here(idx32)); }},
      {"embedding strided index",
       {{{5, 4}, kS}},
       [idx_t](const TensorList& x) { return embedding(x[0], pgt::here(idx_t)); }},
  };
  run_cases(cases, 909);
}

TEST_CASE("gradcheck: cross_entropy with ignore_index, label smoothing and [B, T, C] logits") {
  Tensor t4 = from_vector<int64_t>({1, 0, 4, 2}, {4});
  Tensor t4_ignored = from_vector<int64_t>({1, -100, 4, -100}, {4});
  Tensor t4_custom = from_vector<int64_t>({2, 0, 2, 3}, {4});
  Tensor t23 = from_vector<int64_t>({1, 4, 0, 3, -100, 2}, {2, 3});
  Tensor t32 = from_vector<int32_t>({3, 3, 0, 1}, {4});
  auto ce = [](Tensor t, int64_t ignore, double smoothing) -> Fn {
    return [t, ignore, smoothing](const TensorList& x) {
      return cross_entropy(x[0], pgt::here(t), ignore, smoothing);
    };
  };
  std::vector<OpCase> cases = {
      {"cross_entropy", {{{4, 5}}}, ce(t4, -100, 0)},
      {"cross_entropy ignore_index", {{{4, 5}}}, ce(t4_ignored, -100, 0)},
      {"cross_entropy ignore_index=2", {{{4, 5}, kT}}, ce(t4_custom, 2, 0)},
      {"cross_entropy label_smoothing", {{{4, 5}, kS}}, ce(t4, -100, 0.1)},
      {"cross_entropy ignore + smoothing", {{{4, 5}}}, ce(t4_ignored, -100, 0.25)},
      {"cross_entropy [B,T,C]", {{{2, 3, 5}}}, ce(t23, -100, 0.1)},
      {"cross_entropy [B,T,C] strided", {{{2, 3, 5}, kT}}, ce(t23, -100, 0)},
      {"cross_entropy i32 targets", {{{4, 5}}}, ce(t32, -100, 0)},
      {"cross_entropy of log_softmax",
       {{{4, 5}}},
       [t4](const TensorList& x) { return cross_entropy(log_softmax(x[0], 0), pgt::here(t4)); }},
  };
  run_cases(cases, 1010);
}

TEST_CASE("gradcheck: dropout with a seeded generator") {
  // A fresh generator with a fixed seed inside fn: every evaluation draws the same mask.
  auto drop = [](double p) -> Fn {
    return [p](const TensorList& x) {
      Generator g(42);
      return dropout(x[0], p, true, &g);
    };
  };
  std::vector<OpCase> cases = {
      {"dropout 0.3", {{{4, 5}}}, drop(0.3)},
      {"dropout 0.5", {{{4, 5}, kT}}, drop(0.5)},
      {"dropout 0.2", {{{3, 6}, kS}}, drop(0.2)},
      {"dropout eval",
       {{{3, 4}}},
       [](const TensorList& x) { return dropout(x[0], 0.5, false) * 2.0; }},
  };
  run_cases(cases, 1111);

  // The mask really drops elements and scales the others by 1 / (1 - p).
  Generator g(42);
  Tensor x = ones({1000}, {DType::F64});
  std::vector<double> y = pgt::values(dropout(x, 0.3, true, &g));
  int64_t kept = 0;
  for (double v : y) {
    CHECK((v == 0 || std::fabs(v - 1 / 0.7) < 1e-12));
    kept += v != 0;
  }
  CHECK(kept > 600);
  CHECK(kept < 800);
}

TEST_CASE("gradcheck: composites") {
  std::vector<OpCase> cases = {
      {"mlp",
       {{{5, 3}}, {{3, 4}, kT}, {{4}}, {{4, 2}}},
       [](const TensorList& x) { return matmul(tanh(matmul(x[0], x[1]) + x[2]), x[3]); }},
      {"attention",
       {{{2, 3, 4}}, {{2, 5, 4}, kS}, {{2, 5, 3}}},
       [](const TensorList& x) {
         Tensor s = matmul(x[0], x[1].transpose(-1, -2)) * 0.5;
         return matmul(softmax(s, -1), x[2]);
       }},
      {"norm + loss",
       {{{2, 3, 6}}, {{6}}, {{6}}},
       [](const TensorList& x) {
         Tensor h = gelu(layer_norm(x[0], x[1], x[2]), GeluApprox::Tanh);
         return cross_entropy(h, pgt::here(from_vector<int64_t>({0, 5, 2, 1, 1, 3}, {2, 3})));
       }},
  };
  run_cases(cases, 1212);
}

// --- second derivatives ---------------------------------------------------------------

namespace {

// The gradient of the scalar f(x) with respect to every input, flattened and concatenated,
// built with create_graph so it is itself differentiable.
Fn gradient_of(std::function<Tensor(const TensorList&)> f) {
  return [f](const TensorList& x) {
    GradModeGuard on(true);  // gradcheck evaluates fn under NoGradGuard for its differences
    Tensor y = f(x);
    TensorList g = grad(y, x, {}, true, /*create_graph=*/true);
    TensorList flat;
    for (const Tensor& gi : g) {
      REQUIRE(gi.defined());
      flat.push_back(gi.reshape({-1}));
    }
    return cat(flat, 0);
  };
}

}  // namespace

TEST_CASE("gradcheck of gradients: second derivatives of elementary ops") {
  Generator gen(77);
  Tensor c = pgt::make_input({3, 4}, gen);  // fixed weights so each output element matters
  auto weighted = [c](std::function<Tensor(const Tensor&)> f) {
    return gradient_of([c, f](const TensorList& x) { return sum(f(x[0]) * pgt::here(c)); });
  };
  std::vector<OpCase> cases = {
      {"d2 mul", {{{3, 4}}, {{4}, kS}}, gradient_of([](const TensorList& x) {
         return sum(x[0] * x[1] * x[0]);
       })},
      {"d2 div", {{{3, 4}}, {{3, 4}, kT, kDenominator}}, gradient_of([](const TensorList& x) {
         return sum(x[0] / x[1]);
       })},
      {"d2 exp", {{{3, 4}, kT}}, weighted([](const Tensor& x) { return exp(x); })},
      {"d2 log", {{{3, 4}, kC, kPositive}}, weighted([](const Tensor& x) { return log(x); })},
      {"d2 sqrt", {{{3, 4}, kS, kPositive}}, weighted([](const Tensor& x) { return sqrt(x); })},
      {"d2 tanh", {{{3, 4}}}, weighted([](const Tensor& x) { return tanh(x); })},
      {"d2 sigmoid", {{{3, 4}, kS}}, weighted([](const Tensor& x) { return sigmoid(x); })},
      {"d2 pow 3", {{{3, 4}}}, weighted([](const Tensor& x) { return pow(x, 3); })},
      {"d2 pow -1.5", {{{3, 4}, kT, kPositive}}, weighted([](const Tensor& x) {
         return pow(x, -1.5);
       })},
      {"d2 relu", {{{3, 4}, kC, kAwayFromZero}}, weighted([](const Tensor& x) {
         return relu(x) * x;
       })},
      {"d2 abs", {{{3, 4}, kC, kAwayFromZero}}, weighted([](const Tensor& x) {
         return abs(x) * x;
       })},
      {"d2 matmul", {{{3, 4}}, {{4, 2}, kT}}, gradient_of([](const TensorList& x) {
         Tensor p = matmul(x[0], x[1]);
         return sum(p * p);
       })},
      {"d2 batched matmul", {{{2, 3, 4}, kS}, {{4, 2}}}, gradient_of([](const TensorList& x) {
         return sum(pow(matmul(x[0], x[1]), 3));
       })},
      {"d2 linear", {{{2, 3, 4}, kT}, {{2, 4}, kS}, {{2}}}, gradient_of([](const TensorList& x) {
         return sum(pow(linear(x[0], x[1], x[2]), 3));
       })},
      {"d2 softmax", {{{3, 4}}}, weighted([](const Tensor& x) { return softmax(x, -1); })},
      {"d2 softmax dim 0", {{{3, 4}, kT}}, weighted([](const Tensor& x) { return softmax(x, 0); })},
      {"d2 log_softmax", {{{3, 4}}}, weighted([](const Tensor& x) { return log_softmax(x, 1); })},
      {"d2 broadcast add", {{{3, 4}}, {{4}}}, gradient_of([](const TensorList& x) {
         return sum(pow(x[0] + x[1], 3));
       })},
      {"d2 sum/mean", {{{3, 4}}}, gradient_of([](const TensorList& x) {
         return mean(pow(sum(x[0], {1}), 2));
       })},
      {"d2 slice", {{{3, 8}, kT}}, gradient_of([](const TensorList& x) {
         return sum(pow(x[0].slice(1, 1, 8, 3), 3));
       })},
      {"d2 max dim", {{{3, 4}, kC, kDistinct}}, gradient_of([](const TensorList& x) {
         return sum(pow(max(x[0], 1), 3));
       })},
  };
  run_cases(cases, 1313);
}

TEST_CASE("fused ops refuse double backward with a clear error") {
  Generator gen(5);
  Tensor x = pgt::make_input({3, 4}, gen, DType::F64, kC, kAny, true);
  Tensor w = pgt::make_input({4}, gen, DType::F64, kC, kAny, true);
  auto second = [&](const Tensor& y) {
    TensorList g = grad(y, {x}, {}, true, true);
    return sum(g[0] * g[0]);
  };
  CHECK_PG_ERROR(second(sum(gelu(x) * x)), "gelu", "double backward");
  CHECK_PG_ERROR(second(sum(layer_norm(x, w, {}) * x)), "layer_norm", "double backward");
  CHECK_PG_ERROR(second(cross_entropy(x, from_vector<int64_t>({0, 1, 3}, {3}))), "cross_entropy",
                 "double backward");
}

TEST_CASE("gradcheck itself catches a wrong gradient and names the input and element") {
  Generator gen(9);
  Tensor a = pgt::make_input({2, 3}, gen, DType::F64, kC, kPositive, true);
  Tensor b = pgt::make_input({3}, gen, DType::F64, kC, kPositive, true);
  // detach() hides one factor from autograd: the analytic gradient of a misses a term.
  auto wrong = [](const TensorList& x) { return x[0].detach() * x[0] + x[1]; };
  GradcheckReport rep = gradcheck(wrong, {a, b});
  CHECK_FALSE(rep.ok);
  CHECK(rep.message.find("input 0") != std::string::npos);
  CHECK(rep.message.find("[2, 3]") != std::string::npos);
  CHECK(rep.max_abs_error > 0.1);
  // The same function without the detach passes.
  CHECK(gradcheck([](const TensorList& x) { return x[0] * x[0] + x[1]; }, {a, b}).ok);
}
