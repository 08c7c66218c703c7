// The `polygrad` command end to end: help, one-line errors for bad flags, and tiny real runs of
// train vit / eval / train gpt / sample / --resume on data the test writes itself.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/factory.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"

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

// A failed command, strictly: exit status `code` (1: run-time error, 2: usage error), stderr
// exactly one line "polygrad: error: ..." holding every one of `parts`.
void check_error(const Result& r, int code, std::initializer_list<std::string> parts) {
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK(r.code == code);
  CHECK(count_char(r.err, '\n') == 1);
  CHECK(r.err.rfind("polygrad: error: ", 0) == 0);
  for (const std::string& part : parts) CHECK(r.err.find(part) != std::string::npos);
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
  check_one_line_error(run("train vit --glob '*.py' --steps 1"), "--glob applies to text");
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

TEST_CASE("compare --seeds: mean ± std, seeds, paired differences; existing runs are reused") {
  fs::path text = write_text_file("corpus.txt");
  fs::path out = temp_root() / "compare_seeds";
  fs::remove_all(out);
  const std::string args = "compare --model gpt --seeds 2 --steps 2 --attn-list softmax poly:2" +
                           kGptModel + " --data " + quote(text.string()) + " --out " +
                           quote(out.string());
  Result r = run(args);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  for (const char* dir :
       {"softmax/seed-1337", "softmax/seed-1338", "poly_2/seed-1337", "poly_2/seed-1338"})
    CHECK(fs::exists(out / dir / "checkpoint.safetensors"));
  const std::string report = read_file(out / "report.md");
  for (const char* part :
       {"2 seeds (1337 to 1338)", "paired difference to `softmax`", " ± ", "## Per seed",
        "| activation | seed 1337 | seed 1338 |", "| `poly:2` |", "## Attention per row position",
        "| i = 0 | i = 1 | i = 3 | i = 7 | i = 15 |"})
    CHECK_MESSAGE(report.find(part) != std::string::npos, part);
  CHECK(fs::exists(out / "softmax" / "rows.tsv"));
  // Continued: nothing retrains, and the report is the same.
  Result again = run(args);
  CHECK(again.code == 0);
  CHECK(count_char(again.out, '\n') > 0);
  int reused = 0;
  for (size_t at = again.out.find("already trained to step 2 of 2"); at != std::string::npos;
       at = again.out.find("already trained to step 2 of 2", at + 1))
    ++reused;
  CHECK(reused == 4);
  CHECK(read_file(out / "report.md") == report);
  // Continued with other flags: refused, naming the flag.
  check_one_line_error(run(args + " --lr 0.01"), "compare.json");
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
  CHECK(s.err.rfind("polygrad: 20 tokens in ", 0) == 0);  // and the speed, on stderr only
  CHECK(count_char(s.err, '\n') == 1);
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

TEST_CASE("--profile: where a step's milliseconds go, evaluations left out, the run unchanged") {
  fs::path text = write_text_file("profile.txt");
  auto train = [&](const std::string& name, const std::string& extra) {
    const fs::path out = temp_root() / name;
    Result r = run("train gpt --steps 5 --eval-every 2 --data " + quote(text.string()) + " --out " +
                   quote(out.string()) + kGptModel + extra);
    INFO("stdout: " << r.out);
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    std::vector<double> losses;
    for (const auto& j : train_records(out / "metrics.jsonl"))
      losses.push_back(j.at("loss").get<double>());
    return std::make_pair(r, losses);
  };
  const auto plain = train("profile_off", "");
  const auto profiled = train("profile_on", " --profile");
  // The recording backend forwards every call unchanged: the same losses, bit for bit.
  CHECK(profiled.second == plain.second);
  CHECK(!fs::exists(temp_root() / "profile_off" / "profile.md"));
  const std::string md = read_file(temp_root() / "profile_on" / "profile.md");
  CHECK(profiled.first.out.find("| GEMM |") != std::string::npos);
  CHECK(md.find("3 steps after 2 of warm-up, 1 thread") != std::string::npos);
  // Each table row: its name and its numbers.
  std::map<std::string, std::vector<std::string>> parts, kernels;
  std::istringstream lines(md);
  int table = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("|---", 0) == 0) ++table;
    if (line.rfind("| ", 0) != 0 || line.find("ms/step") != std::string::npos) continue;
    std::vector<std::string> cells;
    std::istringstream row(line.substr(1));
    for (std::string cell; std::getline(row, cell, '|');)
      cells.push_back(cell.substr(1, cell.size() - 2));  // " text " -> "text"
    (table == 1 ? parts : kernels)[cells[0]] = cells;
  }
  REQUIRE(parts.count("GEMM"));
  REQUIRE(parts.count("outside kernels (autograd, dispatch, allocation)"));
  double share = 0;
  for (const auto& [name, cells] : parts) share += std::stod(cells[2]);
  CHECK(share == doctest::Approx(100).epsilon(0.001 * static_cast<double>(parts.size())));
  // One block: one fused attention forward and one backward a step. The evaluations at steps
  // 2 and 4 ran more forwards, outside the profile.
  REQUIRE(kernels.count("fused forward"));
  CHECK(kernels.at("fused forward")[1] == "attention");
  CHECK(std::stod(kernels.at("fused forward")[4]) == 1.0);
  CHECK(std::stod(kernels.at("fused backward")[4]) == 1.0);
}

TEST_CASE("train recall: accuracy at the queries, eval, resume, and sizes checked in one line") {
  const std::string model =
      " --vocab 32 --context 32 --pairs 4 --dim 16 --layers 1 --heads 2 --batch 4 --threads 1";
  fs::path straight = temp_root() / "recall_straight", split = temp_root() / "recall_split";
  // (The straight 4-step run's schedule is 4 steps; a resumed 2-step run keeps its 2-step one.)
  Result r = run("train recall --steps 4 --attn poly:2 --out " + quote(straight.string()) + model);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("recall accuracy") != std::string::npos);
  const auto evals = metrics(straight / "metrics.jsonl");
  const nlohmann::json last = evals.back();
  REQUIRE(last.contains("test_accuracy"));
  CHECK(last.at("test_accuracy").get<double>() >= 0);
  CHECK(last.at("test_accuracy").get<double>() <= 1);
  pg::Checkpoint ck = pg::load_checkpoint((straight / "checkpoint.safetensors").string());
  CHECK(ck.metadata.at("model") == "recall");
  CHECK(nlohmann::json::parse(ck.metadata.at("task")).at("pairs") == 4);
  Result ev = run("eval --ckpt " + quote((straight / "checkpoint.safetensors").string()));
  CHECK(ev.code == 0);
  char expected[64];
  std::snprintf(expected, sizeof expected, "recall accuracy %.2f%%",
                100 * last.at("test_accuracy").get<double>());
  CHECK(ev.out.find(expected) != std::string::npos);
  // Two steps, then --resume to four: the first records kept, the steps continued, and the
  // resumed steps the same as those of the same two invocations in a fresh folder.
  auto two_then_four = [&](const fs::path& dir) {
    REQUIRE(run("train recall --steps 2 --attn poly:2 --out " + quote(dir.string()) + model).code ==
            0);
    const auto first_two = train_records(dir / "metrics.jsonl");
    REQUIRE(run("train recall --resume --steps 4 --out " + quote(dir.string()) + model).code == 0);
    const auto all = train_records(dir / "metrics.jsonl");
    REQUIRE(all.size() == 4);
    CHECK(all[0] == first_two[0]);
    CHECK(all[1] == first_two[1]);
    std::vector<double> losses;
    for (size_t i = 0; i < 4; ++i) {
      CHECK(all[i].at("step") == i + 1);
      losses.push_back(all[i].at("loss").get<double>());
    }
    return losses;
  };
  CHECK(two_then_four(split) == two_then_four(temp_root() / "recall_split_again"));
  CHECK(pg::load_checkpoint((split / "checkpoint.safetensors").string()).step == 4);
  // compare --model recall: the report ranks by test accuracy and names the task.
  fs::path cmp = temp_root() / "recall_compare";
  Result c = run("compare --model recall --steps 2 --attn-list softmax poly:2 --out " +
                 quote(cmp.string()) + model);
  INFO("compare stdout: " << c.out);
  INFO("compare stderr: " << c.err);
  REQUIRE(c.code == 0);
  const std::string report = read_file(cmp / "report.md");
  CHECK(report.find("associative recall") != std::string::npos);
  CHECK(report.find("\"pairs\":4") != std::string::npos);
  CHECK(report.find("final test accuracy") != std::string::npos);
  CHECK(pg::load_checkpoint((cmp / "poly_2" / "seed-1337" / "checkpoint.safetensors").string())
            .metadata.at("model") == "recall");
  // Continued with another task, or in a folder whose comparison had a flag this one lacks:
  // refused, naming it.
  const std::string again = "compare --model recall --steps 2 --attn-list softmax poly:2 --out " +
                            quote(cmp.string()) + model;
  std::string five_pairs = again;
  five_pairs.replace(five_pairs.find("--pairs 4"), 9, "--pairs 5");
  check_one_line_error(run(five_pairs), "task");
  nlohmann::json flags = nlohmann::json::parse(read_file(cmp / "compare.json"));
  flags["glob"] = "*.py";
  std::ofstream(cmp / "compare.json") << flags.dump();
  check_one_line_error(run(again), "glob = \"*.py\", not without it");
  // Data flags that do not apply are refused rather than ignored.
  check_one_line_error(run("train recall --steps 1 --data python-stdlib --out " +
                           quote((temp_root() / "recall_data").string()) + model),
                       "--data and --glob do not apply");
  check_one_line_error(
      run("eval --glob '*.py' --ckpt " + quote((straight / "checkpoint.safetensors").string())),
      "associative-recall model");
  // Too many pairs for the context: one line naming the sizes.
  check_one_line_error(
      run("train recall --steps 1 --pairs 9 --out " + quote((temp_root() / "recall_bad").string()) +
          " --vocab 32 --context 32 --threads 1"),
      "at least 4 * pairs = 36");
}

TEST_CASE("train gpt on a folder by --glob: split by file, loss by position bucket") {
  fs::path dir = temp_root() / "glob_corpus";
  fs::create_directories(dir / "sub");
  for (int i = 0; i < 10; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "f%d.txt", i);
    std::ofstream out((i % 2 ? dir / "sub" : dir) / name);
    for (int k = 0; k < 30; ++k) out << "line " << k << " of the file number " << i % 3 << "\n";
  }
  std::ofstream(dir / "skip.md") << "never read: Q";
  fs::path out = temp_root() / "glob_run";
  Result r = run("train gpt --steps 2 --data " + quote(dir.string()) +
                 " --glob '*.txt' --context 160 --dim 16 --layers 1 --heads 2 --batch 2 "
                 "--threads 1 --out " +
                 quote(out.string()));
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  nlohmann::json last = metrics(out / "metrics.jsonl").back();
  REQUIRE(last.contains("val_loss_by_position"));
  const auto buckets = last.at("val_loss_by_position").get<std::vector<double>>();
  REQUIRE(buckets.size() == 2);  // positions 0-127 and 128-159
  // Each bucket is a mean over its positions: weighted by their counts, the mean of all.
  CHECK((128 * buckets[0] + 32 * buckets[1]) / 160 ==
        doctest::Approx(last.at("val_loss").get<double>()).epsilon(1e-5));
  Result ev = run("eval --ckpt " + quote((out / "checkpoint.safetensors").string()) + " --data " +
                  quote(dir.string()) + " --glob '*.txt'");
  CHECK(ev.code == 0);
  CHECK(ev.out.find("positions 128-159") != std::string::npos);
  check_one_line_error(
      run("train gpt --steps 1 --data " + quote(dir.string()) +
          " --glob '*.rs' --threads 1 --out " + quote((temp_root() / "glob_bad").string())),
      "no file matching '*.rs'");
}

TEST_CASE("usage errors: short messages, exit status 2, unknown subcommands named") {
  const std::string safe = " --steps 1 --out " + quote((temp_root() / "usage_run").string());
  Result r = run("train gpt --steps -1 --out " + quote((temp_root() / "usage_run").string()));
  check_error(r, 2, {"--steps: -1 is negative (expected 0 or more)"});
  CHECK(r.err.size() < 120);  // not CLI11's 300-digit range
  check_error(run("bogus"), 2, {"'bogus'", "train, eval, sample, compare"});
  check_error(run("train xyz"), 2, {"'xyz'", "'polygrad train'", "vit, gpt"});
  check_error(run("train"), 2, {"'polygrad train' needs a subcommand", "vit, gpt"});
  check_error(run("train gpt --warmup -2" + safe), 2, {"--warmup: -2", "-1 or more"});
  check_error(run("train gpt --threads 100000" + safe), 2, {"--threads: 100000", "0 to 1024"});
  check_error(run("train gpt --lr nan" + safe), 2, {"--lr: nan", "finite"});
  check_error(run("train gpt --weight-decay -1" + safe), 2, {"--weight-decay: -1 is negative"});
  check_error(run("train gpt --seed -1" + safe), 2, {"--seed: -1 is negative"});
  check_error(run("train vit --epochs inf" + safe), 2, {"--epochs: inf", "finite"});
  check_error(run("train gpt --dim 100000" + safe), 2, {"--dim: 100000 is too large", "65536"});
  check_error(run("train vit --dropout 1.5" + safe), 2, {"--dropout: 1.5 is too large"});
  check_error(run("train vit --pool max" + safe), 2, {"--pool: 'max' is not one of: cls, mean"});
  check_error(run("compare --attn-list softmax poly:0" + safe), 2, {"--attn-list", "poly:0"});
  check_error(run("compare --dim 0" + safe), 2, {"--dim: 0"});
  fs::path any = write_text_file("usage.txt");
  check_error(run("sample --ckpt " + quote(any.string()) + " --top-k -5"), 2, {"--top-k: -5"});
  check_error(run("sample --ckpt " + quote(any.string()) + " --temperature inf"), 2,
              {"--temperature: inf"});
  check_error(run("sample --ckpt " + quote(any.string()) + " --tokens 10000000"), 2,
              {"--tokens: 10000000"});
}

TEST_CASE("a batch that cannot fit in memory is refused up front, in one line") {
  fs::path text = write_text_file("batch.txt");
  check_error(run("train gpt --steps 1 --batch 100000000 --data " + quote(text.string()) +
                  " --out " + quote((temp_root() / "batch_run").string()) +
                  " --context 16 --dim 16 --layers 1 --heads 2 --threads 1"),
              1, {"--batch", "100000000", "of memory"});
}

namespace {

// One way of damaging a real checkpoint, and the commands that must refuse it.
struct Damage {
  std::string name;
  std::function<void(pg::SafetensorsFile&)> edit;
  std::vector<std::string> expect;  // besides the file's path
  // e: eval, s: sample, r: train gpt --resume. Variants of one field that all three read
  // through the same code run `eval` only, to keep the suite fast; the optimizer state matters
  // to --resume only.
  std::string commands = "esr";
  std::function<void(std::string&)> bytes = {};  // then edits the file's bytes
};

void set_config(pg::SafetensorsFile& f, const std::string& key, const nlohmann::json& value) {
  auto j = nlohmann::json::parse(f.metadata.at("config"));
  j[key] = value;
  f.metadata["config"] = j.dump();
}

std::vector<Damage> gpt_damages() {
  using F = pg::SafetensorsFile;
  auto meta = [](const std::string& key, const std::string& value) {
    return [=](F& f) { f.metadata[key] = value; };
  };
  auto drop = [](const std::string& key) { return [=](F& f) { f.metadata.erase(key); }; };
  auto config = [](const std::string& key, const nlohmann::json& value) {
    return [=](F& f) { set_config(f, key, value); };
  };
  std::vector<Damage> d = {
      {"no_format", drop("format"), {"'format'", "not a polygrad checkpoint"}, "e"},
      {"format_unknown", meta("format", "polygrad-checkpoint-9"), {"'format'"}, "e"},
      {"no_step", drop("step"), {"'step'"}, "e"},
      {"step_negative", meta("step", "-5"), {"'step'", "'-5'", "negative"}},
      {"step_text", meta("step", "seven"), {"'step'", "'seven'"}, "e"},
      {"step_trailing", meta("step", "12abc"), {"'step'", "'12abc'"}},
      {"step_spaces", meta("step", " 12"), {"'step'"}, "e"},
      {"step_plus", meta("step", "+1"), {"'step'"}, "e"},
      {"step_empty", meta("step", ""), {"'step'"}, "e"},
      {"step_overflow", meta("step", "99999999999999999999"), {"'step'", "too large"}, "e"},
      {"no_model", drop("model"), {"'model'"}},
      {"model_unknown", meta("model", "bert"), {"'model'", "'bert'", "'gpt', 'vit' or 'recall'"}},
      {"model_vit", meta("model", "vit"), {"'model'", "'vit'"}},
      {"no_config", drop("config"), {"'config'"}},
      {"config_not_json", meta("config", "{\"dim\": 16,"), {"'config'", "not a JSON object"}},
      {"config_array", meta("config", "[16]"), {"'config'", "not a JSON object"}, "e"},
      {"config_no_dim",
       [](F& f) {
         auto j = nlohmann::json::parse(f.metadata.at("config"));
         j.erase("dim");
         f.metadata["config"] = j.dump();
       },
       {"'config'", "'dim'"}},
      {"config_dim_text", config("dim", "wide"), {"'config'", "'dim'", "wrong type"}},
      {"config_dim_float", config("dim", 16.5), {"'config'", "'dim'", "wrong type"}, "e"},
      {"config_dim_huge", config("dim", 18446744073709551615ull), {"'config'", "'dim'"}, "e"},
      {"config_dim_zero", config("dim", 0), {"'config'", "'dim' is 0"}, "e"},
      {"config_heads", config("heads", 3), {"'config'", "'heads' is 3", "divide"}, "e"},
      {"config_dropout", config("dropout", 1.0), {"'config'", "'dropout' is 1"}, "e"},
      {"config_attn", config("attn", "poly:0"), {"'config'", "'attn'", "poly:0"}, "e"},
      {"config_tie_text", config("tie_weights", "yes"), {"'config'", "'tie_weights'"}, "e"},
      // Absurd sizes: over the parameter limit, or more than the file's tensors hold.
      {"config_absurd",
       [](F& f) {
         set_config(f, "dim", 65536);
         set_config(f, "layers", 1024);
         set_config(f, "heads", 1);
       },
       {"'config'", "parameters", "2^32"}},
      {"config_larger_than_file", config("context", 1 << 20), {"'config'", "file holds only"}},
      {"no_vocab", drop("vocab"), {"'vocab'"}},
      // JSON strings are UTF-8, so invalid bytes never reach the vocabulary: the header is
      // refused (the library test checks CharVocab::from_utf8 itself).
      {"vocab_not_utf8",
       meta("vocab", "~~"),
       {"header is not valid JSON"},
       "e",
       [](std::string& b) { b.replace(b.find("\"~~\""), 4, "\"\xff\xfe\""); }},
      {"vocab_empty", meta("vocab", ""), {"'vocab'", "empty"}, "e"},
      {"vocab_repeats",
       [](F& f) { f.metadata["vocab"] = "a" + f.metadata.at("vocab").substr(1) + "a"; },
       {"'vocab'", "twice"}},
      {"vocab_size",
       [](F& f) { f.metadata["vocab"] += "\xc3\xa9"; },
       {"'vocab'", "vocab_size"},
       "e"},
      // The same number of characters as the training text, but not its characters.
      {"vocab_other", [](F& f) { f.metadata.at("vocab")[0] = 'Z'; }, {"different text"}, "er"},
      {"model_tensor_shape",
       [](F& f) {
         f.tensors["model.ln_f.weight"] = pg::zeros({4, 4});
       },
       {"'model.*'", "'ln_f.weight'"}},
      {"rng_missing", [](F& f) { f.tensors.erase("rng.state"); }, {"rng.state"}},
      {"optim_missing",
       [](F& f) {
         for (auto it = f.tensors.begin(); it != f.tensors.end();)
           it = it->first.rfind("optim.", 0) == 0 ? f.tensors.erase(it) : std::next(it);
       },
       {"'optim.*'", "missing entry 'step'"},
       "r"},
      {"optim_shape",
       [](F& f) {
         f.tensors["optim.state.0.0.exp_avg"] = pg::zeros({2, 2});
       },
       {"'optim.*'", "'state.0.0.exp_avg'", "[2, 2]"},
       "r"},
      {"optim_step_negative",
       [](F& f) { f.tensors["optim.step"] = pg::scalar_tensor(-1, {pg::DType::I64}); },
       {"'optim.*'", "'step'", ">= 0"},
       "r"},
      {"optim_step_mismatch",
       [](F& f) { f.tensors["optim.step"] = pg::scalar_tensor(7, {pg::DType::I64}); },
       {"'optim.step' is 7", "metadata 'step' is 1"},
       "r"},
  };
  return d;
}

}  // namespace

TEST_CASE(
    "damaged GPT checkpoints: eval, sample and train --resume fail in one line naming "
    "the file and the field") {
  fs::path text = write_text_file("damage.txt");
  fs::path base = temp_root() / "damage_base";
  const std::string model = " --context 16 --dim 16 --layers 1 --heads 2 --batch 4 --threads 1";
  Result made = run("train gpt --steps 1 --data " + quote(text.string()) + " --out " +
                    quote(base.string()) + model);
  REQUIRE(made.code == 0);
  const pg::SafetensorsFile good = pg::load_safetensors((base / "checkpoint.safetensors").string());
  REQUIRE(good.metadata.count("vocab"));
  for (const Damage& d : gpt_damages()) {
    CAPTURE(d.name);
    fs::path dir = temp_root() / ("damaged_" + d.name);
    fs::create_directories(dir);
    const std::string path = (dir / "checkpoint.safetensors").string();
    pg::SafetensorsFile f = good;
    d.edit(f);
    pg::save_safetensors(path, f.tensors, f.metadata);
    if (d.bytes) {
      std::string b = read_file(path);
      d.bytes(b);
      std::ofstream(path, std::ios::binary) << b;
    }
    auto check = [&](const Result& r) {
      check_error(r, 1, {path});
      for (const std::string& part : d.expect) CHECK(r.err.find(part) != std::string::npos);
    };
    if (d.commands.find('e') != std::string::npos)
      check(run("eval --ckpt " + quote(path) + " --data " + quote(text.string())));
    if (d.commands.find('s') != std::string::npos)
      check(run("sample --tokens 3 --ckpt " + quote(path)));
    if (d.commands.find('r') != std::string::npos)
      check(run("train gpt --resume --steps 2 --data " + quote(text.string()) + " --out " +
                quote(dir.string()) + model));
  }
}

TEST_CASE("damaged ViT checkpoints: eval and train --resume fail in one line too") {
  fs::path data = write_mnist_dir("mnist_damage", 20, 10);
  fs::path base = temp_root() / "vit_damage_base";
  const std::string model = " --batch 4" + kVitModel;
  REQUIRE(run("train vit --steps 1 --data " + quote(data.string()) + " --out " +
              quote(base.string()) + model)
              .code == 0);
  const pg::SafetensorsFile good = pg::load_safetensors((base / "checkpoint.safetensors").string());
  struct Case {
    std::string name;
    std::function<void(pg::SafetensorsFile&)> edit;
    std::string expect;
  };
  std::vector<Case> cases = {
      {"patch", [](auto& f) { set_config(f, "patch", 3); }, "not a multiple of 'patch' 3"},
      {"pool", [](auto& f) { set_config(f, "pool", "max"); }, "'pool' is 'max'"},
      {"input_std", [](auto& f) { set_config(f, "input_std", -1.0); }, "'input_std' is -1"},
      {"image_size", [](auto& f) { set_config(f, "image_size", 4); }, "'image_size'"},
      {"model_gpt", [](auto& f) { f.metadata["model"] = "gpt"; }, "'model'"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    fs::path dir = temp_root() / ("vit_damaged_" + c.name);
    fs::create_directories(dir);
    const std::string path = (dir / "checkpoint.safetensors").string();
    pg::SafetensorsFile f = good;
    c.edit(f);
    pg::save_safetensors(path, f.tensors, f.metadata);
    check_error(run("eval --ckpt " + quote(path) + " --data " + quote(data.string())), 1,
                {path, c.expect});
    check_error(run("train vit --resume --steps 2 --data " + quote(data.string()) + " --out " +
                    quote(dir.string()) + model),
                1, {path, c.expect});
  }
}
