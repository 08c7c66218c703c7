// Data loaders on small files the tests write themselves: IDX (raw and gzipped), text.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "nn/data_loader.h"
#include "nn/mnist.h"
#include "nn/recall.h"
#include "nn/text.h"
#include "polygrad.h"
#include "scratch_files.h"

using namespace pg;
namespace fs = std::filesystem;

namespace {

void put_be32(std::string& s, uint32_t v) {
  for (int shift : {24, 16, 8, 0}) s.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::string idx_images(uint32_t n, uint32_t rows, uint32_t cols, uint32_t magic = 2051) {
  std::string s;
  put_be32(s, magic);
  put_be32(s, n);
  put_be32(s, rows);
  put_be32(s, cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) s.push_back(static_cast<char>(i % 256));
  return s;
}

std::string idx_labels(uint32_t n, uint32_t magic = 2049) {
  std::string s;
  put_be32(s, magic);
  put_be32(s, n);
  for (uint32_t i = 0; i < n; ++i) s.push_back(static_cast<char>(i % 10));
  return s;
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

void write_gz(const fs::path& p, const std::string& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  REQUIRE(f != nullptr);
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

}  // namespace

TEST_CASE("IDX images and labels load raw and gzipped with the right values") {
  fs::path d = pgt::temp_dir("data", "idx");
  write_file(d / "train-images-idx3-ubyte", idx_images(5, 3, 4));
  write_gz(d / "train-labels-idx1-ubyte.gz", idx_labels(5));
  write_gz(d / "t10k-images-idx3-ubyte.gz", idx_images(2, 3, 4));
  write_file(d / "t10k-labels-idx1-ubyte", idx_labels(2));
  MnistData m = load_mnist(d.string());
  CHECK(m.train.images.shape() == Shape{5, 3, 4});
  CHECK(m.test.images.shape() == Shape{2, 3, 4});
  CHECK(m.train.labels.dtype() == DType::I64);
  auto px = m.train.images.to_vector<float>();
  CHECK(px[13] == doctest::Approx(13 / 255.0));
  CHECK(m.train.labels.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
}

TEST_CASE("bad IDX files are refused with a clear error naming the file") {
  fs::path d = pgt::temp_dir("data", "bad");
  write_file(d / "magic", idx_images(2, 3, 3, 1234));
  CHECK_THROWS_WITH_AS(load_idx_images((d / "magic").string()),
                       doctest::Contains("bad magic number 1234"), pg::Error);
  std::string truncated = idx_images(4, 3, 3);
  truncated.resize(truncated.size() - 5);
  write_file(d / "short", truncated);
  CHECK_THROWS_WITH_AS(load_idx_images((d / "short").string()), doctest::Contains("short"),
                       pg::Error);
  write_file(d / "tiny", "abc");
  CHECK_THROWS_WITH_AS(load_idx_labels((d / "tiny").string()), doctest::Contains("too short"),
                       pg::Error);
  write_file(d / "labels", idx_labels(3, 2051));
  CHECK_THROWS_WITH_AS(load_idx_labels((d / "labels").string()), doctest::Contains("expected 2049"),
                       pg::Error);
  // A gzip stream cut in the middle.
  write_gz(d / "whole.gz", idx_images(50, 28, 28));
  std::ifstream in(d / "whole.gz", std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), {});
  write_file(d / "cut.gz", gz.substr(0, gz.size() / 2));
  CHECK_THROWS_AS(load_idx_images((d / "cut.gz").string()), pg::Error);
  // A gzip bomb: the header declares 2 images of 3x3 (34 bytes), the stream inflates to 64 MiB.
  // Reading stops one byte past the declared size.
  std::string bomb = idx_images(2, 3, 3);
  bomb.resize(64 << 20, '\0');
  write_gz(d / "bomb.gz", bomb);
  CHECK(fs::file_size(d / "bomb.gz") < (1 << 20));
  CHECK_THROWS_WITH_AS(load_idx_images((d / "bomb.gz").string()),
                       doctest::Contains("more than the 34 bytes its header declares"), pg::Error);
  std::string labels = idx_labels(3) + std::string(1000, '\1');
  write_gz(d / "long_labels.gz", labels);
  CHECK_THROWS_WITH_AS(load_idx_labels((d / "long_labels.gz").string()),
                       doctest::Contains("more than the 11 bytes its header declares (3 labels)"),
                       pg::Error);
  // A header that claims far more than the file holds fails as truncated, without allocating
  // for the claim (4e9 images of 4096x4096).
  std::string liar;
  put_be32(liar, 2051);
  put_be32(liar, 0xffffffffu);
  put_be32(liar, 4096);
  put_be32(liar, 4096);
  write_gz(d / "liar.gz", liar + std::string(100, '\2'));
  CHECK_THROWS_WITH_AS(load_idx_images((d / "liar.gz").string()),
                       doctest::Contains("size 116 bytes does not match"), pg::Error);
  CHECK_THROWS_WITH_AS(load_mnist((d / "nowhere").string()), doctest::Contains("not a directory"),
                       pg::Error);
  CHECK_THROWS_WITH_AS(load_mnist(d.string()), doctest::Contains("missing train-images"),
                       pg::Error);
}

TEST_CASE("text corpus: UTF-8 round trip, vocabulary from the training split, 90/10 split") {
  fs::path d = pgt::temp_dir("data", "text");
  write_file(d / "a.txt", "héllo wörld\n");
  write_file(d / "b.txt", "abc ∑ def\n");
  write_file(d / "skip.dat", "zzzz");
  std::string all = read_text(d.string());
  CHECK(all == "héllo wörld\nabc ∑ def\n");
  CHECK(utf8_encode(utf8_decode(all)) == all);
  CHECK(utf8_decode("a\xff") == std::u32string{U'a', 0xFFFD});
  TextCorpus c = load_text_corpus(d.string(), 0.1);
  size_t n = utf8_decode(all).size();
  CHECK(c.train.size() == static_cast<size_t>(n * 0.9));
  CHECK(c.vocab.decode(c.train) == utf8_encode(utf8_decode(all).substr(0, c.train.size())));
  CharVocab again = CharVocab::from_utf8(c.vocab.to_utf8());
  CHECK(again.size() == c.vocab.size());
  CHECK_THROWS_WITH_AS(c.vocab.encode(U"Q"), doctest::Contains("not in the vocabulary"), pg::Error);
  CHECK_THROWS_AS(read_text((d / "missing").string()), pg::Error);
}

TEST_CASE("text that is not UTF-8 decodes to U+FFFD, so its vocabulary always reads back") {
  // A surrogate, a code point past U+10FFFF and an overlong '/': each byte becomes U+FFFD, as
  // the validator of checkpoint vocabularies would refuse them (the fuzzer found the mismatch).
  const std::string bad =
      "a\xed\xa0\x80"
      "b\xf4\x90\x80\x80"
      "c\xc0\xaf";
  const std::u32string fffd(1, 0xFFFD);
  CHECK(utf8_decode(bad) ==
        U"a" + fffd + fffd + fffd + U"b" + fffd + fffd + fffd + fffd + U"c" + fffd + fffd);
  CHECK(utf8_error_offset(bad) == 1);
  CHECK(utf8_error_offset(utf8_encode(utf8_decode(bad))) == std::string::npos);
  fs::path f = pgt::temp_dir("data", "bad_utf8") / "text.txt";
  std::ofstream(f) << bad << bad << "\n";
  TextCorpus c = load_text_corpus(f.string(), 0.1);
  CHECK(CharVocab::from_utf8(c.vocab.to_utf8()).to_utf8() == c.vocab.to_utf8());
}

TEST_CASE("batches depend only on (seed, step) and the prefetcher yields them in order") {
  std::vector<int32_t> tokens(1000);
  for (int i = 0; i < 1000; ++i) tokens[i] = i % 97;
  Batch a = text_batch(tokens, 4, 16, 42, 7), b = text_batch(tokens, 4, 16, 42, 7);
  CHECK(a.inputs.to_vector<int64_t>() == b.inputs.to_vector<int64_t>());
  auto x = a.inputs.to_vector<int64_t>(), y = a.targets.to_vector<int64_t>();
  for (int t = 0; t + 1 < 16; ++t) CHECK(y[t] == x[t + 1]);
  CHECK(text_batch(tokens, 4, 16, 42, 8).inputs.to_vector<int64_t>() != x);
  Prefetcher p([&](int64_t s) { return text_batch(tokens, 4, 16, 42, s); }, 5);
  CHECK(p.next().inputs.to_vector<int64_t>() ==
        text_batch(tokens, 4, 16, 42, 5).inputs.to_vector<int64_t>());
  CHECK(p.next().inputs.to_vector<int64_t>() ==
        text_batch(tokens, 4, 16, 42, 6).inputs.to_vector<int64_t>());

  ImageSet set{rand({10, 2, 2}), arange(10)};
  ImageBatcher batcher(set, 3, 1);
  CHECK(batcher.steps_per_epoch() == 3);
  // One epoch visits distinct images; the same step gives the same batch.
  std::vector<int64_t> seen;
  for (int s = 0; s < 3; ++s)
    for (int64_t l : batcher.batch(s).targets.to_vector<int64_t>()) seen.push_back(l);
  std::sort(seen.begin(), seen.end());
  CHECK(std::unique(seen.begin(), seen.end()) == seen.end());
  CHECK(batcher.batch(4).targets.to_vector<int64_t>() ==
        batcher.batch(4).targets.to_vector<int64_t>());
  CHECK(batcher.batch(1).inputs.shape() == Shape{3, 1, 2, 2});
}

TEST_CASE("image augmentation: mirrored or shifted copies with zero fill, fixed per step") {
  // Each image holds its own index times 100 plus the pixel's position: any pixel tells where it
  // came from.
  const int64_t n = 64, h = 5, w = 6;
  std::vector<float> px(static_cast<size_t>(n * h * w));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < h * w; ++p) px[i * h * w + p] = static_cast<float>(1 + p + 100 * i);
  ImageSet set{from_vector(px, {n, h, w}), arange(n)};
  ImageBatcher plain(set, 16, 3), aug(set, 16, 3, ImageAugment{true, 2});
  for (int64_t step : {0, 5}) {
    Batch a = aug.batch(step), p = plain.batch(step);
    CHECK(a.targets.to_vector<int64_t>() == p.targets.to_vector<int64_t>());  // same images
    CHECK(a.inputs.to_vector<float>() == aug.batch(step).inputs.to_vector<float>());
    auto v = a.inputs.to_vector<float>();
    auto labels = a.targets.to_vector<int64_t>();
    int changed = 0;
    for (int64_t b = 0; b < 16; ++b) {
      // Every pixel is zero fill or comes from this image at a position that is a shift by at
      // most 2 of the (possibly mirrored) target position.
      bool any_moved = false;
      for (int64_t r = 0; r < h; ++r)
        for (int64_t c = 0; c < w; ++c) {
          float x = v[(b * h + r) * w + c];
          if (x == 0) continue;
          int64_t src = static_cast<int64_t>(x) - 1 - 100 * labels[b];
          REQUIRE(src >= 0);
          REQUIRE(src < h * w);
          int64_t sr = src / w, sc = src % w;
          bool near =
              std::abs(sr - r) <= 2 && (std::abs(sc - c) <= 2 || std::abs((w - 1 - sc) - c) <= 2);
          CHECK(near);
          any_moved = any_moved || src != r * w + c;
        }
      changed += any_moved;
    }
    CHECK(changed >= 8);  // most of 16 images move (the chance of none moving is 1/50 each)
  }
  CHECK_THROWS_AS(ImageBatcher(set, 4, 1, ImageAugment{false, 5}), Error);
}

TEST_CASE(
    "recall: every query's target is the value paired with its key; same (seed, index), same "
    "sequence") {
  RecallTask task;
  task.vocab = 64;
  task.context = 48;
  task.pairs = 6;
  Batch b = recall_batch(task, 7, 0, 5);
  REQUIRE(b.inputs.shape() == Shape{5, 48});
  const auto x = b.inputs.to_vector<int64_t>(), y = b.targets.to_vector<int64_t>();
  for (int64_t s = 0; s < 5; ++s) {
    const int64_t* in = x.data() + s * 48;
    const int64_t* target = y.data() + s * 48;
    std::map<int64_t, int64_t> value_of;
    std::set<int64_t> values;
    for (int64_t i = 0; i < task.pairs; ++i) {
      CHECK(in[2 * i] >= 1);
      CHECK(in[2 * i] < 32);  // keys from [1, V/2)
      CHECK(in[2 * i + 1] >= 32);
      CHECK(in[2 * i + 1] < 64);  // values from [V/2, V)
      value_of[in[2 * i]] = in[2 * i + 1];
      values.insert(in[2 * i + 1]);
      CHECK(target[2 * i] == kRecallNoTarget);
      CHECK(target[2 * i + 1] == kRecallNoTarget);
    }
    CHECK(value_of.size() == 6);  // distinct keys
    CHECK(values.size() == 6);    // distinct values
    std::set<int64_t> queried;
    for (int64_t t = 2 * task.pairs; t < 48; ++t) {
      CHECK(in[t] >= 0);
      CHECK(in[t] < 64);
      if (target[t] == kRecallNoTarget) continue;
      CHECK((t - 2 * task.pairs) % 2 == 0);  // query slots are every other position
      REQUIRE(value_of.count(in[t]) == 1);
      CHECK(target[t] == value_of[in[t]]);
      queried.insert(in[t]);
    }
    CHECK(queried.size() == 6);  // each key queried exactly once
  }
  // A function of (seed, index): a slice of the stream is the same sequences, another seed
  // another stream.
  Batch again = recall_batch(task, 7, 2, 3);
  CHECK(again.inputs.to_vector<int64_t>() ==
        std::vector<int64_t>(x.begin() + 2 * 48, x.begin() + 5 * 48));
  CHECK(again.targets.to_vector<int64_t>() ==
        std::vector<int64_t>(y.begin() + 2 * 48, y.begin() + 5 * 48));
  CHECK(recall_batch(task, 8, 0, 5).inputs.to_vector<int64_t>() != x);
}

TEST_CASE("recall: short gaps are likelier (power law), and bad sizes are refused by name") {
  RecallTask task;
  task.vocab = 512;
  task.context = 256;
  task.pairs = 8;
  const auto y = recall_batch(task, 1, 0, 200).targets.to_vector<int64_t>();
  int64_t first_half = 0, second_half = 0;  // queries in the first and second half of the slots
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] == kRecallNoTarget) continue;
    const int64_t slot = (static_cast<int64_t>(i % 256) - 16) / 2;
    (slot < 60 ? first_half : second_half) += 1;
  }
  CHECK(first_half + second_half == 200 * 8);
  CHECK(first_half > second_half);
  task.pairs = 65;  // 4 * 65 > 256
  CHECK_THROWS_WITH_AS(task.check("recall"), doctest::Contains("at least 4 * pairs = 260"),
                       pg::Error);
  task.pairs = 300;
  CHECK_THROWS_WITH_AS(task.check("recall"), doctest::Contains("distinct keys"), pg::Error);
  CHECK_THROWS_WITH_AS(RecallTask::from_json("{\"vocab\": 8}", "ck.safetensors: task"),
                       doctest::Contains("'context'"), pg::Error);
  CHECK(RecallTask::from_json(RecallTask{}.to_json()).to_json() == RecallTask{}.to_json());
}

TEST_CASE("a folder corpus by glob: sorted files, every 10th for validation, skipped folders") {
  fs::path d = pgt::temp_dir("data", "glob");
  fs::create_directories(d / "pkg" / "tests");
  fs::create_directories(d / "b");
  for (int i = 0; i < 12; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "m%02d.py", i);
    write_file((i % 2 ? d / "pkg" : d / "b") / name, std::string(i + 1, 'a') + "b");
  }
  write_file(d / "pkg" / "tests" / "test_x.py", "Z");  // a skipped folder
  write_file(d / "notes.txt", "Q");                    // not matching
  const std::vector<std::string> files = list_files(d.string(), "*.py", {"tests"});
  REQUIRE(files.size() == 12);
  CHECK(std::is_sorted(files.begin(), files.end()));
  CHECK(files.front() == (d / "b" / "m00.py").string());  // b/ sorts before pkg/
  CHECK(list_files(d.string(), "*.py").size() == 13);
  // Sorted: b/m00 m02 ... m10, pkg/m01 ... m11; file i holds i + 1 'a's and a 'b'. The 10th
  // file (pkg/m07) is validation text, the others training text in that order.
  TextCorpus c = load_file_corpus(files);
  CHECK(c.vocab.decode(c.val) == "aaaaaaaab");
  std::string train;
  for (int i : {0, 2, 4, 6, 8, 10, 1, 3, 5, 9, 11}) train += std::string(i + 1, 'a') + "b";
  CHECK(c.vocab.decode(c.train) == train);
  CHECK_THROWS_WITH_AS(list_files(d.string(), "*.rs"), doctest::Contains("no file matching '*.rs'"),
                       pg::Error);
  CHECK_THROWS_WITH_AS(list_files((d / "notes.txt").string(), "*"),
                       doctest::Contains("is not a folder"), pg::Error);
  CHECK_THROWS_WITH_AS(load_file_corpus({files.front()}), doctest::Contains("only 1 files"),
                       pg::Error);
  // load_corpus: a glob splits by file, none by offset.
  CHECK(load_corpus(d.string(), "*.py").val.size() == 9);
}

TEST_CASE("the Python standard library corpus: this machine's sources, tests left out") {
  const std::string dir = python_stdlib_dir();  // tools/test installs libpython3-stdlib
  CHECK(fs::exists(fs::path(dir) / "os.py"));
  const std::vector<std::string> files = list_files(dir, "*.py", python_stdlib_skipped_folders());
  CHECK(files.size() > 300);
  for (const auto& f : files) {
    INFO(f);
    CHECK(f.find("/test/") == std::string::npos);
    CHECK(f.find("/tests/") == std::string::npos);
  }
}
