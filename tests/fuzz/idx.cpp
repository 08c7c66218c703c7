// Fuzz target: the IDX reader (MNIST layout), as raw bytes and gzip-compressed, for images and
// labels. Raw inputs that start like gzip exercise the decompressor's error paths as well.
#include <zlib.h>

#include <vector>

#include "fuzz_input.h"
#include "nn/mnist.h"

namespace {

std::vector<uint8_t> gzip(const uint8_t* data, size_t size) {
  z_stream z{};
  if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<uint8_t> out(deflateBound(&z, size) + 32);
  z.next_in = const_cast<uint8_t*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void read_both(const std::string& path) {
  pg::fuzz::expect_clean([&] {
    pg::Tensor images = pg::load_idx_images(path);
    pg::fuzz::require(images.dim() == 3, "IDX images are not [N, rows, cols]");
  });
  pg::fuzz::expect_clean([&] {
    pg::Tensor labels = pg::load_idx_labels(path);
    pg::fuzz::require(labels.dim() == 1, "IDX labels are not [N]");
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    pg::fuzz::InputFile raw(data, size);
    read_both(raw.path());
  }
  std::vector<uint8_t> z = gzip(data, size);
  pg::fuzz::InputFile gz(z.data(), z.size(), ".gz");
  read_both(gz.path());
  return 0;
}
