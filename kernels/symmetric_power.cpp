#include "kernels/symmetric_power.h"

#include "core/error.h"

namespace pg {

int64_t SymmetricPower::feature_count(int64_t dim, int power) {
  // C(dim + power - 1, power), one factor at a time (each partial product is a binomial).
  int64_t c = 1;
  for (int k = 1; k <= power; ++k) {
    const int64_t top = dim + k - 1;
    if (c > (int64_t(1) << 62) / top) return -1;
    c = c * top / k;
  }
  return c;
}

SymmetricPower::SymmetricPower(int64_t dim, int power) : dim_(dim), power_(power) {
  PG_CHECK(dim >= 1 && power >= 1 && power <= 8, "SymmetricPower",
           "expected dim >= 1 and power in 1..8, got dim ", dim, ", power ", power);
  const int64_t d = feature_count(dim, power);
  PG_CHECK(d > 0 && d <= (int64_t(1) << 26), "SymmetricPower", "degree ", power, " over ", dim,
           " coordinates has ", d < 0 ? std::string("more than 2^62") : std::to_string(d),
           " features, more than 2^26");
  count_.reserve(static_cast<size_t>(d));
  std::vector<int32_t> idx(static_cast<size_t>(power), 0);
  while (true) {
    // The multinomial count: p! / prod over runs of equal coordinates of (run length)!.
    int64_t count = 1, run = 1;
    for (int k = 2; k <= power; ++k) count *= k;
    for (int k = 1; k < power; ++k) {
      run = idx[static_cast<size_t>(k)] == idx[static_cast<size_t>(k) - 1] ? run + 1 : 1;
      count /= run;  // exact: p! / (1 * 2 * ... * run) for each run of equal coordinates
    }
    count_.push_back(static_cast<double>(count));
    // The next non-decreasing tuple.
    int k = power - 1;
    while (k >= 0 && idx[static_cast<size_t>(k)] == dim - 1) --k;
    if (k < 0) break;
    ++idx[static_cast<size_t>(k)];
    for (int l = k + 1; l < power; ++l) idx[static_cast<size_t>(l)] = idx[static_cast<size_t>(k)];
  }
}

}  // namespace pg
