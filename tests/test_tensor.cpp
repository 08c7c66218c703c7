// Tensor basics: factories, the random generator (against an independent implementation of
// xoshiro256** seeded by splitmix64), ranks, item/to_vector, dtype conversions and printing.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "helpers.h"

using namespace pg;

namespace {

// Reference xoshiro256** and splitmix64, transcribed from Vigna's public-domain C code.
struct RefRng {
  uint64_t s[4];
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  explicit RefRng(uint64_t seed) {
    for (auto& v : s) v = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

// Inverse of an odd number modulo 2^64 (Newton's iteration doubles the correct bits).
uint64_t inverse_mod_2_64(uint64_t a) {
  uint64_t x = a;  // correct to 3 bits
  for (int i = 0; i < 6; ++i) x *= 2 - a * x;
  return x;
}

}  // namespace

TEST_CASE("factories: shapes, dtypes and values") {
  for (DType dt : {DType::F32, DType::F64, DType::I64, DType::I32}) {
    INFO(dtype_name(dt));
    Tensor z = zeros({2, 3}, {dt});
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.dtype() == dt);
    CHECK(z.device() == Device::cpu());
    CHECK(z.is_contiguous());
    CHECK(z.to_vector<double>() == std::vector<double>(6, 0.0));
    CHECK(ones({4}, {dt}).to_vector<double>() == std::vector<double>(4, 1.0));
    CHECK(full({2, 2}, 7, {dt}).to_vector<double>() == std::vector<double>(4, 7.0));
    Tensor f = full({3}, -2, {dt});
    CHECK(zeros_like(f).dtype() == dt);
    CHECK(ones_like(f).to_vector<double>() == std::vector<double>(3, 1.0));
    CHECK(full_like(f, 5).shape() == Shape{3});
    CHECK(empty({0, 3}, {dt}).numel() == 0);
  }
  CHECK(full({2}, 0.1, {DType::F32}).to_vector<float>() == std::vector<float>{0.1f, 0.1f});
  Tensor s = scalar_tensor(2.5, {DType::F64});
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 2.5);
  Tensor rg = zeros({2}, {DType::F64, Device::cpu(), true});
  CHECK(rg.requires_grad());
  CHECK(rg.is_leaf());
  CHECK(ones({}).dim() == 0);

  Tensor a = arange(5);
  CHECK(a.dtype() == DType::I64);
  CHECK(a.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  Tensor af = arange(0.0, 1.0, 0.25);
  CHECK(af.dtype() == DType::F32);
  CHECK(af.to_vector<float>() == std::vector<float>{0, 0.25f, 0.5f, 0.75f});
  CHECK(arange(5.0, 0.0, -2.0, {DType::F64}).to_vector<double>() == std::vector<double>{5, 3, 1});
  CHECK(arange(3, {DType::F64}).dtype() == DType::F64);
  CHECK(arange(2.0, 2.0).shape() == Shape{0});
  CHECK(arange(0.0, 1.0, 0.3).numel() == 4);

  CHECK(from_vector<int32_t>({1, -2, 3}, {3}).dtype() == DType::I32);
  CHECK(from_vector<int64_t>({1, -2, 3, 4}, {2, 2}).to_vector<int64_t>() ==
        std::vector<int64_t>{1, -2, 3, 4});
  std::vector<float> raw = {1.5f, 2.5f};
  CHECK(from_data(raw.data(), {2}).to_vector<float>() == raw);
  Tensor fv = from_vector<double>({1, 2}, {2}, Device::cpu(), true);
  CHECK(fv.requires_grad());
}

TEST_CASE("generator: splitmix64 seeding and xoshiro256** match the reference") {
  // Published first outputs of splitmix64 seeded with 0: the generator's state after seed 0.
  Generator g0(0);
  auto st = g0.state();
  CHECK(st[0] == 0xe220a8397b1dcdafULL);
  CHECK(st[1] == 0x6e789e6aa1b965f4ULL);
  CHECK(st[2] == 0x06c45d188009454fULL);
  CHECK(st[3] == 0xf88bb8a8724c81ecULL);

  for (uint64_t seed : {0ULL, 1ULL, 42ULL, 0x5eedULL, 0xffffffffffffffffULL}) {
    INFO("seed " << seed);
    Generator g(seed);
    RefRng ref(seed);
    int mismatch = -1;
    for (int i = 0; i < 1000 && mismatch < 0; ++i)
      if (g.next_u64() != ref.next()) mismatch = i;
    CHECK(mismatch == -1);
  }

  // rand (f64) is the top 53 bits of each draw scaled by 2^-53.
  Generator g(123);
  RefRng ref(123);
  std::vector<double> u = rand({100}, {DType::F64}, &g).to_vector<double>();
  for (double v : u) CHECK(v == ref.uniform());

  // randn: Box-Muller on pairs of uniforms, cosine first, sine cached for the next draw.
  Generator gn(7);
  RefRng rn(7);
  std::vector<double> n = randn({10}, {DType::F64}, &gn).to_vector<double>();
  for (size_t i = 0; i < n.size(); i += 2) {
    double u1 = 1.0 - rn.uniform(), u2 = rn.uniform();
    double r = std::sqrt(-2.0 * std::log(u1));
    CHECK(n[i] == doctest::Approx(r * std::cos(2 * M_PI * u2)).epsilon(1e-15));
    CHECK(n[i + 1] == doctest::Approx(r * std::sin(2 * M_PI * u2)).epsilon(1e-15));
  }
}

TEST_CASE("random factories: reproducible, seed-dependent, in range") {
  Generator a(2024), b(2024), c(2025);
  Tensor ra = rand({50}, {}, &a), rb = rand({50}, {}, &b), rc = rand({50}, {}, &c);
  CHECK(ra.dtype() == DType::F32);
  CHECK(ra.to_vector<float>() == rb.to_vector<float>());
  CHECK(ra.to_vector<float>() != rc.to_vector<float>());

  manual_seed(99);
  std::vector<double> first = randn({20}, {DType::F64}).to_vector<double>();
  manual_seed(99);
  CHECK(randn({20}, {DType::F64}).to_vector<double>() == first);
  manual_seed(100);
  CHECK(randn({20}, {DType::F64}).to_vector<double>() != first);

  Generator g(1);
  std::vector<double> u = rand({100000}, {DType::F64}, &g).to_vector<double>();
  double mean_u = 0;
  for (double v : u) mean_u += v / static_cast<double>(u.size());
  CHECK(*std::min_element(u.begin(), u.end()) >= 0);
  CHECK(*std::max_element(u.begin(), u.end()) < 1);
  CHECK(mean_u == doctest::Approx(0.5).epsilon(0.01));
  std::vector<double> n = randn({100000}, {DType::F64}, &g).to_vector<double>();
  double m = 0, m2 = 0;
  for (double v : n) m += v / static_cast<double>(n.size());
  for (double v : n) m2 += (v - m) * (v - m) / static_cast<double>(n.size());
  CHECK(std::fabs(m) < 0.02);
  CHECK(std::sqrt(m2) == doctest::Approx(1.0).epsilon(0.02));

  Tensor ri = randint(-3, 4, {2, 500}, {DType::I64}, &g);
  CHECK(ri.dtype() == DType::I64);
  CHECK(ri.shape() == Shape{2, 500});
  std::vector<int64_t> riv = ri.to_vector<int64_t>();
  std::set<int64_t> seen(riv.begin(), riv.end());
  CHECK(seen.size() == 7);  // every value of [-3, 4) and nothing else
  CHECK(*seen.begin() == -3);
  CHECK(*seen.rbegin() == 3);
  Tensor ri32 = randint(0, 10, {100}, {DType::I32}, &g);
  CHECK(ri32.dtype() == DType::I32);
  std::vector<int32_t> r32 = ri32.to_vector<int32_t>();
  CHECK(*std::min_element(r32.begin(), r32.end()) >= 0);
  CHECK(*std::max_element(r32.begin(), r32.end()) < 10);
  Tensor rf = randint(0, 3, {10}, {DType::F64}, &g);
  CHECK(rf.dtype() == DType::F64);

  // The state round-trips, including a cached normal.
  Generator s(5);
  (void)s.normal();
  auto saved = s.state();
  double n1 = s.normal(), n2 = s.normal();
  uint64_t r1 = s.next_u64();
  Generator t(0);
  t.set_state(saved);
  CHECK(t.normal() == n1);
  CHECK(t.normal() == n2);
  CHECK(t.next_u64() == r1);
  s.seed_with(5);
  Generator s5(5);
  CHECK(s.next_u64() == s5.next_u64());
}

TEST_CASE("rand in f32 stays below 1 even when the f64 draw rounds up") {
  // Choose the state so the next raw draw is 2^64 - 1: the f64 uniform is 1 - 2^-53, which
  // rounds to exactly 1.0f in f32 unless the factory guards against it.
  const uint64_t target = ~0ULL;
  uint64_t y = target * inverse_mod_2_64(9);  // rotl(s1 * 5, 7)
  uint64_t z = (y >> 7) | (y << 57);          // s1 * 5
  uint64_t s1 = z * inverse_mod_2_64(5);
  Generator g;
  g.set_state({1, s1, 2, 3, 0, 0});
  Generator probe;
  probe.set_state({1, s1, 2, 3, 0, 0});
  REQUIRE(probe.next_u64() == target);
  float v = rand({1}, {DType::F32}, &g).item<float>();
  CHECK(v < 1.0f);
  CHECK(v >= 0.0f);
}

TEST_CASE("ranks 0 to 8 work, rank 9 is refused") {
  Shape s8 = {2, 1, 2, 1, 2, 1, 2, 3};
  Tensor t = arange(0.0, 48.0, 1.0, {DType::F64}).reshape(s8);
  CHECK(t.dim() == 8);
  CHECK(sum(t).item() == 47 * 48 / 2);
  CHECK(sum(t, {0, 7}).shape() == Shape{1, 2, 1, 2, 1, 2});
  Tensor p = t.permute({7, 6, 5, 4, 3, 2, 1, 0});
  CHECK(p.shape() == Shape{3, 2, 1, 2, 1, 2, 1, 2});
  CHECK(p.contiguous().to_vector<double>()[1] == 24);  // p[0, ..., 0, 1] = t[1, 0, ..., 0]
  CHECK((t * 2.0).dim() == 8);
  CHECK(t.squeeze(1).dim() == 7);
  CHECK_PG_ERROR(t.unsqueeze(0), "rank 9", "maximum rank 8");
  CHECK_PG_ERROR(zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}), "rank 9", "maximum rank 8");
  CHECK_PG_ERROR(t.reshape({2, 2, 2, 2, 3, 1, 1, 1, 1}), "reshape", "maximum rank 8");
  CHECK_PG_ERROR(t.expand({1, 2, 1, 2, 1, 2, 1, 2, 3}), "expand", "maximum rank 8");

  Tensor s = scalar_tensor(3.0, {DType::F64});
  CHECK(s.shape().empty());
  CHECK(s.strides().empty());
  CHECK(s.is_contiguous());
  CHECK(s.reshape({1, 1}).shape() == Shape{1, 1});
  CHECK(s.unsqueeze(0).shape() == Shape{1});
  CHECK(sum(s).item() == 3);
  CHECK(max(s).item() == 3);
}

TEST_CASE("0-d tensors reduce over dim 0 / -1 like PyTorch") {
  Tensor s = from_vector<double>({2.5}, {}, Device::cpu(), true);
  Tensor a = sum(s, {0});
  CHECK(a.dim() == 0);
  CHECK(a.item() == 2.5);
  CHECK(sum(s, {-1}, true).dim() == 0);
  CHECK(mean(s, {0}).item() == 2.5);
  CHECK(max(s, 0).item() == 2.5);
  CHECK(argmax(s, 0).item() == 0);
  a.backward();
  CHECK(s.grad().item() == 1);
  CHECK_PG_ERROR(sum(s, {1}), "sum", "out of range");
}

TEST_CASE("item and to_vector") {
  CHECK(from_vector<float>({1.25f}, {1, 1, 1}).item() == 1.25);
  CHECK(from_vector<int64_t>({-7}, {}).item<int64_t>() == -7);
  CHECK(from_vector<int32_t>({42}, {1}).item<int>() == 42);
  Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(x.select(1, 2).select(0, 1).item() == 6);
  CHECK(x.transpose(0, 1).to_vector<double>() == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(x.to_vector<int32_t>() == std::vector<int32_t>{1, 2, 3, 4, 5, 6});
  CHECK(x.to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(x.expand({2, 2, 3}).to_vector<double>().size() == 12);
  CHECK(zeros({0}).to_vector<float>().empty());

  // 64-bit integers come back exactly, contiguous or not.
  const int64_t big = (int64_t{1} << 53) + 1;
  Tensor ib = from_vector<int64_t>({big, -big, 3, big + 2}, {2, 2});
  CHECK(ib.to_vector<int64_t>() == std::vector<int64_t>{big, -big, 3, big + 2});
  CHECK(ib.transpose(0, 1).to_vector<int64_t>() == std::vector<int64_t>{big, 3, -big, big + 2});
  CHECK(ib.select(0, 1).slice(0, 1, 2).to_vector<int64_t>() == std::vector<int64_t>{big + 2});
}

TEST_CASE("to(dtype) conversions") {
  Tensor d = from_vector<double>({-1.7, -0.5, 0.0, 2.9, 1.0 / 3.0}, {5});
  CHECK(d.to(DType::F32).dtype() == DType::F32);
  CHECK(d.to(DType::F32).to_vector<float>() ==
        std::vector<float>{-1.7f, -0.5f, 0.0f, 2.9f, static_cast<float>(1.0 / 3.0)});
  // Float to integer truncates toward zero (like a C++ cast).
  CHECK(d.to(DType::I64).to_vector<int64_t>() == std::vector<int64_t>{-1, 0, 0, 2, 0});
  CHECK(d.to(DType::I32).to_vector<int32_t>() == std::vector<int32_t>{-1, 0, 0, 2, 0});
  Tensor i = from_vector<int64_t>({-3, 0, 1 << 20, (int64_t{1} << 40) + 1}, {4});
  CHECK(i.to(DType::F64).to_vector<double>() ==
        std::vector<double>{-3, 0, 1 << 20, static_cast<double>((int64_t{1} << 40) + 1)});
  CHECK(i.slice(0, 0, 3).to(DType::I32).to_vector<int32_t>() ==
        std::vector<int32_t>{-3, 0, 1 << 20});
  Tensor i32 = from_vector<int32_t>({-5, 7}, {2});
  CHECK(i32.to(DType::I64).dtype() == DType::I64);
  CHECK(i32.to(DType::I64).to_vector<int64_t>() == std::vector<int64_t>{-5, 7});
  CHECK(i32.to(DType::F32).to_vector<float>() == std::vector<float>{-5, 7});
  // Non-contiguous sources convert element by element in logical order.
  Tensor m = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}).transpose(0, 1);
  Tensor mi = m.to(DType::I32);
  CHECK(mi.is_contiguous());
  CHECK(mi.to_vector<int32_t>() == std::vector<int32_t>{1, 4, 2, 5, 3, 6});
  // f32 -> f64 is exact.
  Tensor f = from_vector<float>({0.1f}, {1});
  CHECK(f.to(DType::F64).item() == static_cast<double>(0.1f));
  // Differentiable between floating dtypes.
  Tensor x = from_vector<double>({1, 2}, {2}, Device::cpu(), true);
  sum(x.to(DType::F32) * 3.0).backward();
  CHECK(x.grad().dtype() == DType::F64);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 3});
}

TEST_CASE("printing: shape, dtype, device, values, abbreviation") {
  Tensor x = from_vector<float>({1, 2.5f, -3, 4, 5, 6}, {2, 3});
  std::string s = x.str();
  CHECK(s.find("shape=[2, 3]") != std::string::npos);
  CHECK(s.find("dtype=f32") != std::string::npos);
  CHECK(s.find("device=cpu") != std::string::npos);
  CHECK(s.find("2.5") != std::string::npos);
  CHECK(s.find("-3") != std::string::npos);
  CHECK(s.find("...") == std::string::npos);
  CHECK(s.find("requires_grad") == std::string::npos);
  std::ostringstream os;
  os << x;
  CHECK(os.str() == s);

  Tensor longv = arange(100);
  std::string l = longv.str();
  CHECK(l.find("dtype=i64") != std::string::npos);
  CHECK(l.find("shape=[100]") != std::string::npos);
  CHECK(l.find("...") != std::string::npos);
  CHECK(l.find("[0, 1, 2, ") != std::string::npos);
  CHECK(l.find("97, 98, 99]") != std::string::npos);
  CHECK(l.find("50") == std::string::npos);

  Tensor big = arange(0.0, 400.0, 1.0, {DType::F64}).reshape({20, 20});
  std::string b = big.str();
  CHECK(b.find("shape=[20, 20]") != std::string::npos);
  CHECK(b.find("dtype=f64") != std::string::npos);
  CHECK(b.find("399") != std::string::npos);
  CHECK(b.find("200") == std::string::npos);  // row 10 is elided
  CHECK(b.size() < 1000);

  Tensor rg = zeros({2}, {DType::F64, Device::cpu(), true});
  CHECK(rg.str().find("requires_grad") != std::string::npos);
  CHECK(scalar_tensor(1.5).str().find("shape=[]") != std::string::npos);
  CHECK(Tensor().str().find("undefined") != std::string::npos);
  // Printing a strided view prints its logical values.
  std::string tv = x.transpose(0, 1).str();
  CHECK(tv.find("[1, 4]") != std::string::npos);
}

TEST_CASE("metadata") {
  Tensor x = zeros({2, 3, 4});
  CHECK(x.numel() == 24);
  CHECK(x.size(0) == 2);
  CHECK(x.size(-1) == 4);
  CHECK(x.strides() == Shape{12, 4, 1});
  CHECK(x.offset() == 0);
  CHECK(x.defined());
  CHECK_FALSE(Tensor().defined());
  CHECK(dtype_size(DType::F32) == 4);
  CHECK(dtype_size(DType::I64) == 8);
  CHECK(std::string(dtype_name(DType::I32)) == "i32");
  CHECK(is_floating(DType::F64));
  CHECK_FALSE(is_floating(DType::I64));
  CHECK(Device::cuda(1).str() == "cuda:1");
  CHECK(Device::cpu().str() == "cpu");
  CHECK(shape_str({}) == "[]");
}

TEST_CASE("0-d tensors: dim-taking ops work like PyTorch or raise pg::Error") {
  Tensor s = scalar_tensor(1.5, {DType::F64});
  CHECK(s.squeeze(0).dim() == 0);
  CHECK(s.squeeze(-1).item() == 1.5);
  CHECK(s.transpose(0, -1).dim() == 0);
  CHECK(softmax(s, 0).item() == 1);
  CHECK(log_softmax(s, -1).item() == 0);
  CHECK(s.unsqueeze(-1).shape() == Shape{1});
  CHECK(stack({s, s}, 0).shape() == Shape{2});
  CHECK_PG_ERROR(s.size(0), "size", "0-d");
  CHECK_PG_ERROR(s.select(0, 0), "select", "0-d");
  CHECK_PG_ERROR(s.narrow(0, 0, 1), "narrow", "0-d");
  CHECK_PG_ERROR(s.slice(0, 0, 1), "slice", "0-d");
  CHECK_PG_ERROR(s.squeeze(1), "squeeze", "dim 1");
}

TEST_CASE("a shape whose byte count overflows is refused, not allocated small") {
  CHECK_PG_ERROR(zeros({int64_t{1} << 61}, {DType::F64}), "empty", "2^63 bytes");
  CHECK_PG_ERROR(empty({int64_t{1} << 32, int64_t{1} << 32}), "empty", "2^63 bytes");
  CHECK(empty({0, int64_t{1} << 62}).numel() == 0);  // empty shapes need no bytes
}
