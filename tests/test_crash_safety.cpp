// Crash safety: training that checkpoints every step is killed with SIGKILL at random moments
// (start-up, mid-step, mid-save); every checkpoint that survives loads, its step never goes
// back, the next run resumes from it, and a clean run leaves no temporary file behind.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "helpers.h"
#include "nn/checkpoint.h"
#include "scratch_files.h"

namespace fs = std::filesystem;

namespace {

// Starts the polygrad command with `args`, its output discarded.
pid_t spawn(const std::vector<std::string>& args) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    std::vector<char*> argv{const_cast<char*>(PG_CLI)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(PG_CLI, argv.data());
    _exit(127);
  }
  return pid;
}

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos)
      out.push_back(e.path().filename().string());
  return out;
}

}  // namespace

TEST_CASE("SIGKILL at random moments never leaves an unloadable or older checkpoint") {
  const fs::path dir = pgt::temp_dir("crash_safety", "sigkill");
  {
    std::ofstream text(dir / "text.txt");
    for (int i = 0; i < 200; ++i) text << "sphinx of black quartz, judge my vow " << i << "\n";
  }
  const fs::path run = dir / "run", ckpt = run / "checkpoint.safetensors";
  auto args = [&](int64_t steps, bool resume) {
    std::vector<std::string> a = {
        "train",        "gpt",        "--data",       (dir / "text.txt").string(),
        "--out",        run.string(), "--steps",      std::to_string(steps),
        "--ckpt-every", "1",          "--eval-every", "1000000",
        "--context",    "8",          "--dim",        "8",
        "--layers",     "1",          "--heads",      "2",
        "--batch",      "2",          "--threads",    "1"};
    if (resume) a.push_back("--resume");
    return a;
  };
  // A fixed seed: the same schedule of kills every run (the process's timing varies). Every
  // fourth kill lands during start-up; the others once training is under way (a new metrics
  // line), somewhere in the next few steps and saves.
  std::mt19937 rng(20261205);
  std::uniform_int_distribution<int> startup_ms(0, 300), training_us(0, 20000);
  const fs::path metrics = run / "metrics.jsonl";
  int64_t last_step = 0;
  int loaded = 0;
  for (int round = 0; round < 24; ++round) {
    const bool resume = fs::exists(ckpt);
    const int lines = count_lines(metrics);
    const pid_t pid = spawn(args(1000000, resume));
    REQUIRE(pid > 0);
    if (round % 4 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(startup_ms(rng)));
    } else {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (count_lines(metrics) <= lines && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::this_thread::sleep_for(std::chrono::microseconds(training_us(rng)));
    }
    kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    INFO("round ", round, ": the run ended by itself with status ", status);
    REQUIRE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    if (!fs::exists(ckpt)) continue;
    pg::Checkpoint ck = pg::load_checkpoint(ckpt.string());  // throws if damaged
    CHECK(ck.step >= last_step);
    last_step = ck.step;
    ++loaded;
  }
  INFO("checkpoints loaded after a kill: ", loaded, ", last step ", last_step);
  REQUIRE(loaded >= 18);  // every kill once training was under way found a checkpoint
  // The last surviving checkpoint resumes, and a run that ends cleanly removes what the
  // killed saves left behind.
  const int rc = [&] {
    const pid_t pid = spawn(args(last_step + 3, true));
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }();
  REQUIRE(rc == 0);
  CHECK(pg::load_checkpoint(ckpt.string()).step == last_step + 3);
  CHECK(temporaries(run).empty());
}
