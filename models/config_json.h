// Reading model configs back from the JSON stored in checkpoints.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace pg {

/// Parses config JSON text; throws pg::Error naming `who` when it is not a JSON object.
inline nlohmann::json parse_config(const std::string& text, const char* who) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  PG_CHECK(!j.is_discarded() && j.is_object(), who, "config is not a JSON object: ", text);
  return j;
}

/// Reads field `key` into `out`; throws pg::Error naming `who` and the field when it is
/// missing or of the wrong type.
template <typename T>
void config_field(const nlohmann::json& j, const char* key, T& out, const char* who) {
  PG_CHECK(j.contains(key), who, "config misses '", key, "'");
  try {
    j.at(key).get_to(out);
  } catch (const std::exception&) {
    throw Error(who, std::string("config field '") + key + "' has the wrong type");
  }
}

}  // namespace pg
