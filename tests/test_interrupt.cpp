// Ctrl-C during training saves a checkpoint and exits cleanly; --resume continues from it.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "nn/checkpoint.h"

namespace fs = std::filesystem;

namespace {

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// Losses of the training steps recorded in a metrics file, in order.
std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

// An empty TMP/NAME holding text.txt: `lines` numbered copies of `sentence`.
fs::path scratch_with_text(const std::string& name, const std::string& sentence, int lines) {
  const fs::path dir = fs::temp_directory_path() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream text(dir / "text.txt");
  for (int i = 0; i < lines; ++i) text << sentence << " " << i << "\n";
  return dir;
}

// The training records of a metrics file, in order.
std::vector<nlohmann::json> train_records(const fs::path& metrics) {
  std::vector<nlohmann::json> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

// Starts `polygrad ARGS` with stdout to /dev/null (stderr to `err` when given).
pid_t spawn(const std::vector<std::string>& args, const fs::path& err = {}) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    if (!err.empty()) dup2(open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
    std::vector<char*> argv{const_cast<char*>(PG_CLI)};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(PG_CLI, argv.data());
    _exit(127);
  }
  return pid;
}

// Waits until `metrics` has at least `lines` lines (or a minute has passed).
void wait_for_lines(const fs::path& metrics, int lines) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (count_lines(metrics) < lines && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(count_lines(metrics) >= lines);
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Starts `polygrad train gpt ARGS` and interrupts it once it has logged a few steps.
void train_and_interrupt(const std::vector<std::string>& args, const fs::path& out) {
  pid_t pid = spawn(args);
  wait_for_lines(out / "metrics.jsonl", 5);
  kill(pid, SIGINT);
  REQUIRE(wait_exit_code(pid) == 0);
}

}  // namespace

TEST_CASE("a run stopped and resumed repeats the uninterrupted run's losses exactly") {
  const fs::path dir =
      scratch_with_text("pg_test_resume", "pack my box with five dozen liquor jugs", 300);
  // Dropout is on, so the restored generator state matters as much as weights and optimizer.
  std::vector<std::string> args = {"train",     "gpt",  "--data",       (dir / "text.txt").string(),
                                   "--steps",   "2000", "--context",    "8",
                                   "--dim",     "8",    "--layers",     "1",
                                   "--heads",   "2",    "--batch",      "2",
                                   "--dropout", "0.2",  "--eval-every", "500",
                                   "--threads", "1"};
  auto with_out = [&](const fs::path& out) {
    auto a = args;
    a.push_back("--out");
    a.push_back(out.string());
    return a;
  };
  std::string cmd = std::string(PG_CLI);
  for (auto& a : with_out(dir / "whole")) cmd += " " + a;
  REQUIRE(std::system((cmd + " > /dev/null 2>&1").c_str()) == 0);
  train_and_interrupt(with_out(dir / "split"), dir / "split");
  size_t stopped = losses(dir / "split" / "metrics.jsonl").size();
  CHECK(stopped < 2000);
  std::string resume = cmd;
  resume.replace(resume.find(" --out "), std::string::npos, " --out " + (dir / "split").string());
  // --steps on a resume moves the stop, not the schedule: the next 5 steps have the learning
  // rates (and so the losses) of the uninterrupted 2000-step run.
  const std::string stop = std::to_string(stopped + 5);
  std::string cut = resume;
  cut.replace(cut.find(" --steps 2000"), 13, " --steps " + stop);
  REQUIRE(std::system((cut + " --resume > /dev/null 2>&1").c_str()) == 0);
  auto whole_records = train_records(dir / "whole" / "metrics.jsonl");
  auto cut_records = train_records(dir / "split" / "metrics.jsonl");
  REQUIRE(cut_records.size() == stopped + 5);
  for (size_t i = stopped; i < stopped + 5; ++i) {
    CHECK(cut_records[i].at("lr") == whole_records[i].at("lr"));
    CHECK(cut_records[i].at("loss") == whole_records[i].at("loss"));
  }
  // Then on to the end without --steps: the schedule's end, 2000.
  REQUIRE(std::system((resume + " --resume > /dev/null 2>&1").c_str()) == 0);
  auto whole = losses(dir / "whole" / "metrics.jsonl");
  auto split = losses(dir / "split" / "metrics.jsonl");
  REQUIRE(whole.size() == 2000);
  CHECK(split == whole);
}

TEST_CASE("after kill -9 and --resume, metrics.jsonl holds each step once") {
  const fs::path dir =
      scratch_with_text("pg_test_kill_metrics", "sphinx of black quartz judge my vow", 300);
  const std::string out = (dir / "run").string();
  std::vector<std::string> args = {
      "train",        "gpt",  "--data",       (dir / "text.txt").string(),
      "--steps",      "3000", "--context",    "8",
      "--dim",        "8",    "--layers",     "1",
      "--heads",      "2",    "--batch",      "2",
      "--ckpt-every", "1000", "--eval-every", "500",
      "--threads",    "1",    "--out",        out};
  const pid_t pid = spawn(args);
  // Past the checkpoint at step 1000, well before the next one.
  wait_for_lines(fs::path(out) / "metrics.jsonl", 1010);
  kill(pid, SIGKILL);
  wait_exit_code(pid);
  const int64_t saved = pg::load_checkpoint(out + "/checkpoint.safetensors").step;
  REQUIRE(saved == 1000);
  REQUIRE(train_records(fs::path(out) / "metrics.jsonl").size() > 1000);  // steps past it
  args.push_back("--resume");
  REQUIRE(wait_exit_code(spawn(args)) == 0);
  auto records = train_records(fs::path(out) / "metrics.jsonl");
  REQUIRE(records.size() == 3000);
  for (size_t i = 0; i < records.size(); ++i) CHECK(records[i].at("step") == i + 1);
  // Every line is whole, and the evaluations appear once each too.
  std::ifstream in(fs::path(out) / "metrics.jsonl");
  int evals = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    evals += j.contains("val_loss");
  }
  CHECK(evals == 6);
}

TEST_CASE("a second run on the same --out is refused, naming the folder and the first's pid") {
  const fs::path dir =
      scratch_with_text("pg_test_run_lock", "how vexingly quick daft zebras jump", 200);
  const std::string out = (dir / "run").string();
  auto args = [&](const std::string& steps) {
    return std::vector<std::string>{"train",     "gpt", "--data",    (dir / "text.txt").string(),
                                    "--steps",   steps, "--context", "8",
                                    "--dim",     "8",   "--layers",  "1",
                                    "--heads",   "2",   "--batch",   "2",
                                    "--threads", "1",   "--out",     out};
  };
  const pid_t first = spawn(args("1000000"));
  wait_for_lines(fs::path(out) / "metrics.jsonl", 3);
  const fs::path err = dir / "second.err";
  CHECK(wait_exit_code(spawn(args("10"), err)) == 1);
  std::ifstream e(err);
  std::string line, rest;
  std::getline(e, line);
  CHECK_FALSE(std::getline(e, rest));  // one line
  INFO(line);
  CHECK(line.rfind("polygrad: error: " + out + ": another run (pid " + std::to_string(first) + ")",
                   0) == 0);
  // The first run goes on; its metrics stay whole lines.
  CHECK(kill(first, 0) == 0);
  kill(first, SIGKILL);  // no clean-up: the kernel drops the lock with the process
  wait_exit_code(first);
  std::ifstream m(fs::path(out) / "metrics.jsonl");
  for (std::string l; std::getline(m, l);)
    CHECK_FALSE(nlohmann::json::parse(l, nullptr, false).is_discarded());
  CHECK(wait_exit_code(spawn(args("10"))) == 0);
}

TEST_CASE("SIGINT saves a checkpoint mid-run and resume finishes the run") {
  const fs::path dir =
      scratch_with_text("pg_test_interrupt", "the quick brown fox jumps over the lazy dog", 200);
  std::string out = (dir / "run").string(), data = (dir / "text.txt").string();
  std::string steps = "100000";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    execl(PG_CLI, PG_CLI, "train", "gpt", "--data", data.c_str(), "--out", out.c_str(), "--steps",
          steps.c_str(), "--context", "16", "--dim", "16", "--layers", "1", "--heads", "2",
          "--batch", "4", "--threads", "1", static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until training is under way, then interrupt it like a user pressing Ctrl-C.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (count_lines(fs::path(out) / "metrics.jsonl") < 5 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(count_lines(fs::path(out) / "metrics.jsonl") >= 5);
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  pg::Checkpoint ck = pg::load_checkpoint(out + "/checkpoint.safetensors");
  CHECK(ck.step >= 5);
  CHECK(ck.step < 100000);
  // No temporary file is left behind next to the checkpoint.
  for (const auto& e : fs::directory_iterator(out))
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);

  std::string more = std::to_string(ck.step + 3);
  std::string cmd = std::string(PG_CLI) + " train gpt --resume --data " + data + " --out " + out +
                    " --steps " + more + " --context 16 --dim 16 --layers 1 --heads 2 --batch 4" +
                    " > /dev/null 2>&1";
  CHECK(std::system(cmd.c_str()) == 0);
  CHECK(pg::load_checkpoint(out + "/checkpoint.safetensors").step == ck.step + 3);
}
