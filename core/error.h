// pg::Error: the one exception type for user mistakes (shape, dtype, device, index, file, flag).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace pg {

/// Error raised for any misuse of the API; the message names the op and what was expected.
class Error : public std::runtime_error {
 public:
  Error(const std::string& op, const std::string& message);
  /// The op (or file, or component) that raised the error.
  const std::string& op() const { return op_; }

 private:
  std::string op_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace pg

/// Throws pg::Error(op, message...) unless cond holds.
#define PG_CHECK(cond, op, ...)                                              \
  do {                                                                       \
    if (!(cond)) throw ::pg::Error((op), ::pg::detail::concat(__VA_ARGS__)); \
  } while (0)
