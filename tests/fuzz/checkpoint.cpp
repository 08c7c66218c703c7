// Fuzz target: the checkpoint loader, placeholder until the validated loader lands.
#include "nn/checkpoint.h"

#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pg::fuzz::InputFile in(data, size);
  pg::fuzz::expect_clean([&] { pg::load_checkpoint(in.path()); });
  return 0;
}
