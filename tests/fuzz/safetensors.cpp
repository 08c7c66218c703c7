// Fuzz target: the safetensors reader. Whatever it accepts must also survive a write and a
// second read unchanged, so a reader that accepts more than it can represent is caught too.
#include "nn/safetensors.h"

#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pg::fuzz::InputFile in(data, size);
  pg::fuzz::expect_clean([&] {
    pg::SafetensorsFile f = pg::load_safetensors(in.path());
    pg::fuzz::InputFile out(nullptr, 0, ".copy");
    pg::save_safetensors(out.path(), f.tensors, f.metadata);
    pg::SafetensorsFile g = pg::load_safetensors(out.path());
    pg::fuzz::require(g.metadata == f.metadata && g.tensors.size() == f.tensors.size(),
                      "a re-written file reads back with other names or metadata");
    for (const auto& [name, t] : f.tensors) {
      const pg::Tensor& u = g.tensors.at(name);
      pg::fuzz::require(u.shape() == t.shape() && u.dtype() == t.dtype(),
                        "a re-written tensor reads back with another shape or dtype");
    }
  });
  return 0;
}
