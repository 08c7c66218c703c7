#include "tools/cli/seed_stats.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "core/error.h"

namespace pg::tools {

double mean(const std::vector<double>& v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double sample_std(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  double m = mean(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

std::vector<double> paired_differences(const std::vector<double>& a, const std::vector<double>& b) {
  PG_CHECK(a.size() == b.size(), "compare",
           "paired differences need one value per seed on both "
           "sides, got ",
           a.size(), " and ", b.size());
  std::vector<double> d(a.size());
  for (size_t k = 0; k < a.size(); ++k) d[k] = a[k] - b[k];
  return d;
}

std::string format_value(double x, bool percent) {
  char buf[64];
  std::snprintf(buf, sizeof buf, percent ? "%.2f%%" : "%.4f", percent ? 100 * x : x);
  return buf;
}

std::string mean_std(const std::vector<double>& v, bool percent, bool sign) {
  std::string m = format_value(mean(v), percent);
  if (sign && mean(v) >= 0) m = "+" + m;
  return v.size() < 2 ? m : m + " ± " + format_value(sample_std(v), percent);
}

}  // namespace pg::tools
