// The caching CPU allocator: size classes, counters, and the steady state a training loop
// must reach (after the first steps every block comes from the cache).
#include <doctest/doctest.h>

#include <cstdint>

#include "helpers.h"

using namespace pg;

TEST_CASE("size classes: at least the request, at most 25% waste, monotonic") {
  CHECK(allocation_size_class(0) == 64);
  CHECK(allocation_size_class(1) == 64);
  CHECK(allocation_size_class(64) == 64);
  CHECK(allocation_size_class(65) == 128);
  CHECK(allocation_size_class(200) == 256);
  size_t prev = 0;
  for (size_t n = 1; n < (1u << 20); n = n * 9 / 8 + 1) {
    size_t c = allocation_size_class(n);
    INFO("request " << n << " -> class " << c);
    CHECK(c >= n);
    CHECK(c % 64 == 0);
    if (n > 256) CHECK(static_cast<double>(c) < 1.25 * static_cast<double>(n));
    CHECK(c >= prev);
    prev = c;
  }
}

TEST_CASE("allocate, free and reuse: counters") {
  Allocator& a = cpu_allocator();
  a.empty_cache();
  const size_t n = 3 * 1000 * 1000 + 17;  // a size no other test uses
  const size_t cls = allocation_size_class(n);
  AllocatorStats s0 = a.stats();
  void* p = a.allocate(n);
  REQUIRE(p != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(p) % 64 == 0);
  AllocatorStats s1 = a.stats();
  CHECK(s1.system_allocs == s0.system_allocs + 1);
  CHECK(s1.allocated == s0.allocated + cls);
  CHECK(s1.reserved == s0.reserved + cls);
  CHECK(s1.peak_allocated >= s1.allocated);
  a.deallocate(p, n);
  AllocatorStats s2 = a.stats();
  CHECK(s2.allocated == s0.allocated);
  CHECK(s2.reserved == s1.reserved);  // cached, not returned
  void* q = a.allocate(n - 5);        // same class: served from the cache
  AllocatorStats s3 = a.stats();
  CHECK(q == p);
  CHECK(s3.cache_hits == s2.cache_hits + 1);
  CHECK(s3.system_allocs == s2.system_allocs);
  a.deallocate(q, n - 5);
  a.reset_peak();
  CHECK(a.stats().peak_allocated == a.stats().allocated);
  a.empty_cache();
  CHECK(a.stats().reserved == a.stats().allocated);  // only live blocks remain
}

TEST_CASE("allocating and freeing a tensor of one size reaches a steady state") {
  Allocator& a = cpu_allocator();
  for (int i = 0; i < 2; ++i) {
    Tensor t = empty({1000, 3});
  }
  AllocatorStats before = a.stats();
  for (int i = 0; i < 50; ++i) {
    Tensor t = empty({1000, 3});
    t.fill_(static_cast<double>(i));
    CHECK(a.stats().allocated == before.allocated + allocation_size_class(12000));
  }
  AllocatorStats after = a.stats();
  CHECK(after.system_allocs == before.system_allocs);
  CHECK(after.cache_hits == before.cache_hits + 50);
  CHECK(after.allocated == before.allocated);
  CHECK(after.reserved == before.reserved);
}

TEST_CASE("a training loop reaches a steady state: no system allocations after step 2") {
  Allocator& a = cpu_allocator();
  Generator gen(3);
  Tensor x = randn({32, 8}, {}, &gen);
  Tensor y = randint(0, 4, {32}, {DType::I64}, &gen);
  auto param = [&](const Shape& shape, double scale) {
    return (randn(shape, {}, &gen) * scale).detach().requires_grad_();
  };
  TensorList params = {param({8, 16}, 0.3), param({16}, 0.1),    param({16}, 0.1),
                       param({16}, 0.1),    param({16, 4}, 0.3), param({4}, 0.1)};
  auto step = [&] {
    Tensor h = matmul(x, params[0]) + params[1];
    h = gelu(layer_norm(h, params[2], params[3]));
    Tensor logits = matmul(relu(h), params[4]) + params[5];
    Tensor loss = cross_entropy(softmax(logits, -1) * 4.0, y, -100, 0.1);
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor& p : params) {
      p.copy_(p - p.grad() * 0.5);
      p.set_grad(Tensor());
    }
    return loss.item();
  };
  double first = step();
  step();
  AllocatorStats steady = a.stats();
  double last = 0;
  for (int i = 0; i < 8; ++i) {
    last = step();
    AllocatorStats s = a.stats();
    INFO("step " << i + 3);
    CHECK(s.system_allocs == steady.system_allocs);
    CHECK(s.allocated == steady.allocated);  // nothing leaks from step to step
    CHECK(s.cache_hits > steady.cache_hits);
  }
  CHECK(last < first);  // and it does learn
}
