#include "nn/mnist.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <utility>
#include <vector>

#include "kernels/factory.h"

namespace pg {

namespace {

uint32_t be32(const std::vector<unsigned char>& d, size_t at) {
  return (uint32_t(d[at]) << 24) | (uint32_t(d[at + 1]) << 16) | (uint32_t(d[at + 2]) << 8) |
         uint32_t(d[at + 3]);
}

// A file read through zlib, decompressed if gzipped (gzread passes plain files through).
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    PG_CHECK(std::filesystem::is_regular_file(path), path, "no such file");
    f_ = gzopen(path.c_str(), "rb");
    PG_CHECK(f_ != nullptr, path, "cannot open file");
  }
  ~GzReader() { gzclose(f_); }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Appends up to `n` more bytes to `out`; fewer only at the end of the data.
  void append(std::vector<unsigned char>& out, uint64_t n) {
    unsigned char buf[1 << 16];
    while (n > 0) {
      int got = gzread(f_, buf, static_cast<unsigned>(std::min<uint64_t>(n, sizeof buf)));
      if (got < 0) {
        int err = 0;
        const char* msg = gzerror(f_, &err);
        throw Error(path_, std::string("corrupt or truncated gzip data (") + msg + ")");
      }
      if (got == 0) {
        int err = 0;
        const char* msg = gzerror(f_, &err);
        PG_CHECK(err >= 0, path_, "corrupt or truncated gzip data (", msg, ")");
        return;
      }
      out.insert(out.end(), buf, buf + got);
      n -= static_cast<uint64_t>(got);
    }
  }

 private:
  std::string path_;
  gzFile f_;
};

// An IDX file: `header` bytes, from which `body(header)` gives the size of the data after it
// (with `what` describing it); the file must hold exactly that. Reading stops one byte past the
// declared size, so a small .gz that would inflate to far more (a gzip bomb) fails there instead
// of filling memory, and memory grows with the data actually present, not with the header's claim.
template <class Body>
std::vector<unsigned char> read_idx(const std::string& path, size_t header, const char* kind,
                                    Body body) {
  GzReader in(path);
  std::vector<unsigned char> d;
  in.append(d, header);
  PG_CHECK(d.size() >= header, path, "too short for an IDX ", kind, " header (", d.size(),
           " bytes)");
  auto [bytes, what] = body(d);
  const uint64_t expected = header + bytes;
  in.append(d, bytes + 1);
  PG_CHECK(d.size() <= expected, path, "holds more than the ", expected,
           " bytes its header declares (", what, ")");
  PG_CHECK(d.size() == expected, path, "size ", d.size(), " bytes does not match ", what,
           " (expected ", expected, ")");
  return d;
}

}  // namespace

Tensor load_idx_images(const std::string& path) {
  uint64_t n = 0, rows = 0, cols = 0;
  auto d = read_idx(path, 16, "image", [&](const std::vector<unsigned char>& h) {
    PG_CHECK(be32(h, 0) == 2051, path, "bad magic number ", be32(h, 0),
             " (expected 2051 for IDX images)");
    n = be32(h, 4), rows = be32(h, 8), cols = be32(h, 12);
    PG_CHECK(rows > 0 && cols > 0 && rows <= 4096 && cols <= 4096, path, "implausible image size ",
             rows, "x", cols);
    return std::pair{n * rows * cols, detail::concat(n, " images of ", rows, "x", cols)};
  });
  Tensor t = empty({int64_t(n), int64_t(rows), int64_t(cols)});
  float* p = t.data<float>();
  for (uint64_t i = 0; i < n * rows * cols; ++i) p[i] = d[16 + i] / 255.0f;
  return t;
}

Tensor load_idx_labels(const std::string& path) {
  uint64_t n = 0;
  auto d = read_idx(path, 8, "label", [&](const std::vector<unsigned char>& h) {
    PG_CHECK(be32(h, 0) == 2049, path, "bad magic number ", be32(h, 0),
             " (expected 2049 for IDX labels)");
    n = be32(h, 4);
    return std::pair{n, detail::concat(n, " labels")};
  });
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
