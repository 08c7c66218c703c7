// The statistics of compare's report: values over seeds, and their formatting.
#pragma once
#include <string>
#include <vector>

namespace pg::tools {

/// The arithmetic mean; NaN for no values.
double mean(const std::vector<double>& v);
/// The sample standard deviation (divides by n - 1); 0 for fewer than two values.
double sample_std(const std::vector<double>& v);
/// a[k] - b[k] for each seed k: the paired differences of two activations run on the same seeds
/// (pg::Error when the lists differ in length).
std::vector<double> paired_differences(const std::vector<double>& a, const std::vector<double>& b);
/// "0.1234" (4 decimals), or "12.34%" for a fraction shown as a percentage.
std::string format_value(double x, bool percent);
/// "mean ± sample std" of `v` as format_value writes them (the mean alone for one value);
/// `sign` puts a '+' before a mean >= 0 (for differences).
std::string mean_std(const std::vector<double>& v, bool percent, bool sign = false);

}  // namespace pg::tools
