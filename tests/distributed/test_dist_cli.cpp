// `mpirun -np 2 polygrad train ...` as a user runs it: the same result as one process within
// the rounding noise, resume across world sizes, and failures (a rank killed, stalled or
// throwing, ranks started with different flags) that end the job with a message, in bounded
// time, leaving a checkpoint that resumes.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "distributed/dist.h"
#include "nn/checkpoint.h"
#include "scratch_files.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Job {
  pid_t pid = -1;
  fs::path out, err;
};

struct Finished {
  int code = -1;  // exit status, or 128 + signal
  double seconds = 0;
  std::string out, err;
};

// Starts `argv` (a program and its arguments) with stdout and stderr in files.
Job start(const std::vector<std::string>& argv, const fs::path& dir, const std::string& name) {
  Job job{-1, dir / (name + ".out"), dir / (name + ".err")};
  job.pid = fork();
  if (job.pid == 0) {
    setpgid(0, 0);  // its own process group: the test can end everything it started
    int out = open(job.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(job.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return job;
}

// Waits for the job (at most `limit` seconds, then kills its process group).
Finished wait(const Job& job, double limit = 120) {
  const auto t0 = Clock::now();
  Finished f;
  int status = 0;
  while (waitpid(job.pid, &status, WNOHANG) == 0) {
    if (std::chrono::duration<double>(Clock::now() - t0).count() > limit) {
      kill(-job.pid, SIGKILL);
      waitpid(job.pid, &status, 0);
      FAIL("the job did not end within ", limit, " s");
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  f.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  f.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  f.out = pgt::read_bytes(job.out);
  f.err = pgt::read_bytes(job.err);
  return f;
}

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Polls until `ready()` or `limit` seconds.
template <class F>
bool wait_until(F ready, double limit = 60) {
  const auto t0 = Clock::now();
  while (!ready()) {
    if (std::chrono::duration<double>(Clock::now() - t0).count() > limit) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// The pids of mpirun's children by MPI rank (read from their environment).
std::map<int, pid_t> rank_pids(pid_t mpirun) {
  std::map<int, pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string pid, comm, state;
    pid_t ppid = 0;
    stat >> pid >> comm >> state >> ppid;
    if (ppid != mpirun) continue;
    const std::string env = pgt::read_bytes(e.path() / "environ");
    const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
    size_t at = env.find(key);
    if (at == std::string::npos) continue;
    out[std::atoi(env.c_str() + at + key.size())] = std::stoi(name);
  }
  return out;
}

// The scratch directory and a small text corpus.
struct Setup {
  fs::path dir, text;
  Setup() : dir(pgt::temp_dir("dist_cli", "runs")), text(dir / "text.txt") {
    std::ofstream t(text);
    for (int i = 0; i < 400; ++i) t << "sphinx of black quartz, judge my vow " << i << "\n";
  }
};

// `[mpirun -np N] polygrad train gpt` on the tiny model, with `extra` flags (which replace
// the defaults of the same name).
std::vector<std::string> train(const Setup& s, int processes, const fs::path& out,
                               std::vector<std::string> extra) {
  std::vector<std::string> a;
  if (processes > 0)
    a = {PG_MPIEXEC, "-np", std::to_string(processes), "--bind-to",
         "none",     "-x",  "OMP_NUM_THREADS=1"};
  for (std::string x : {PG_CLI, "train", "gpt"}) a.push_back(x);
  const std::vector<std::pair<std::string, std::string>> defaults{
      {"--data", s.text.string()}, {"--out", out.string()}, {"--context", "16"}, {"--dim", "16"},
      {"--layers", "2"},           {"--heads", "2"},        {"--batch", "8"},    {"--threads", "1"},
      {"--eval-every", "10"}};
  for (const auto& [flag, value] : defaults)
    if (std::find(extra.begin(), extra.end(), flag) == extra.end()) {
      a.push_back(flag);
      a.push_back(value);
    }
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// The parameters of a run's checkpoint and, with `optimizer`, its optimizer state too.
std::vector<pg::Tensor> saved_state(const fs::path& run, bool optimizer = false) {
  pg::Checkpoint ck = pg::load_checkpoint((run / "checkpoint.safetensors").string());
  std::vector<pg::Tensor> out;
  for (const auto& [name, t] : ck.model) out.push_back(t);
  if (optimizer)
    for (const auto& [name, t] : ck.optimizer) out.push_back(t);
  return out;
}

int64_t saved_step(const fs::path& run) {
  return pg::load_checkpoint((run / "checkpoint.safetensors").string()).step;
}

// Largest |a - b| over the saved parameters, relative to the largest |b|.
double relative_difference(const fs::path& a, const fs::path& b) {
  auto x = saved_state(a), y = saved_state(b);
  REQUIRE(x.size() == y.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    auto u = x[i].to(pg::DType::F64).to_vector<double>();
    auto v = y[i].to(pg::DType::F64).to_vector<double>();
    for (size_t k = 0; k < u.size(); ++k) {
      diff = std::max(diff, std::abs(u[k] - v[k]));
      scale = std::max(scale, std::abs(v[k]));
    }
  }
  return diff / scale;
}

// Runs `argv` until `lines` metrics lines exist, then sends SIGINT to every rank (mpirun itself
// would turn Ctrl-C into SIGTERM and SIGKILL): they agree on a step, save and exit 0.
Finished interrupt(const std::vector<std::string>& argv, const fs::path& run, int lines, bool mpi) {
  Job job = start(argv, run.parent_path(), run.filename().string() + "_interrupted");
  REQUIRE(wait_until([&] { return count_lines(run / "metrics.jsonl") >= lines; }));
  if (mpi) {
    auto ranks = rank_pids(job.pid);
    REQUIRE(ranks.size() == 2);
    for (const auto& [r, pid] : ranks) kill(pid, SIGINT);
  } else {
    kill(job.pid, SIGINT);
  }
  return wait(job);
}

// Starts 2 ranks on a long run into `run` with `flags`, waits for `lines` metrics lines, sends
// `signal` to rank 1 and returns how the job ended, timed from the signal.
Finished signal_rank_1(const Setup& s, const fs::path& run, std::vector<std::string> flags,
                       int lines, int signal) {
  flags.insert(flags.begin(), {"--steps", "100000"});
  Job job = start(train(s, 2, run, flags), s.dir, run.filename().string());
  REQUIRE(wait_until([&] { return count_lines(run / "metrics.jsonl") >= lines; }));
  auto ranks = rank_pids(job.pid);
  REQUIRE(ranks.count(1) == 1);
  kill(ranks[1], signal);
  Finished f = wait(job);
  kill(ranks[1], SIGKILL);  // a stopped rank that outlived the job
  return f;
}

// Trains 40 steps into s.dir / name (with `extra` flags), checking that the run succeeds.
Finished train_40_steps(const Setup& s, int processes, const std::string& name,
                        std::vector<std::string> extra) {
  extra.insert(extra.begin(), {"--steps", "40"});
  Finished f = wait(start(train(s, processes, s.dir / name, extra), s.dir, name));
  INFO(name, " stderr: ", f.err);
  CHECK(f.code == 0);
  return f;
}

}  // namespace

TEST_CASE("2 processes train as 1 does; resume 2->2 bit for bit, 2->1 and 1->2 within noise") {
  Setup s;
  const std::vector<std::string> steps{"--steps", "40"};
  auto run = [&](int processes, const std::string& name, std::vector<std::string> extra) {
    return train_40_steps(s, processes, name, std::move(extra));
  };
  Finished one = run(0, "one", {});
  Finished two = run(2, "two", {});
  // Rank 0 alone prints and writes: one header, one summary, one metrics line per step.
  CHECK(count(two.out, "GPT {") == 1);
  CHECK(count(two.out, "2 processes x 1 thread") == 1);
  CHECK(count(two.out, "validation loss") == 1);
  CHECK(count_lines(s.dir / "two" / "metrics.jsonl") == 40 + 4);  // 40 steps, 4 evaluations
  // The noise floor: one process against two, which differ only in how the batch is summed.
  const double floor = relative_difference(s.dir / "two", s.dir / "one");
  const double tolerance = 10 * floor;
  MESSAGE("relative parameter difference after 40 steps, 1 vs 2 processes: ", floor);
  CHECK(floor > 0);
  CHECK(floor < 1e-4);

  // 2 -> 2: stopped part-way and resumed, bit for bit the uninterrupted run.
  auto ex = train(s, 2, s.dir / "two_resumed", steps);
  Finished stopped = interrupt(ex, s.dir / "two_resumed", 5, true);
  CHECK(stopped.code == 0);
  const int64_t at = saved_step(s.dir / "two_resumed");
  MESSAGE("2 processes stopped at step ", at);
  REQUIRE(at < 40);
  fs::copy(s.dir / "two_resumed", s.dir / "two_to_one", fs::copy_options::recursive);
  fs::copy(s.dir / "two_resumed", s.dir / "two_wrong_seed", fs::copy_options::recursive);
  run(2, "two_resumed", {"--resume"});
  CHECK(pg::dist::fingerprint(saved_state(s.dir / "two_resumed", true)) ==
        pg::dist::fingerprint(saved_state(s.dir / "two", true)));
  // 2 -> 1, against the uninterrupted 2-process run.
  run(0, "two_to_one", {"--resume"});
  CHECK(saved_step(s.dir / "two_to_one") == 40);
  const double two_to_one = relative_difference(s.dir / "two_to_one", s.dir / "two");
  CHECK(two_to_one <= tolerance);
  // The negative control: the same resume on other data (another seed) is outside it.
  run(0, "two_wrong_seed", {"--resume", "--seed", "2"});
  const double wrong = relative_difference(s.dir / "two_wrong_seed", s.dir / "two");
  CHECK(wrong > tolerance);

  // 1 -> 2, against the uninterrupted 1-process run.
  Finished stopped_one =
      interrupt(train(s, 0, s.dir / "one_to_two", steps), s.dir / "one_to_two", 5, false);
  CHECK(stopped_one.code == 0);
  REQUIRE(saved_step(s.dir / "one_to_two") < 40);
  run(2, "one_to_two", {"--resume"});
  const double one_to_two = relative_difference(s.dir / "one_to_two", s.dir / "one");
  CHECK(one_to_two <= tolerance);
  MESSAGE("resumed 2->1: ", two_to_one, ", 1->2: ", one_to_two, ", other seed: ", wrong,
          " (tolerance ", tolerance, ")");
}

TEST_CASE("--zero 1: plain data parallel bit for bit; checkpoints resume across modes and sizes") {
  Setup s;
  const std::vector<std::string> steps{"--steps", "40"};
  auto run = [&](int processes, const std::string& name, std::vector<std::string> extra) {
    return train_40_steps(s, processes, name, std::move(extra));
  };
  auto state = [&](const std::string& name) {
    return pg::dist::fingerprint(saved_state(s.dir / name, true));
  };
  // Each step's metrics without the clock's fields: loss, gradient norm, rate, ||A||.
  auto metrics = [&](const std::string& name) {
    static const std::regex clock("\"(time_s|train_s|eval_s)\":[-+.e0-9]+,?");
    return std::regex_replace(pgt::read_bytes(s.dir / name / "metrics.jsonl"), clock, "");
  };
  Finished plain = run(2, "plain", {});
  Finished zero = run(2, "zero", {"--zero", "1"});
  CHECK(count(zero.out, "gradient reduce-scatter") == 1);
  CHECK(count(zero.out, "MiB (ZeRO-1), peak memory") == 1);
  CHECK(count(plain.out, "per rank: optimizer state") == 1);
  CHECK(state("zero") == state("plain"));  // parameters and the gathered optimizer state
  CHECK(metrics("zero") == metrics("plain"));
  CHECK(count_lines(s.dir / "zero" / "metrics.jsonl") == 40 + 4);

  // A ZeRO-1 checkpoint resumes under ZeRO-1 and plain, bit for bit, and on one process.
  Finished stopped =
      interrupt(train(s, 2, s.dir / "zero_resumed", {"--steps", "40", "--zero", "1"}),
                s.dir / "zero_resumed", 5, true);
  CHECK(stopped.code == 0);
  REQUIRE(saved_step(s.dir / "zero_resumed") < 40);
  fs::copy(s.dir / "zero_resumed", s.dir / "zero_to_plain", fs::copy_options::recursive);
  fs::copy(s.dir / "zero_resumed", s.dir / "zero_to_one", fs::copy_options::recursive);
  run(2, "zero_resumed", {"--resume", "--zero", "1"});
  CHECK(state("zero_resumed") == state("plain"));
  run(2, "zero_to_plain", {"--resume"});
  CHECK(state("zero_to_plain") == state("plain"));
  Finished one = run(0, "one", {});
  run(0, "zero_to_one", {"--resume"});
  const double floor = relative_difference(s.dir / "plain", s.dir / "one");
  const double zero_to_one = relative_difference(s.dir / "zero_to_one", s.dir / "plain");
  MESSAGE("ZeRO-1 checkpoint resumed on 1 process: ", zero_to_one, " (1 vs 2 processes: ", floor,
          ")");
  CHECK(zero_to_one <= 10 * floor);

  // A plain checkpoint resumes under ZeRO-1, bit for bit.
  Finished stopped_plain =
      interrupt(train(s, 2, s.dir / "plain_to_zero", steps), s.dir / "plain_to_zero", 5, true);
  CHECK(stopped_plain.code == 0);
  REQUIRE(saved_step(s.dir / "plain_to_zero") < 40);
  run(2, "plain_to_zero", {"--resume", "--zero", "1"});
  CHECK(state("plain_to_zero") == state("plain"));
}

TEST_CASE("kill -9 of one rank ends the job, names the rank, and the run resumes") {
  Setup s;
  const fs::path run = s.dir / "killed";
  Finished f = signal_rank_1(s, run, {"--ckpt-every", "5"}, 12, SIGKILL);
  MESSAGE("kill -9 of rank 1 to the end of the job: ", f.seconds, " s");
  INFO("stderr: ", f.err);
  CHECK(f.code != 0);
  CHECK(f.seconds < 10);
  CHECK(f.err.find("rank 1") != std::string::npos);
  const int64_t at = saved_step(run);  // the last checkpoint loads
  CHECK(at >= 5);
  CHECK(at % 5 == 0);
  Finished resumed = wait(start(train(s, 2, run, {"--steps", std::to_string(at + 3), "--resume"}),
                                s.dir, "killed_resumed"));
  CHECK(resumed.code == 0);
  CHECK(saved_step(run) == at + 3);
}

TEST_CASE("a stalled rank: the watchdog names rank, step and collective, and ends the job") {
  Setup s;
  Finished f = signal_rank_1(s, s.dir / "stalled", {"--dist-timeout", "2"}, 5, SIGSTOP);
  MESSAGE("SIGSTOP of rank 1 to the end of the job (--dist-timeout 2): ", f.seconds, " s");
  INFO("stderr: ", f.err);
  CHECK(f.code != 0);
  CHECK(f.seconds < 2 + 10);
  CHECK(f.err.find("polygrad: rank 0/2: error: ") != std::string::npos);
  CHECK(f.err.find("has waited 2 s for the other ranks (--dist-timeout 2)") != std::string::npos);
  CHECK(f.err.find(" at step ") != std::string::npos);
}

TEST_CASE("a rank that throws ends the job with its message") {
  Setup s;
  fs::create_directories(s.dir / "elsewhere");
  // Rank 1 runs in a directory without the corpus: same flags, a file it cannot read.
  std::vector<std::string> argv{PG_MPIEXEC, "--bind-to", "none",        "-np",
                                "1",        "-wdir",     s.dir.string()};
  std::vector<std::string> cmd{PG_CLI,  "train",    "gpt",     "--data",    "text.txt",
                               "--out", "run",      "--steps", "5",         "--dim",
                               "16",    "--layers", "1",       "--threads", "1"};
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  for (std::string x : {":", "-np", "1", "-wdir"}) argv.push_back(x);
  argv.push_back((s.dir / "elsewhere").string());
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  Finished f = wait(start(argv, s.dir, "throws"));
  INFO("stderr: ", f.err);
  CHECK(f.code == 1);
  CHECK(f.seconds < 30);
  CHECK(f.err.find("polygrad: rank 1/2: error: ") != std::string::npos);
  CHECK(f.err.find("text.txt") != std::string::npos);
}

TEST_CASE("a rank that throws mid-training, DataParallel running, ends the job with its message") {
  // Rank 0's first checkpoint cannot be written (a directory is in its place): it throws at
  // step 3, after three steps of gradient all-reduces, while rank 1 waits at the save's barrier.
  Setup s;
  const fs::path run = s.dir / "unwritable";
  fs::create_directories(run / "checkpoint.safetensors" / "in-the-way");
  Finished f =
      wait(start(train(s, 2, run, {"--steps", "50", "--ckpt-every", "3"}), s.dir, "unwritable"));
  INFO("stderr: ", f.err);
  CHECK(f.code == 1);
  CHECK(f.seconds < 30);  // not the 300 s of --dist-timeout: the throwing rank ends the job
  CHECK(f.err.find("polygrad: rank 0/2: error: ") != std::string::npos);
  CHECK(f.err.find("checkpoint.safetensors") != std::string::npos);
  CHECK(count_lines(run / "metrics.jsonl") >= 3);  // it trained first
}

TEST_CASE("ranks started with different flags, or a batch they cannot share: clear errors") {
  Setup s;
  std::vector<std::string> argv{PG_MPIEXEC, "--bind-to", "none", "-np", "1"};
  auto a = train(s, 0, s.dir / "mismatch", {"--attn", "softmax"});
  auto b = train(s, 0, s.dir / "mismatch", {"--attn", "poly:2"});
  argv.insert(argv.end(), a.begin(), a.end());
  for (std::string x : {":", "-np", "1"}) argv.push_back(x);
  argv.insert(argv.end(), b.begin(), b.end());
  Finished f = wait(start(argv, s.dir, "mismatch"));
  INFO("stderr: ", f.err);
  CHECK(f.code == 1);
  CHECK(f.err.find("the command line differs between ranks: rank 0 has '--attn softmax' where "
                   "rank 1 has '--attn poly:2' (every rank must run the same program)") !=
        std::string::npos);

  Finished odd = wait(start(train(s, 2, s.dir / "odd", {"--batch", "7"}), s.dir, "odd"));
  INFO("stderr: ", odd.err);
  CHECK(odd.code == 1);
  CHECK(odd.err.find("--batch: the global batch of 7 does not split evenly over 2 processes") !=
        std::string::npos);

  Finished eval = wait(
      start({PG_MPIEXEC, "-np", "2", PG_CLI, "eval", "--ckpt", s.text.string()}, s.dir, "eval"));
  CHECK(eval.code == 1);
  CHECK(eval.err.find("only `polygrad train` runs on several processes") != std::string::npos);
}

TEST_CASE("srun's tasks that MPI cannot see are refused instead of each training alone") {
  // What `srun -n 2 polygrad train ...` gives each task where MPI cannot reach Slurm's PMI:
  // MPI_Init makes a world of one, and both tasks would write the same OUT.
  Setup s;
  std::vector<std::string> argv{"env", "SLURM_STEP_NUM_TASKS=2", "SLURM_PROCID=0"};
  auto cmd = train(s, 0, s.dir / "srun", {"--steps", "3"});
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  Finished f = wait(start(argv, s.dir, "srun"));
  INFO("stderr: ", f.err);
  CHECK(f.code == 1);
  CHECK(f.err.find("srun (Slurm) started 2 processes, but MPI sees a world of 1") !=
        std::string::npos);
  CHECK_FALSE(fs::exists(s.dir / "srun" / "metrics.jsonl"));
  // One task is a world of one, as without a launcher.
  argv[1] = "SLURM_STEP_NUM_TASKS=1";
  CHECK(wait(start(argv, s.dir, "srun1")).code == 0);
}

TEST_CASE("resume: a rank whose copy of the checkpoint differs is refused on every rank") {
  // Each rank reads OUT/checkpoint.safetensors in its own working directory, as on machines
  // without a shared file system: rank 1's copy is stale (an earlier step), then from another
  // run at the same step (other weights, moments and generator).
  Setup s;
  auto one = [&](const fs::path& dir, const std::string& steps, const std::string& seed,
                 bool resume) {
    std::vector<std::string> a = train(s, 0, dir / "run", {"--steps", steps, "--seed", seed});
    if (resume) a.push_back("--resume");
    return wait(start(a, s.dir, "prepare")).code;
  };
  const fs::path r0 = s.dir / "rank0", r1 = s.dir / "rank1";
  REQUIRE(one(r0, "4", "1", false) == 0);
  fs::create_directories(r1);
  fs::copy(r0 / "run", r1 / "run", fs::copy_options::recursive);
  REQUIRE(one(r0, "6", "1", true) == 0);  // rank 0's copy moves on to step 6; rank 1's stays at 4
  auto resume_both = [&](const std::string& name) {
    std::vector<std::string> argv{PG_MPIEXEC, "--bind-to", "none",     "-np",
                                  "1",        "-wdir",     r0.string()};
    auto cmd = train(s, 0, "run", {"--steps", "8", "--resume"});
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    for (std::string x : {":", "-np", "1", "-wdir"}) argv.push_back(x);
    argv.push_back(r1.string());
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return wait(start(argv, s.dir, name));
  };
  Finished stale = resume_both("stale");
  INFO("stderr: ", stale.err);
  CHECK(stale.code == 1);
  CHECK(stale.err.find("run/checkpoint.safetensors as each rank read it: the step differs between "
                       "ranks: rank 0 has '6' where rank 1 has '4' (a stale copy") !=
        std::string::npos);
  // The same step from another run (seed 2): caught by the weights' fingerprint.
  fs::remove_all(r1 / "run");
  REQUIRE(one(r1, "6", "2", false) == 0);
  Finished other = resume_both("other");
  INFO("stderr: ", other.err);
  CHECK(other.code == 1);
  CHECK(other.err.find("as each rank read it: the weights ('model.*' fingerprint) differs") !=
        std::string::npos);
}
