// Reading model configs back from the JSON stored in checkpoints, and the limits every config
// must respect (whether it comes from a file or from command-line flags).
#pragma once
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "nn/attention_activation.h"

namespace pg {

/// Largest model a config may describe: 2^32 parameters (16 GiB of f32 weights, about 64 GiB
/// with gradients and AdamW's two buffers). Far above anything polygrad trains; it exists so
/// that a corrupt or hostile config is refused before it allocates.
inline constexpr int64_t kMaxConfigParameters = int64_t{1} << 32;

/// Parses config JSON text; throws pg::Error naming `who` when it is not a JSON object.
inline nlohmann::json parse_config(const std::string& text, const std::string& who) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  PG_CHECK(!j.is_discarded() && j.is_object(), who,
           "config is not a JSON object: ", text.size() > 80 ? text.substr(0, 80) + "..." : text);
  return j;
}

namespace detail {
// The JSON type a C++ field needs, in words, and whether `v` has it (exactly: 3.0 is not an
// integer, 1 is not a bool, an integer above 2^63 - 1 does not fit).
inline const char* json_kind(int64_t) { return "an integer"; }
inline const char* json_kind(double) { return "a number"; }
inline const char* json_kind(const std::string&) { return "a string"; }
inline const char* json_kind(bool) { return "true or false"; }
inline bool json_fits(const nlohmann::json& v, int64_t) {
  return v.is_number_integer() &&
         (!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX));
}
inline bool json_fits(const nlohmann::json& v, double) { return v.is_number(); }
inline bool json_fits(const nlohmann::json& v, const std::string&) { return v.is_string(); }
inline bool json_fits(const nlohmann::json& v, bool) { return v.is_boolean(); }
// An integer beyond int64_t: the right type, the wrong size.
template <typename T>
bool json_too_large(const nlohmann::json& v, const T& out) {
  return std::is_same_v<T, int64_t> && v.is_number_integer() && !json_fits(v, out);
}
}  // namespace detail

/// Reads field `key` into `out`; throws pg::Error naming `who` and the field when it is
/// missing or of the wrong JSON type. Values are checked afterwards by the config's check().
template <typename T>
void config_field(const nlohmann::json& j, const char* key, T& out, const std::string& who) {
  PG_CHECK(j.contains(key), who, "config misses '", key, "' (", detail::json_kind(out), ")");
  const nlohmann::json& v = j[key];
  PG_CHECK(!detail::json_too_large(v, out), who, "config field '", key, "' is ", v.dump(),
           ", too large (expected at most 2^63 - 1)");
  PG_CHECK(detail::json_fits(v, out), who, "config field '", key,
           "' has the wrong type: ", v.dump(), ", expected ", detail::json_kind(out));
  v.get_to(out);
}

/// Refuses a config whose own "model" field (to_json writes one) names another model:
/// a ViT config is not a GPT config.
inline void check_config_model(const nlohmann::json& j, const char* model, const std::string& who) {
  if (!j.contains("model")) return;
  const nlohmann::json& m = j["model"];
  PG_CHECK(m == model, who, "config field 'model' is '",
           m.is_string() ? m.get<std::string>() : m.dump(), "', expected '", model, "'");
}

/// Throws pg::Error naming `who` and the field unless lo <= value <= hi.
inline void check_config_range(const std::string& who, const char* key, int64_t value, int64_t lo,
                               int64_t hi) {
  PG_CHECK(value >= lo && value <= hi, who, "config field '", key, "' is ", value,
           ", expected an integer from ", lo, " to ", hi);
}

/// Throws pg::Error naming `who` and the field unless `value` is finite and in [lo, hi)
/// (or [lo, hi] when `hi_included`).
inline void check_config_range(const std::string& who, const char* key, double value, double lo,
                               double hi, bool hi_included) {
  bool ok = std::isfinite(value) && value >= lo && (hi_included ? value <= hi : value < hi);
  PG_CHECK(ok, who, "config field '", key, "' is ", value, ", expected a number in [", lo, ", ", hi,
           hi_included ? "]" : ")");
}

/// Throws pg::Error naming `who` when `count` exceeds kMaxConfigParameters.
inline void check_config_parameters(const std::string& who, int64_t count) {
  PG_CHECK(count <= kMaxConfigParameters, who, "config describes ", count,
           " parameters, more than the limit of ", kMaxConfigParameters,
           " (2^32) that polygrad accepts");
}

/// The fields every transformer config shares: sizes within Config's caps, heads dividing
/// dim, dropout in [0, 1) and an attention spec that parses.
template <typename Config>
void check_transformer_fields(const std::string& who, const Config& c) {
  check_config_range(who, "dim", c.dim, 1, Config::kMaxDim);
  check_config_range(who, "layers", c.layers, 1, Config::kMaxLayers);
  check_config_range(who, "heads", c.heads, 1, c.dim);
  PG_CHECK(c.dim % c.heads == 0, who, "config field 'heads' is ", c.heads,
           ", which does not divide 'dim' ", c.dim);
  check_config_range(who, "mlp_ratio", c.mlp_ratio, 1, Config::kMaxMlpRatio);
  check_config_range(who, "dropout", c.dropout, 0.0, 1.0, false);
  try {
    AttentionActivation::parse(c.attn);
  } catch (const Error& e) {
    throw Error(who, std::string("config field 'attn': ") + e.what());
  }
}

}  // namespace pg
