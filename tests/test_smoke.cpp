#include <doctest/doctest.h>

#include "polygrad.h"

TEST_CASE("smoke: add and backward") {
  pg::Tensor a = pg::from_vector<double>({1, 2, 3}, {3}, pg::Device::cpu(), true);
  pg::Tensor b = pg::from_vector<double>({4, 5, 6}, {3}, pg::Device::cpu(), true);
  pg::Tensor y = pg::sum(a * b);
  CHECK(y.item() == doctest::Approx(32));
  y.backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{4, 5, 6});
}
