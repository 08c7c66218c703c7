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

// Starts `polygrad train gpt ARGS` and interrupts it once it has logged a few steps.
void train_and_interrupt(const std::vector<std::string>& args, const fs::path& out) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    std::vector<char*> argv{const_cast<char*>(PG_CLI)};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(PG_CLI, argv.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (count_lines(out / "metrics.jsonl") < 5 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

}  // namespace

TEST_CASE("a run stopped and resumed repeats the uninterrupted run's losses exactly") {
  fs::path dir = fs::temp_directory_path() / "pg_test_resume";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream text(dir / "text.txt");
    for (int i = 0; i < 300; ++i) text << "pack my box with five dozen liquor jugs " << i << "\n";
  }
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
  REQUIRE(std::system((resume + " --resume > /dev/null 2>&1").c_str()) == 0);
  auto whole = losses(dir / "whole" / "metrics.jsonl");
  auto split = losses(dir / "split" / "metrics.jsonl");
  REQUIRE(whole.size() == 2000);
  CHECK(split == whole);
}

TEST_CASE("SIGINT saves a checkpoint mid-run and resume finishes the run") {
  fs::path dir = fs::temp_directory_path() / "pg_test_interrupt";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream text(dir / "text.txt");
    for (int i = 0; i < 200; ++i)
      text << "the quick brown fox jumps over the lazy dog " << i << "\n";
  }
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
