#include "tools/cli/train_run.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/allocator.h"
#include "distributed/dist.h"
#include "kernels/backend.h"
#include "tools/cli/checkpoint_fields.h"

namespace pg::tools {

RunSetup::RunSetup(const TrainOptions& opt)
    : precision_(parse_matmul_precision(opt.precision)),
      checkpoint_path_(opt.out + "/checkpoint.safetensors") {
  if (opt.threads > 0) set_num_threads(opt.threads);
  dist::set_timeout(opt.dist_timeout);
  if (dist::rank() == 0) {
    std::filesystem::create_directories(opt.out);
    lock_.emplace(opt.out);
  }
}

RunLength run_length(int64_t requested, bool requested_given, const Checkpoint* resumed) {
  if (!resumed) return {requested, requested};
  RunLength n;
  n.schedule = schedule_steps(*resumed, requested);
  n.stop = requested_given ? requested : n.schedule;
  PG_CHECK(n.stop >= resumed->step, "--steps",
           detail::concat("this run would stop at step ", n.stop, ", but ", resumed->path,
                          " is already at step ", resumed->step, "; resume with a later stop"));
  if (n.stop != n.schedule && dist::rank() == 0)
    std::printf(
        "resuming at step %lld: the learning-rate schedule spans %lld steps (the "
        "checkpoint's); this run stops at step %lld\n",
        (long long)resumed->step, (long long)n.schedule, (long long)n.stop);
  return n;
}

dist::DataParallelOptions data_parallel_options(const TrainOptions& opt) {
  dist::DataParallelOptions o;
  o.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(opt.bucket_mb * (1 << 20)));
  o.first_bucket_bytes = std::min(o.first_bucket_bytes, o.bucket_bytes);
  o.overlap = opt.overlap;
  o.zero = opt.zero;
  return o;
}

std::string processes_and_threads() {
  const int threads = get_num_threads(), world = dist::world_size();
  const std::string t = detail::concat(threads, threads == 1 ? " thread" : " threads");
  return world == 1 ? t : detail::concat(world, " processes x ", t);
}

std::unique_ptr<Optimizer> make_adamw(std::vector<ParamGroup> groups) {
  return std::make_unique<AdamW>(std::move(groups));
}

void report_data_parallel(const dist::DataParallel& replicas,
                          const dist::DistributedOptimizer& optimizer, bool overlap) {
  const auto& st = replicas.stats();
  if (dist::world_size() == 1 || st.syncs == 0) return;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const std::vector<std::string> ranks = dist::all_gather(detail::concat(
      static_cast<double>(optimizer.state_bytes()) / (1 << 20), " ", usage.ru_maxrss / 1024.0));
  if (dist::rank() != 0) return;
  std::string state, peak;
  for (const std::string& r : ranks) {
    double state_mib = 0, peak_mib = 0;
    std::sscanf(r.c_str(), "%lf %lf", &state_mib, &peak_mib);
    char text[64];
    std::snprintf(text, sizeof text, "%s%.2f", state.empty() ? "" : " / ", state_mib);
    state += text;
    std::snprintf(text, sizeof text, "%s%.1f", peak.empty() ? "" : " / ", peak_mib);
    peak += text;
  }
  std::printf(
      "gradient %s: %lld buckets, %.2f ms/step communicating, %.2f ms/step exposed (overlap "
      "%s)\nper rank: optimizer state %s MiB%s, peak memory %s MiB\n",
      replicas.sharded() ? "reduce-scatter" : "all-reduce", (long long)replicas.num_buckets(),
      1e3 * st.comm_seconds / st.syncs, 1e3 * st.exposed_seconds / st.syncs, overlap ? "on" : "off",
      state.c_str(), replicas.sharded() ? " (ZeRO-1)" : "", peak.c_str());
}

namespace {
// The same error on every rank unless every rank read the same checkpoint.
void check_same_checkpoint(const Checkpoint& ck) {
  auto print = [](const StateDict& d) {
    std::vector<Tensor> tensors;
    for (const auto& [name, t] : d) tensors.push_back(t);
    return std::to_string(dist::fingerprint(tensors));
  };
  std::string rng;
  for (uint64_t w : ck.rng) rng += std::to_string(w) + " ";
  const std::string what = ck.path + " as each rank read it: ";
  const std::string hint =
      "a stale copy on some machine: give every rank the same file, e.g. OUT on a shared file "
      "system";
  dist::check_same_on_all_ranks(what + "the step", std::to_string(ck.step), hint);
  dist::check_same_on_all_ranks(what + "the weights ('model.*' fingerprint)", print(ck.model),
                                hint);
  dist::check_same_on_all_ranks(what + "the optimizer state ('optim.*' fingerprint)",
                                print(ck.optimizer), hint);
  dist::check_same_on_all_ranks(what + "the generator state ('rng.state')", rng, hint);
}

}  // namespace

void resume_from(const Checkpoint& ck, Module& model, RestorableOptimizer& optimizer) {
  if (dist::world_size() > 1) check_same_checkpoint(ck);
  restore_run(ck, model, optimizer);
}

void check_batch_divides(int64_t batch) {
  const int world = dist::world_size();
  PG_CHECK(batch % world == 0, "--batch",
           detail::concat("the global batch of ", batch, " does not split evenly over ", world,
                          " processes; use a multiple of ", world));
}

Batch local_rows(const Batch& global) {
  const int world = dist::world_size();
  if (world == 1) return global;
  const int64_t rows = global.inputs.size(0) / world, first = rows * dist::rank();
  return {global.inputs.narrow(0, first, rows).contiguous(),
          global.targets.narrow(0, first, rows).contiguous()};
}

BatchRows dropout_rows(int64_t batch) {
  const uint64_t key = default_generator().next_u64();
  return BatchRows(key, batch / dist::world_size() * dist::rank());
}

WarmupCosineLR run_schedule(const TrainOptions& opt, double lr, const RunLength& length,
                            double floor) {
  return WarmupCosineLR(lr, opt.warmup >= 0 ? opt.warmup : length.schedule / 20, length.schedule,
                        lr * floor);
}

void check_step_memory(int64_t batch, int64_t tokens, double bytes_per_token, Device device) {
  const double ram = static_cast<double>(physical_memory_bytes());
  const double need = static_cast<double>(batch) * static_cast<double>(tokens) * bytes_per_token;
  if (!device.is_cpu() || ram == 0 || need <= ram) return;
  throw Error("--batch", detail::concat("a batch of ", batch, " needs at least ",
                                        format_bytes(need), " of activations per training step (",
                                        tokens, " tokens per item), more than this machine's ",
                                        format_bytes(ram), " of memory; use a smaller --batch"));
}

TrainingRun::TrainingRun(const TrainOptions& opt, const RunSetup& setup, RunPlan plan,
                         std::function<void(int64_t)> save)
    : plan_(std::move(plan)),
      save_(std::move(save)),
      checkpoint_path_(setup.checkpoint_path()),
      ckpt_every_(opt.ckpt_every),
      eval_every_(opt.eval_every > 0 ? opt.eval_every
                                     : std::max<int64_t>(1, plan_.total / plan_.evals)),
      step_(plan_.first_step),
      lead_(dist::rank() == 0),
      out_(opt.out) {
  PG_CHECK(!opt.profile || parse_device(opt.device).is_cpu(), "--profile",
           "times the CPU backend's kernels, not --device ", opt.device,
           " (whose kernels run asynchronously: use a GPU profiler such as nsys)");
  if (opt.profile) profile_.emplace();
  if (lead_) {
    const std::string metrics = opt.out + "/metrics.jsonl";
    // A run killed after its last checkpoint wrote steps that the resumed run writes again.
    if (opt.resume) keep_metrics_through(metrics, plan_.first_step);
    metrics_.emplace(metrics, opt.resume);
    progress_.emplace(plan_.first_step, plan_.total, plan_.unit);
  }
  dist::set_context(detail::concat("step ", step_ + 1));
  install_stop_handler();
  summary_.best_metric = plan_.lower_is_better ? INFINITY : 0;
  start_ = step_start_ = step_end_ = std::chrono::steady_clock::now();
}

bool TrainingRun::finished_before() const {
  if (step_ < plan_.total) return false;
  if (lead_)
    std::printf("%s: already trained to step %lld of %lld\n", checkpoint_path_.c_str(),
                (long long)step_, (long long)plan_.total);
  return true;
}

void TrainingRun::end_step(double loss, double lr, double grad_norm,
                           const std::vector<double>& a_frob_sqrt_n) {
  if (profile_) profile_->end_step();
  // One message per step: the mean loss, and whether any rank was asked to stop (mpirun
  // forwards Ctrl-C to every rank, but they may see it at different steps).
  std::vector<double> agreed{loss, stop_requested() ? 1.0 : 0.0};
  dist::all_reduce(agreed, dist::ReduceOp::Sum);
  loss = agreed[0] / dist::world_size();
  stop_ = agreed[1] > 0;
  ++step_;
  dist::set_context(detail::concat("step ", step_ + 1));
  step_end_ = std::chrono::steady_clock::now();
  train_seconds_ += std::chrono::duration<double>(step_end_ - step_start_).count();
  if (!lead_) return;
  const double elapsed = std::chrono::duration<double>(step_end_ - start_).count();
  metrics_->write({{"step", step_},
                   {"time_s", elapsed},
                   {"train_s", train_seconds_},
                   {"loss", loss},
                   {"lr", lr},
                   {"grad_norm", grad_norm},
                   {"a_frob_sqrt_n", a_frob_sqrt_n}});
  progress_->update(step_, loss, plan_.items_per_step);
}

void TrainingRun::save(int64_t step) {
  dist::check_replicas(plan_.replicas, "the parameters");
  save_(step);  // rank 0 writes atomically (a temporary file, then a rename)
  dist::barrier();
}

bool TrainingRun::eval_due() const { return step_ % eval_every_ == 0 || step_ == plan_.total; }

void TrainingRun::record_eval(nlohmann::json record, double metric) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - step_end_).count();
  summary_.eval_seconds += seconds;
  record["step"] = step_;
  record["eval_s"] = seconds;
  if (lead_) metrics_->write(record);
  summary_.best_metric = plan_.lower_is_better ? std::min(summary_.best_metric, metric)
                                               : std::max(summary_.best_metric, metric);
  summary_.final_metric = metric;
}

bool TrainingRun::save_or_stop() {
  if (ckpt_every_ > 0 && step_ % ckpt_every_ == 0) save(step_);
  if (dist::world_size() == 1) stop_ = stop_requested();  // no one to agree with: the latest
  step_start_ = std::chrono::steady_clock::now();
  if (profile_ && step_ - plan_.first_step >= StepProfile::kWarmupSteps && step_ < plan_.total)
    profile_->begin_step();
  if (!stop_) return false;
  if (lead_) progress_->finish();
  save(step_);
  if (lead_)
    std::printf("interrupted at step %lld: checkpoint saved to %s (continue with --resume)\n",
                (long long)step_, checkpoint_path_.c_str());
  summary_.steps = step_;
  return true;
}

RunSummary TrainingRun::finish(std::vector<double> a_frob_sqrt_n) {
  if (lead_) progress_->finish();
  save(step_);
  const int64_t done = step_ - plan_.first_step;
  summary_.steps = step_;
  summary_.ms_per_step = 1e3 * train_seconds_ / static_cast<double>(std::max<int64_t>(done, 1));
  summary_.items_per_s =
      train_seconds_ > 0 ? static_cast<double>(done * plan_.items_per_step) / train_seconds_ : 0;
  summary_.a_frob_sqrt_n = std::move(a_frob_sqrt_n);
  if (profile_ && lead_) {
    std::printf("\n%s(every kernel: %s/profile.md)\n",
                profile_->table(get_num_threads(), 12).c_str(), out_.c_str());
    write_text_file(out_ + "/profile.md", profile_->table(get_num_threads()));
  }
  return summary_;
}

void use_attention_path(const std::vector<std::shared_ptr<TransformerBlock>>& blocks,
                        const TrainOptions& opt) {
  const AttentionPath path = opt.attn_path == "linear"      ? AttentionPath::Linear
                             : opt.attn_path == "quadratic" ? AttentionPath::Fused
                                                            : AttentionPath::Auto;
  PG_CHECK(path != AttentionPath::Linear ||
               AttentionActivation::parse(opt.attn).kind() == AttnActivation::Poly,
           "--attn-path", "linear needs a polynomial activation (--attn poly:p), got --attn ",
           opt.attn, ": only s^p factors into features");
  for (const auto& block : blocks) block->attn->set_path(path);
}

std::vector<double> attention_norms(const std::vector<std::shared_ptr<TransformerBlock>>& blocks) {
  std::vector<double> norms;
  for (const auto& blk : blocks) norms.push_back(blk->attn->stats().a_frob_sqrt_n());
  return norms;
}

}  // namespace pg::tools
