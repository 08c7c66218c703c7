// Fuzz target: the attention-activation spec parser (`--attn`, and the spec stored in every
// checkpoint's config). A spec it accepts must round-trip: parse(spec()) gives the same policy.
#include <string>

#include "fuzz_input.h"
#include "nn/attention_activation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  pg::fuzz::expect_clean([&] {
    pg::AttentionActivation a = pg::AttentionActivation::parse(text);
    pg::AttentionActivation b = pg::AttentionActivation::parse(a.spec());
    pg::fuzz::require(a.kind() == b.kind() && a.power() == b.power() &&
                          a.n_exponent() == b.n_exponent() && a.n_visible() == b.n_visible(),
                      "spec() of a parsed activation parses to another activation");
    pg::fuzz::require(b.spec() == a.spec(), "spec() is not canonical");
  });
  return 0;
}
