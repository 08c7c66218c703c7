// The `polygrad` command end to end: help, one-line errors for bad flags, and tiny real runs of
// train vit / eval / train gpt / sample / --resume on data the test writes itself.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "nn/checkpoint.h"

namespace fs = std::filesystem;

namespace {

struct Result {
  int code = -1;    // exit status (-1: killed by a signal)
  std::string out;  // stdout
  std::string err;  // stderr
};

fs::path temp_root() {
  static fs::path root = [] {
    fs::path d = fs::temp_directory_path() / "pg_test_cli";
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return root;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `polygrad ARGS` with stdin from /dev/null, capturing stdout and stderr apart.
Result run(const std::string& args) {
  static int counter = 0;
  fs::path err = temp_root() / ("stderr_" + std::to_string(counter++) + ".txt");
  std::string cmd = quote(PG_CLI) + " " + args + " </dev/null 2>" + quote(err.string());
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_file(err);
  return r;
}

int count_char(const std::string& s, char c) {
  return static_cast<int>(std::count(s.begin(), s.end(), c));
}

// A failed command: non-zero exit, exactly one line on stderr naming the program, no trace of
// a crash or an uncaught exception.
void check_one_line_error(const Result& r, const std::string& must_contain) {
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK(r.code > 0);
  CHECK(count_char(r.err, '\n') == 1);
  CHECK(r.err.back() == '\n');
  CHECK(r.err.rfind("polygrad: ", 0) == 0);
  CHECK(r.err.find(must_contain) != std::string::npos);
  for (const char* crash : {"terminate called", "what()", "Aborted", "Segmentation", "#0 "})
    CHECK(r.err.find(crash) == std::string::npos);
}

void put_be32(std::string& s, uint32_t v) {
  for (int shift : {24, 16, 8, 0}) s.push_back(static_cast<char>((v >> shift) & 0xff));
}

// An MNIST-layout directory of `train` + `test` 8x8 images (raw IDX, not gzipped); labels
// cycle through 0..9 and each image's brightness depends on its label.
fs::path write_mnist_dir(const std::string& name, uint32_t train, uint32_t test) {
  fs::path d = temp_root() / name;
  fs::create_directories(d);
  auto write = [&](const std::string& stem, uint32_t n) {
    std::string images, labels;
    put_be32(images, 2051);
    put_be32(images, n);
    put_be32(images, 8);
    put_be32(images, 8);
    put_be32(labels, 2049);
    put_be32(labels, n);
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t label = i % 10;
      labels.push_back(static_cast<char>(label));
      for (uint32_t px = 0; px < 64; ++px)
        images.push_back(static_cast<char>((label * 25 + px * 7 + i) % 256));
    }
    std::ofstream(d / (stem + "-images-idx3-ubyte"), std::ios::binary) << images;
    std::ofstream(d / (stem + "-labels-idx1-ubyte"), std::ios::binary) << labels;
  };
  write("train", train);
  write("t10k", test);
  return d;
}

fs::path write_text_file(const std::string& name) {
  fs::path p = temp_root() / name;
  std::ofstream out(p);
  for (int i = 0; i < 60; ++i)
    out << "the quick brown fox jumps over the lazy dog " << i % 7 << "\n";
  return p;
}

// The JSON objects of a metrics file, one per line; every line must parse as an object.
std::vector<nlohmann::json> metrics(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    INFO(line);
    CHECK_FALSE(j.is_discarded());
    CHECK(j.is_object());
    out.push_back(j);
  }
  return out;
}

// The training records (those with a "loss") of a metrics file.
std::vector<nlohmann::json> train_records(const fs::path& p) {
  std::vector<nlohmann::json> out;
  for (auto& j : metrics(p))
    if (j.contains("loss")) out.push_back(j);
  return out;
}

const std::string kVitModel = " --patch 4 --dim 16 --layers 1 --heads 2 --threads 1";
const std::string kGptModel = " --context 16 --dim 16 --layers 1 --heads 2 --batch 4 --threads 1";

}  // namespace

TEST_CASE("--help exits 0 and lists the subcommands") {
  Result r = run("--help");
  INFO(r.out << r.err);
  CHECK(r.code == 0);
  for (const char* sub : {"train", "eval", "sample", "compare"})
    CHECK(r.out.find(sub) != std::string::npos);
  CHECK(r.err.empty());
  Result t = run("train --help");
  CHECK(t.code == 0);
  CHECK(t.out.find("vit") != std::string::npos);
  CHECK(t.out.find("gpt") != std::string::npos);
  Result g = run("train gpt --help");
  CHECK(g.code == 0);
  for (const char* flag : {"--attn", "--steps", "--context", "--resume", "--out"})
    CHECK(g.out.find(flag) != std::string::npos);
}

TEST_CASE("bad command lines exit non-zero with exactly one line on stderr") {
  check_one_line_error(run("train gpt --no-such-flag"), "--no-such-flag");
  check_one_line_error(run("train gpt --attn poly:0 --steps 1"), "poly:0");
  check_one_line_error(run("train vit --attn softmx"), "valid specs");
  check_one_line_error(run("eval"), "--ckpt");
  check_one_line_error(run("sample --tokens 5"), "--ckpt");
  check_one_line_error(run("train gpt --steps abc"), "abc");
  check_one_line_error(run("train vit --batch -3"), "--batch");
  check_one_line_error(run("train gpt --steps -5"), "--steps");
  check_one_line_error(run("train gpt --device tpu"), "tpu");
  check_one_line_error(run("train vit --shift 9"), "--shift");
  check_one_line_error(run("sample --ckpt " + quote((temp_root() / "nope.safetensors").string())),
                       "nope.safetensors");
  check_one_line_error(run(""), "subcommand");
  check_one_line_error(run("fly"), "subcommand");
}

TEST_CASE("runtime errors (bad data, bad checkpoint) are one line too") {
  fs::path out = temp_root() / "err_run";
  check_one_line_error(
      run("train vit --steps 1 --data " + quote((temp_root() / "no_data").string()) + " --out " +
          quote(out.string()) + kVitModel),
      "no_data");
  fs::path data = write_mnist_dir("mnist_err", 20, 10);
  // The patch must divide the 8x8 images.
  check_one_line_error(
      run("train vit --steps 1 --batch 4 --patch 3 --dim 16 --layers 1 --heads 2 --data " +
          quote(data.string()) + " --out " + quote(out.string())),
      "patch");
  // A safetensors file that is not a checkpoint.
  fs::path junk = temp_root() / "junk.safetensors";
  std::ofstream(junk, std::ios::binary) << std::string("\x02\0\0\0\0\0\0\0{}", 10);
  check_one_line_error(run("eval --ckpt " + quote(junk.string())), "junk.safetensors");
}

TEST_CASE("train vit on a tiny MNIST-layout directory, then eval its checkpoint") {
  fs::path data = write_mnist_dir("mnist", 64, 32);
  fs::path out = temp_root() / "vit_run";
  Result r = run("train vit --steps 4 --batch 16 --data " + quote(data.string()) + " --out " +
                 quote(out.string()) + kVitModel);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("test accuracy") != std::string::npos);

  auto records = train_records(out / "metrics.jsonl");
  REQUIRE(records.size() == 4);
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& j = records[i];
    CHECK(j.at("step") == i + 1);
    REQUIRE(j.at("loss").is_number());
    CHECK(std::isfinite(j.at("loss").get<double>()));
    REQUIRE(j.at("a_frob_sqrt_n").is_array());
    CHECK(j.at("a_frob_sqrt_n").size() == 1);  // one value per layer
    CHECK(j.at("a_frob_sqrt_n")[0].get<double>() > 0);
  }
  bool has_accuracy = false;
  for (auto& j : metrics(out / "metrics.jsonl"))
    if (j.contains("test_accuracy")) {
      has_accuracy = true;
      CHECK(j.at("test_accuracy").get<double>() >= 0);
      CHECK(j.at("test_accuracy").get<double>() <= 1);
    }
  CHECK(has_accuracy);

  fs::path ckpt = out / "checkpoint.safetensors";
  REQUIRE(fs::exists(ckpt));
  pg::Checkpoint ck = pg::load_checkpoint(ckpt.string());
  CHECK(ck.step == 4);
  CHECK(ck.metadata.at("model") == "vit");
  auto cfg = nlohmann::json::parse(ck.metadata.at("config"));
  CHECK(cfg.at("image_size") == 8);
  CHECK(cfg.at("patch") == 4);
  CHECK(cfg.at("dim") == 16);
  for (auto& e : fs::directory_iterator(out))
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);

  Result ev = run("eval --ckpt " + quote(ckpt.string()) + " --data " + quote(data.string()));
  INFO("eval stdout: " << ev.out);
  INFO("eval stderr: " << ev.err);
  CHECK(ev.code == 0);
  CHECK(ev.err.empty());
  std::smatch m;
  REQUIRE(std::regex_search(ev.out, m, std::regex(R"(test accuracy ([0-9.]+)% \(([0-9]+)/32\))")));
  double acc = std::stod(m[1]);
  CHECK(acc >= 0);
  CHECK(acc <= 100);
  CHECK(std::stoi(m[2]) == static_cast<int>(std::lround(acc * 32 / 100)));
  // eval is deterministic.
  CHECK(run("eval --ckpt " + quote(ckpt.string()) + " --data " + quote(data.string())).out ==
        ev.out);
  // A ViT checkpoint cannot sample text.
  check_one_line_error(run("sample --ckpt " + quote(ckpt.string())), "GPT");
}

TEST_CASE("train gpt, sample from it, and resume to more steps") {
  fs::path text = write_text_file("corpus.txt");
  fs::path out = temp_root() / "gpt_run";
  std::string common =
      " --data " + quote(text.string()) + " --out " + quote(out.string()) + kGptModel;
  Result r = run("train gpt --steps 3 --attn poly:3" + common);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  fs::path ckpt = out / "checkpoint.safetensors";
  REQUIRE(fs::exists(ckpt));
  auto first = train_records(out / "metrics.jsonl");
  REQUIRE(first.size() == 3);
  for (auto& j : first) {
    CHECK(j.contains("loss"));
    CHECK(j.at("a_frob_sqrt_n").size() == 1);
  }
  pg::Checkpoint ck = pg::load_checkpoint(ckpt.string());
  CHECK(ck.step == 3);
  CHECK(ck.metadata.at("model") == "gpt");
  CHECK(nlohmann::json::parse(ck.metadata.at("config")).at("attn") == "poly:3");

  // Greedy sampling: the newline prompt plus 20 characters of the corpus's alphabet, the same
  // every time.
  Result s = run("sample --ckpt " + quote(ckpt.string()) + " --tokens 20 --temperature 0");
  INFO("sample stdout: " << s.out);
  INFO("sample stderr: " << s.err);
  CHECK(s.code == 0);
  CHECK(s.err.empty());
  REQUIRE(s.out.size() == 22);  // "\n" + 20 characters + "\n"
  CHECK(s.out.front() == '\n');
  CHECK(s.out.back() == '\n');
  std::string corpus = read_file(text);
  for (char c : s.out) CHECK(corpus.find(c) != std::string::npos);
  CHECK(run("sample --ckpt " + quote(ckpt.string()) + " --tokens 20 --temperature 0").out == s.out);
  Result sp = run("sample --ckpt " + quote(ckpt.string()) + " --tokens 5 --prompt fox --seed 3");
  CHECK(sp.code == 0);
  CHECK(sp.out.rfind("fox", 0) == 0);
  CHECK(sp.out.size() == 3 + 5 + 1);
  // GPT eval on the same text prints a validation loss.
  Result ev = run("eval --ckpt " + quote(ckpt.string()) + " --data " + quote(text.string()));
  CHECK(ev.code == 0);
  CHECK(ev.out.find("validation loss") != std::string::npos);

  // Resume to 5 steps: two more training records, steps continue, the checkpoint moves on.
  Result res = run("train gpt --resume --steps 5" + common);
  INFO("resume stdout: " << res.out);
  INFO("resume stderr: " << res.err);
  REQUIRE(res.code == 0);
  auto after = train_records(out / "metrics.jsonl");
  REQUIRE(after.size() == 5);
  for (size_t i = 0; i < 3; ++i) CHECK(after[i] == first[i]);  // earlier lines kept as they were
  for (size_t i = 0; i < after.size(); ++i) CHECK(after[i].at("step") == i + 1);
  CHECK(pg::load_checkpoint(ckpt.string()).step == 5);
  // Resuming on a different text is refused.
  fs::path other = temp_root() / "other.txt";
  std::ofstream(other) << std::string(400, 'z') << "\n";
  check_one_line_error(run("train gpt --resume --steps 6 --data " + quote(other.string()) +
                           " --out " + quote(out.string()) + kGptModel),
                       "vocabulary");
}
