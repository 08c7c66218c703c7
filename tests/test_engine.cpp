// The backward engine: graph shapes (diamonds, reuse, long chains), grad mode, detach,
// accumulation, retain_graph, explicit gradients, pg::grad and the errors of misuse.
#include <doctest/doctest.h>
#include <pthread.h>

#include <cmath>
#include <functional>

#include "autograd/grad_ready.h"
#include "core/allocator.h"
#include "helpers.h"

using namespace pg;

namespace {

Tensor leaf(const std::vector<double>& v, const Shape& shape) {
  return from_vector<double>(v, shape, Device::cpu(), true);
}

// Runs f on a thread with a small stack, so that any recursion proportional to the graph's
// length overflows it (and crashes the test) however large the main thread's stack is.
void run_with_small_stack(const std::function<void()>& f) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 512 * 1024);
  struct Ctx {
    const std::function<void()>* f;
    std::string error;
  } ctx{&f, ""};
  pthread_t th;
  auto body = [](void* p) -> void* {
    auto* c = static_cast<Ctx*>(p);
    try {
      (*c->f)();
    } catch (const std::exception& e) {
      c->error = e.what();
    }
    return nullptr;
  };
  REQUIRE(pthread_create(&th, &attr, body, &ctx) == 0);
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
  CHECK_MESSAGE(ctx.error.empty(), ctx.error);
}

}  // namespace

TEST_CASE("diamond: a tensor used by two branches that rejoin") {
  std::vector<double> xv = {-0.5, 0.25, 1.5};
  Tensor x = leaf(xv, {3});
  Tensor a = x * 2.0;
  Tensor b = exp(x);
  Tensor y = sum(a * b);
  y.backward();
  std::vector<double> expected;
  for (double v : xv) expected.push_back(2 * std::exp(v) * (1 + v));  // d/dx 2x e^x
  pgt::check_close(x.grad(), expected, 1e-12, 1e-12, "x.grad");

  // A diamond whose fork is an intermediate node, not a leaf.
  Tensor x2 = leaf(xv, {3});
  Tensor h = tanh(x2);
  sum(h * h + h).backward();
  expected.clear();
  for (double v : xv) {
    double t = std::tanh(v);
    expected.push_back((2 * t + 1) * (1 - t * t));
  }
  pgt::check_close(x2.grad(), expected, 1e-12, 1e-12, "x2.grad");
}

TEST_CASE("one tensor reused many times") {
  Tensor x = leaf({1.0, -2.0, 3.0}, {3});
  Tensor s = x;
  for (int i = 0; i < 9; ++i) s = s + x;
  sum(s).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{10, 10, 10});

  Tensor z = leaf({0.5, -1.5}, {2});
  sum(z * z * z * z).backward();  // 4 z^3
  pgt::check_close(z.grad(), {4 * 0.125, 4 * -3.375}, 1e-12, 1e-12, "z.grad");

  // Reuse through views of the same leaf.
  Tensor m = leaf({1, 2, 3, 4}, {2, 2});
  sum(matmul(m, m.transpose(0, 1))).backward();
  // sum_ij sum_k m_ik m_jk: d/dm_pq = sum_j m_jq + sum_i m_iq = 2 * (column sum q of m).
  CHECK(m.grad().to_vector<double>() == std::vector<double>{8, 12, 8, 12});
}

TEST_CASE("NoGradGuard records nothing and restores the mode") {
  Tensor x = leaf({1, 2}, {2});
  CHECK(GradMode::is_enabled());
  {
    NoGradGuard guard;
    CHECK_FALSE(GradMode::is_enabled());
    Tensor y = x * 2.0 + 1.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    CHECK(y.is_leaf());
    {
      NoGradGuard nested;
      CHECK_FALSE(GradMode::is_enabled());
    }
    CHECK_FALSE(GradMode::is_enabled());
    {
      GradModeGuard on(true);
      Tensor z = x * 2.0;
      CHECK(z.requires_grad());
      REQUIRE(z.grad_fn() != nullptr);
      CHECK(z.grad_fn()->name() == "mul_scalar");
    }
    CHECK_FALSE(GradMode::is_enabled());
    CHECK_PG_ERROR(sum(y).backward(), "backward", "does not require grad");
  }
  CHECK(GradMode::is_enabled());
  Tensor y = x * 2.0;
  CHECK(y.requires_grad());
  CHECK(y.grad_fn() != nullptr);
}

TEST_CASE("detach: shares storage, cuts the graph") {
  Tensor x = leaf({1.5, -2.0, 0.5}, {3});
  Tensor d = x.detach();
  CHECK(d.shares_storage(x));
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  // y = sum(c * x) with c = x's value: the gradient is c, not 2x.
  sum(d * x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1.5, -2.0, 0.5});
  // Nothing flows through a detached intermediate either.
  Tensor z = leaf({1, 2}, {2});
  Tensor y = sum(exp(z).detach() * 3.0 + z);
  y.backward();
  CHECK(z.grad().to_vector<double>() == std::vector<double>{1, 1});
}

TEST_CASE("gradients accumulate across backward calls until cleared") {
  Tensor x = leaf({1, -2, 3}, {3});
  sum(x * x).backward();
  sum(x * 3.0).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2 + 3, -4 + 3, 6 + 3});
  x.set_grad(Tensor());
  CHECK_FALSE(x.grad().defined());
  sum(x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1, 1});
}

TEST_CASE("a second backward needs retain_graph") {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(exp(x));
  y.backward();
  CHECK_PG_ERROR(y.backward(), "second time", "retain_graph");

  Tensor x2 = leaf({1, 2}, {2});
  Tensor y2 = sum(exp(x2) * x2);
  y2.backward(Tensor(), /*retain_graph=*/true);
  std::vector<double> once = x2.grad().to_vector<double>();
  y2.backward();  // allowed: the graph was retained
  std::vector<double> twice = x2.grad().to_vector<double>();
  for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == doctest::Approx(2 * once[i]));
  CHECK_PG_ERROR(y2.backward(), "second time");  // the second one did not retain it
}

TEST_CASE("a 100,000-op chain: backward and destruction without recursion") {
  constexpr int kOps = 100000;
  const double s = 1.0000001;
  run_with_small_stack([&] {
    Tensor x = leaf({1.0}, {1});
    Tensor y = x;
    for (int i = 0; i < kOps; ++i) y = y * s;
    sum(y).backward();
    double expected = 1;
    for (int i = 0; i < kOps; ++i) expected *= s;
    CHECK(x.grad().item() == doctest::Approx(expected).epsilon(1e-12));
    y = Tensor();  // destroys the (released) chain
  });
  run_with_small_stack([&] {
    // Nodes that capture their inputs (node -> saved tensor -> node -> ...), never run.
    Tensor x = leaf({0.5, 0.25}, {2});
    Tensor c = from_vector<double>({1e-6, 2e-6}, {2});
    Tensor y = x;
    for (int i = 0; i < kOps; ++i) y = (i % 2) ? y + c : y * x;
    CHECK(y.requires_grad());
    y = Tensor();
  });
  run_with_small_stack([&] {
    // Retained graph, backward twice, then destroyed.
    Tensor x = leaf({2.0}, {1});
    Tensor y = x;
    for (int i = 0; i < kOps; ++i) y = y + 0.0;
    y.backward(Tensor(), true);
    y.backward();
    CHECK(x.grad().item() == 2.0);
  });
}

TEST_CASE("backward of a non-scalar needs an explicit gradient") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x * 3.0 + 1.0;
  CHECK_PG_ERROR(y.backward(), "backward", "one-element", "[2, 3]", "explicit gradient");
  Tensor g = from_vector<double>({1, 0, -1, 2, 0.5, 0}, {2, 3});
  y.backward(g);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 0, -3, 6, 1.5, 0});
  Tensor y2 = x * 3.0;
  CHECK_PG_ERROR(y2.backward(from_vector<double>({1, 2, 3}, {3})), "backward", "[3]", "[2, 3]");
  // A leaf can be the output: its gradient is the given one.
  Tensor z = leaf({1, 2}, {2});
  z.backward(from_vector<double>({7, 8}, {2}));
  CHECK(z.grad().to_vector<double>() == std::vector<double>{7, 8});
}

TEST_CASE("leaf gradients are independent tensors") {
  // add's backward passes the incoming gradient through unchanged to both inputs and sum's
  // backward returns a stride-0 view: .grad must still be a tensor of its own, contiguous,
  // because optimizers update and zero it in place through raw pointers.
  Tensor a = leaf({1, 2, 3}, {3});
  Tensor b = leaf({4, 5, 6}, {3});
  Tensor g = from_vector<double>({1, 1, 1}, {3});
  (a + b).backward(g);
  CHECK_FALSE(a.grad().shares_storage(b.grad()));
  CHECK_FALSE(a.grad().shares_storage(g));
  a.grad().fill_(0);
  g.fill_(5);
  CHECK(b.grad().to_vector<double>() == std::vector<double>{1, 1, 1});

  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  sum(x).backward();
  Tensor gx = x.grad();
  CHECK(gx.is_contiguous());
  const double* p = gx.data<double>();
  for (int i = 0; i < 6; ++i) CHECK(p[i] == 1.0);
  gx.fill_(0);  // must not write into anything else
  sum(x * 2.0).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>(6, 2.0));
}

TEST_CASE("pg::grad returns gradients without touching .grad") {
  Tensor x = leaf({1, 2}, {2});
  Tensor w = leaf({3, 4}, {2});
  Tensor unused = leaf({0}, {1});
  Tensor h = x * w;  // non-leaf input
  Tensor y = sum(h * h);
  TensorList g = grad(y, {x, h, unused}, {}, true);
  REQUIRE(g.size() == 3);
  CHECK(g[0].to_vector<double>() == std::vector<double>{2 * 3 * 3 * 1, 2 * 4 * 4 * 2});
  CHECK(g[1].to_vector<double>() == std::vector<double>{2 * 3, 2 * 8});
  CHECK_FALSE(g[2].defined());
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  CHECK_FALSE(g[0].requires_grad());
  // With create_graph the gradient is itself differentiable.
  TensorList g2 = grad(y, {x}, {}, true, true);
  CHECK(g2[0].requires_grad());
  sum(g2[0]).backward();  // d/dx sum(2 x w^2) = 2 w^2
  CHECK(x.grad().to_vector<double>() == std::vector<double>{18, 32});
  CHECK_PG_ERROR(grad(y, {from_vector<double>({1}, {1})}), "grad", "require grad");
}

TEST_CASE("backward with create_graph leaves a differentiable .grad") {
  Tensor x = leaf({0.5, -1.0}, {2});
  sum(pow(x, 3)).backward(Tensor(), false, true);
  Tensor g = x.grad();
  CHECK(g.requires_grad());
  pgt::check_close(g, {3 * 0.25, 3 * 1.0}, 1e-12, 0, "x.grad");
  TensorList h = grad(sum(g), {x});
  pgt::check_close(h[0], {6 * 0.5, 6 * -1.0}, 1e-12, 0, "d2");
  // x.grad's graph holds x: the reference cycle PyTorch documents too. Clearing the gradient
  // breaks it (LeakSanitizer in tools/test reports it otherwise).
  x.set_grad(Tensor());
}

TEST_CASE("max: ties share the gradient (all) or go to the first index (per dim)") {
  Tensor x = leaf({1, 3, 3, 2}, {4});
  max(x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0.5, 0.5, 0});
  Tensor y = leaf({1, 3, 3, 2, 5, 5}, {2, 3});
  sum(max(y, 1)).backward();
  CHECK(y.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 0, 1, 0});
}

TEST_CASE("requires_grad bookkeeping") {
  Tensor x = leaf({1, 2}, {2});
  Tensor c = from_vector<double>({1, 2}, {2});
  CHECK(x.is_leaf());
  CHECK((x + c).requires_grad());
  CHECK_FALSE((c + c).requires_grad());
  CHECK((c + c).grad_fn() == nullptr);
  Tensor y = x * c;
  REQUIRE(y.grad_fn() != nullptr);
  CHECK(y.grad_fn()->name() == "mul");
  CHECK(y.grad_fn()->next().size() == 2);
  CHECK_PG_ERROR(y.requires_grad_(false), "requires_grad_", "non-leaf");
  CHECK_PG_ERROR(from_vector<int64_t>({1}, {1}).requires_grad_(), "requires_grad_", "i64");
  c.requires_grad_();
  CHECK(c.requires_grad());
  // Integer results of comparisons never require grad.
  CHECK_FALSE(argmax(x, 0).requires_grad());
}

TEST_CASE("a backward keeps only the operands its rule reads") {
  // Bytes still allocated after y = op(t, other) once the intermediate t has gone out of scope:
  // exactly y when the rule needs only shapes or the other operand.
  manual_seed(6);
  Tensor x = randn({256, 256}), w = randn({256, 256}).requires_grad_();
  Tensor mask = gt(randn({256, 256}), zeros({})), other = randn({256, 256});
  const size_t y_bytes = 256 * 256 * sizeof(float);
  auto held = [&](const std::function<Tensor(const Tensor&)>& op) {
    size_t before = cpu_allocator().stats().allocated;
    Tensor y;
    {
      Tensor t = matmul(x, w);  // requires grad through w; only op's backward could keep it
      y = op(t);
    }
    return cpu_allocator().stats().allocated - before;
  };
  CHECK(held([&](const Tensor& t) { return add(t, other); }) == y_bytes);  // residual add
  CHECK(held([&](const Tensor& t) { return sub(other, t); }) == y_bytes);
  CHECK(held([&](const Tensor& t) { return mul(t, other); }) == y_bytes);  // other is kept
  CHECK(held([&](const Tensor& t) { return div(t, other); }) == y_bytes);
  CHECK(held([&](const Tensor& t) { return where(mask, t, other); }) == y_bytes);
  // Rules written in terms of the output keep the output (shared with y), not the input.
  CHECK(held([&](const Tensor& t) { return exp(t); }) == y_bytes);
  CHECK(held([&](const Tensor& t) { return sqrt(t); }) == y_bytes);
  CHECK(held([&](const Tensor& t) { return tanh(t); }) == y_bytes);
  CHECK(held([&](const Tensor& t) { return sigmoid(t); }) == y_bytes);
  CHECK(held([&](const Tensor& t) { return softmax(t, -1); }) == y_bytes);
  CHECK(held([&](const Tensor& t) { return log_softmax(t, -1); }) == y_bytes);
  // The saved output refers to its node weakly: dropping y frees everything (no cycle).
  size_t before = cpu_allocator().stats().allocated;
  { Tensor y = softmax(exp(matmul(x, w)), -1); }
  CHECK(cpu_allocator().stats().allocated == before);
  // The rule of mul reads t when the other operand needs a gradient: then t stays.
  Tensor v = other.detach().requires_grad_();
  CHECK(held([&](const Tensor& t) { return mul(t, v); }) == 2 * y_bytes);
}

TEST_CASE("grad-ready hooks: once per backward, after the leaf's last contribution") {
  Tensor a = full({3}, 2.0).requires_grad_();
  Tensor b = full({3}, 5.0).requires_grad_();
  Tensor unused = full({3}, 1.0).requires_grad_();
  std::vector<std::pair<std::string, float>> calls;  // which leaf, and its .grad[0] then
  auto record = [&](const std::string& name) {
    return [&calls, name](const Tensor& leaf) {
      calls.emplace_back(name, leaf.grad().defined() ? leaf.grad().to_vector<float>()[0] : -1);
    };
  };
  auto ha = add_grad_ready_hook(a, record("a"));
  auto hb = add_grad_ready_hook(b, record("b"));
  auto hu = add_grad_ready_hook(unused, record("unused"));
  // `a` reaches the loss along three paths: its hook runs once, with all three summed.
  Tensor loss = sum(add(mul(mul(a, a), b), a));
  loss.backward();
  REQUIRE(calls.size() == 2);
  for (const auto& [name, g] : calls) {
    if (name == "a") CHECK(g == 2 * 2 * 5 + 1);  // d/da (a^2 b + a)
    if (name == "b") CHECK(g == 4);
  }
  // Accumulating into an existing .grad: the hook sees the sum.
  calls.clear();
  sum(mul(a, 3.0)).backward();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].second == 21 + 3);
  // Removed with its handle; grad() runs no hooks.
  ha.reset();
  calls.clear();
  sum(mul(a, b)).backward();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].first == "b");
  calls.clear();
  grad(sum(mul(a, b)), {b});
  CHECK(calls.empty());
  CHECK_THROWS_AS(add_grad_ready_hook(mul(a, 2.0), record("x")), pg::Error);  // not a leaf
}
