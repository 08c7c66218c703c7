#include "nn/mnist.h"

#include <zlib.h>

#include <filesystem>
#include <vector>

#include "kernels/factory.h"

namespace pg {

namespace {

// Whole file, decompressed if gzipped (gzread passes plain files through unchanged).
std::vector<unsigned char> read_maybe_gzipped(const std::string& path) {
  PG_CHECK(std::filesystem::is_regular_file(path), path, "no such file");
  gzFile f = gzopen(path.c_str(), "rb");
  PG_CHECK(f != nullptr, path, "cannot open file");
  std::vector<unsigned char> data;
  unsigned char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) data.insert(data.end(), buf, buf + n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  std::string why = err < 0 ? msg : "";
  gzclose(f);
  PG_CHECK(n == 0 && err >= 0, path, "corrupt or truncated gzip data (", why, ")");
  return data;
}

uint32_t be32(const std::vector<unsigned char>& d, size_t at) {
  return (uint32_t(d[at]) << 24) | (uint32_t(d[at + 1]) << 16) | (uint32_t(d[at + 2]) << 8) |
         uint32_t(d[at + 3]);
}

}  // namespace

Tensor load_idx_images(const std::string& path) {
  auto d = read_maybe_gzipped(path);
  PG_CHECK(d.size() >= 16, path, "too short for an IDX image header (", d.size(), " bytes)");
  PG_CHECK(be32(d, 0) == 2051, path, "bad magic number ", be32(d, 0),
           " (expected 2051 for IDX images)");
  uint64_t n = be32(d, 4), rows = be32(d, 8), cols = be32(d, 12);
  PG_CHECK(rows > 0 && cols > 0 && rows <= 4096 && cols <= 4096, path, "implausible image size ",
           rows, "x", cols);
  PG_CHECK(d.size() == 16 + n * rows * cols, path, "size ", d.size(), " bytes does not match ", n,
           " images of ", rows, "x", cols, " (expected ", 16 + n * rows * cols, ")");
  Tensor t = empty({int64_t(n), int64_t(rows), int64_t(cols)});
  float* p = t.data<float>();
  for (uint64_t i = 0; i < n * rows * cols; ++i) p[i] = d[16 + i] / 255.0f;
  return t;
}

Tensor load_idx_labels(const std::string& path) {
  auto d = read_maybe_gzipped(path);
  PG_CHECK(d.size() >= 8, path, "too short for an IDX label header (", d.size(), " bytes)");
  PG_CHECK(be32(d, 0) == 2049, path, "bad magic number ", be32(d, 0),
           " (expected 2049 for IDX labels)");
  uint64_t n = be32(d, 4);
  PG_CHECK(d.size() == 8 + n, path, "size ", d.size(), " bytes does not match ", n,
           " labels (expected ", 8 + n, ")");
  Tensor t = empty({int64_t(n)}, {DType::I64});
  int64_t* p = t.data<int64_t>();
  for (uint64_t i = 0; i < n; ++i) p[i] = d[8 + i];
  return t;
}

MnistData load_mnist(const std::string& dir) {
  namespace fs = std::filesystem;
  PG_CHECK(fs::is_directory(dir), dir, "not a directory (",
           dir == kFashionMnistDir
               ? "the default data set, Debian's dataset-fashion-mnist package: "
                 "apt-get install dataset-fashion-mnist; or pass"
               : "expected",
           " a directory of MNIST IDX files)");
  auto find = [&](const std::string& stem) {
    for (const char* ext : {".gz", ""}) {
      fs::path p = fs::path(dir) / (stem + ext);
      if (fs::exists(p)) return p.string();
    }
    throw Error(dir, "missing " + stem + "[.gz]");
  };
  MnistData m;
  m.train = {load_idx_images(find("train-images-idx3-ubyte")),
             load_idx_labels(find("train-labels-idx1-ubyte"))};
  m.test = {load_idx_images(find("t10k-images-idx3-ubyte")),
            load_idx_labels(find("t10k-labels-idx1-ubyte"))};
  PG_CHECK(m.train.images.size(0) == m.train.labels.size(0), dir, "train split has ",
           m.train.images.size(0), " images but ", m.train.labels.size(0), " labels");
  PG_CHECK(m.test.images.size(0) == m.test.labels.size(0), dir, "test split has ",
           m.test.images.size(0), " images but ", m.test.labels.size(0), " labels");
  return m;
}

}  // namespace pg
