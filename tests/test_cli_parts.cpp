// The parts of the `polygrad` command that the end-to-end tests cannot pin down by their output
// alone: compare's statistics on known numbers, its reading of run timings, the run's clocks,
// the metrics file after a kill, the run-directory lock and the pinned learning-rate schedule.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "helpers.h"
#include "nn/checkpoint.h"
#include "scratch_files.h"
#include "tools/cli/checkpoint_fields.h"
#include "tools/cli/compare.h"
#include "tools/cli/run_lock.h"
#include "tools/cli/seed_stats.h"
#include "tools/cli/train_common.h"
#include "tools/cli/train_run.h"

using namespace pg;
using namespace pg::tools;
namespace fs = std::filesystem;

namespace {

std::vector<nlohmann::json> read_records(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("compare's statistics on known numbers: mean, sample std (n - 1), paired differences") {
  const std::vector<double> v{1, 2, 3, 4};
  CHECK(tools::mean(v) == 2.5);
  // Sum of squared deviations 5, over n - 1 = 3 (over n it would be 1.1180).
  CHECK(sample_std(v) == doctest::Approx(std::sqrt(5.0 / 3.0)).epsilon(1e-15));
  CHECK(sample_std({7}) == 0);
  CHECK(std::isnan(tools::mean(std::vector<double>{})));
  CHECK(paired_differences({2.0, 2.5, 1.0}, {1.5, 2.0, 2.0}) ==
        std::vector<double>{0.5, 0.5, -1.0});
  CHECK_PG_ERROR(paired_differences({1, 2}, {1}), "compare", "2 and 1");
  // As the report prints them: 0.1, 0.2, 0.4 have mean 0.23333 and sample std 0.15275.
  CHECK(mean_std({0.1, 0.2, 0.4}, false) == "0.2333 ± 0.1528");
  CHECK(mean_std({0.85, 0.87}, true) == "86.00% ± 1.41%");
  CHECK(mean_std({0.05, 0.15}, false, true) == "+0.1000 ± 0.0707");
  CHECK(mean_std({-0.05, -0.15}, false, true) == "-0.1000 ± 0.0707");
  CHECK(mean_std({1.8491}, false) == "1.8491");
}

TEST_CASE("summarize_run: training ms/step without evaluations, over the segments of a resume") {
  const fs::path d = pgt::temp_dir("cli_parts", "summarize");
  {
    std::ofstream m(d / "metrics.jsonl");
    // First invocation: 2 steps, 0.4 s of training, one evaluation of 3 s.
    m << R"({"step":1,"time_s":0.2,"train_s":0.2,"loss":2.0,"a_frob_sqrt_n":[1.0]})"
      << "\n"
      << R"({"step":2,"time_s":3.5,"train_s":0.4,"loss":1.9,"a_frob_sqrt_n":[1.1]})"
      << "\n"
      << R"({"step":2,"val_loss":1.95,"eval_s":3.0})"
      << "\n"
      // Resumed: its clocks start again; 2 more steps, 0.8 s, evaluations of 1 s and 0.5 s.
      << R"({"step":3,"time_s":0.5,"train_s":0.3,"loss":1.8,"a_frob_sqrt_n":[1.2]})"
      << "\n"
      << R"({"step":3,"val_loss":1.70,"eval_s":1.0})"
      << "\n"
      << R"({"step":4,"time_s":1.6,"train_s":0.8,"loss":1.7,"a_frob_sqrt_n":[1.3]})"
      << "\n"
      << R"({"step":4,"val_loss":1.75,"eval_s":0.5})"
      << "\n";
  }
  RunSummary r = summarize_run(d.string(), false);
  CHECK(r.steps == 4);
  CHECK(r.ms_per_step == doctest::Approx(1e3 * (0.4 + 0.8) / 4));
  CHECK(r.eval_seconds == doctest::Approx(4.5));
  CHECK(r.final_metric == 1.75);
  CHECK(r.best_metric == 1.70);
  CHECK(r.a_frob_sqrt_n == std::vector<double>{1.3});
  // A run written before "train_s" existed: the wall clock is all there is.
  {
    std::ofstream m(d / "metrics.jsonl");
    m << R"({"step":1,"time_s":1.0,"loss":2.0})"
      << "\n"
      << R"({"step":2,"time_s":2.0,"loss":1.9})"
      << "\n"
      << R"({"step":2,"val_loss":1.95})"
      << "\n";
  }
  CHECK(summarize_run(d.string(), false).ms_per_step == doctest::Approx(1000));
  // A layer on the linear path reports ||A|| as null (unavailable), not a number.
  {
    std::ofstream m(d / "metrics.jsonl");
    m << R"({"step":1,"time_s":1.0,"train_s":1.0,"loss":2.0,"a_frob_sqrt_n":[null,0.5]})"
      << "\n"
      << R"({"step":1,"val_loss":1.95,"eval_s":0.1})"
      << "\n";
  }
  RunSummary linear = summarize_run(d.string(), false);
  REQUIRE(linear.a_frob_sqrt_n.size() == 2);
  CHECK(std::isnan(linear.a_frob_sqrt_n[0]));
  CHECK(linear.a_frob_sqrt_n[1] == 0.5);
}

TEST_CASE("TrainingRun: ms/step counts training only; evaluations are timed apart") {
  const fs::path d = pgt::temp_dir("cli_parts", "clocks");
  TrainOptions opt;
  opt.out = (d / "run").string();
  opt.threads = 1;
  opt.eval_every = 1;
  RunSetup setup(opt);
  int saves = 0;
  TrainingRun run(
      opt, setup,
      {.first_step = 0, .total = 4, .unit = "tok", .items_per_step = 10, .replicas = {}},
      [&](int64_t) { ++saves; });
  using namespace std::chrono_literals;
  while (run.step() < 4) {
    std::this_thread::sleep_for(5ms);  // the step
    run.end_step(1.0, 1e-3, 0.5, {});
    REQUIRE(run.eval_due());
    std::this_thread::sleep_for(60ms);  // the evaluation
    run.record_eval({{"val_loss", 1.0}}, 1.0);
    REQUIRE_FALSE(run.save_or_stop());
  }
  RunSummary s = run.finish({});
  CHECK(saves == 1);
  // With the evaluations counted, a step would take more than 65 ms.
  CHECK(s.ms_per_step >= 5);
  CHECK(s.ms_per_step < 40);
  CHECK(s.eval_seconds >= 0.24);
  CHECK(s.items_per_s > 10 / 0.04);
  int train_lines = 0, eval_lines = 0;
  for (const auto& j : read_records(d / "run" / "metrics.jsonl")) {
    if (j.contains("loss")) {
      ++train_lines;
      // The wall clock also holds the evaluations before this step.
      const double evals_before = 0.06 * static_cast<double>(j.at("step").get<int>() - 1);
      CHECK(j.at("time_s").get<double>() - j.at("train_s").get<double>() >= evals_before);
    }
    if (j.contains("val_loss")) {
      ++eval_lines;
      CHECK(j.at("eval_s").get<double>() >= 0.06);
    }
  }
  CHECK(train_lines == 4);
  CHECK(eval_lines == 4);
}

TEST_CASE("keep_metrics_through drops what a killed run wrote after its checkpoint") {
  const fs::path d = pgt::temp_dir("cli_parts", "metrics");
  const fs::path m = d / "metrics.jsonl";
  {
    std::ofstream out(m);
    for (int s = 1; s <= 8; ++s) {
      out << nlohmann::json{{"step", s}, {"loss", 1.0 / s}}.dump() << "\n";
      if (s % 3 == 0) out << nlohmann::json{{"step", s}, {"val_loss", 0.5}}.dump() << "\n";
    }
    out << R"({"step":9,"lo)";  // cut short by the kill
  }
  keep_metrics_through(m.string(), 6);
  auto kept = read_records(m);  // every line parses
  REQUIRE(kept.size() == 8);    // steps 1..6 and the evaluations at 3 and 6
  for (const auto& j : kept) CHECK(j.at("step").get<int>() <= 6);
  CHECK(kept.back() == nlohmann::json{{"step", 6}, {"val_loss", 0.5}});
  CHECK_FALSE(fs::exists(d / "metrics.jsonl.tmp"));
  keep_metrics_through((d / "absent.jsonl").string(), 3);  // nothing to do
  CHECK_FALSE(fs::exists(d / "absent.jsonl"));
}

TEST_CASE("RunLock: a second process is refused with the holder's pid; the lock dies with it") {
  const fs::path d = pgt::temp_dir("cli_parts", "lock");
  int ready[2], release[2];
  REQUIRE(pipe(ready) == 0);
  REQUIRE(pipe(release) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    RunLock lock(d.string());
    char c = 1;
    if (write(ready[1], &c, 1) != 1) _exit(2);
    if (read(release[0], &c, 1) < 0) _exit(3);  // holds the lock until told (or killed)
    _exit(0);
  }
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  const std::string dir = d.string(), holder = "pid " + std::to_string(child);
  CHECK_PG_ERROR(RunLock(dir), dir.c_str(), "another run", holder.c_str());
  CHECK(std::stoi(pgt::read_bytes(d / ".lock")) == child);
  kill(child, SIGKILL);  // no clean-up: the kernel releases the lock
  int status = 0;
  waitpid(child, &status, 0);
  CHECK_NOTHROW(RunLock(d.string()));
  close(ready[0]), close(ready[1]), close(release[0]), close(release[1]);
}

TEST_CASE("run_length: the checkpoint pins the schedule; --steps only moves the stop") {
  Checkpoint ck;
  ck.path = "ckpt.safetensors";
  ck.step = 40;
  // A new run: the schedule is what was asked for.
  CHECK(run_length(100, true, nullptr).schedule == 100);
  CHECK(run_length(100, true, nullptr).stop == 100);
  // Written before the schedule was recorded: the old behaviour, the request.
  CHECK(run_length(60, true, &ck).schedule == 60);
  ck.metadata["schedule_steps"] = "100";
  CHECK(run_length(2000, false, &ck).schedule == 100);  // no --steps: to the schedule's end
  CHECK(run_length(2000, false, &ck).stop == 100);
  CHECK(run_length(45, true, &ck).schedule == 100);  // --steps 45: stop early, same schedule
  CHECK(run_length(45, true, &ck).stop == 45);
  CHECK(run_length(300, true, &ck).stop == 300);  // past the end: min_lr from step 100 on
  CHECK_PG_ERROR(run_length(30, true, &ck), "--steps", "stop at step 30", "already at step 40");
  ck.metadata["schedule_steps"] = "30";  // continued past its schedule's end: fine
  CHECK(run_length(50, true, &ck).schedule == 30);
  for (const char* bad : {"-5", "ten", "0", "1e3", ""}) {
    ck.metadata["schedule_steps"] = bad;
    CHECK_PG_ERROR(schedule_steps(ck, 1), "ckpt.safetensors", "schedule_steps", "> 0");
  }
}
