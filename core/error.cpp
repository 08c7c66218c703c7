#include "core/error.h"

namespace pg {

Error::Error(const std::string& op, const std::string& message)
    : std::runtime_error(op + ": " + message), op_(op) {}

}  // namespace pg
