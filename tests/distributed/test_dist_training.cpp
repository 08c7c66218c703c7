// Data-parallel training (DataParallel) under `mpirun -np 2`: N ranks on B/N rows each must
// equal one process accumulating the same N slices bit for bit, replicas must stay identical,
// and against one process on the whole batch the difference must stay at the rounding noise of
// reordering that batch. Also runs as a world of one, where DataParallel does nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <thread>

#include "autograd/batch_rows.h"
#include "autograd/grad_ready.h"
#include "distributed/data_parallel.h"
#include "distributed/dist.h"
#include "distributed/distributed_optimizer.h"
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/optim.h"
#include "polygrad.h"

using namespace pg;

namespace {

// A model, its synthetic data and its loss: one for each demo model.
struct Task {
  std::string name;
  std::function<std::shared_ptr<Module>(uint64_t seed)> make;
  std::function<Tensor(Module&, const Tensor& inputs, const Tensor& targets)> loss;
  Tensor inputs, targets;  // all steps' global batches: [steps * B, ...]
};

constexpr int64_t kBatch = 8, kSteps = 20;

Task gpt_task(double dropout = 0) {
  GptConfig cfg;
  cfg.dropout = dropout;
  cfg.vocab_size = 11;
  cfg.context = 8;
  cfg.dim = 16;
  cfg.layers = 2;
  cfg.heads = 2;
  Generator gen(7);
  Tensor tokens =
      randint(0, cfg.vocab_size, {kSteps * kBatch, cfg.context + 1}, {DType::I64}, &gen);
  return {"gpt",
          [cfg](uint64_t seed) {
            manual_seed(seed);
            return std::make_shared<Gpt>(cfg);
          },
          [](Module& m, const Tensor& x, const Tensor& y) { return cross_entropy(m(x), y); },
          tokens.narrow(1, 0, cfg.context).contiguous(),
          tokens.narrow(1, 1, cfg.context).contiguous()};
}

Task vit_task() {
  VitConfig cfg;
  cfg.image_size = 8;
  cfg.patch = 4;
  cfg.classes = 3;
  cfg.dim = 16;
  cfg.layers = 2;
  cfg.heads = 2;
  Generator gen(8);
  return {"vit",
          [cfg](uint64_t seed) {
            manual_seed(seed);
            return std::make_shared<Vit>(cfg);
          },
          [](Module& m, const Tensor& x, const Tensor& y) { return cross_entropy(m(x), y); },
          randn({kSteps * kBatch, 1, 8, 8}, {}, &gen),
          randint(0, 3, {kSteps * kBatch}, {DType::I64}, &gen)};
}

// Two linear layers of odd sizes: 5,638 parameters, the first weight (37 x 131 = 4,847) larger
// than one chunk of the gradient-norm sum, so ZeRO-1 can cut it between ranks.
Task mlp_task() {
  struct Mlp : Module {
    std::shared_ptr<Linear> in, out;
    Mlp() {
      in = register_module("in", std::make_shared<Linear>(37, 131));
      out = register_module("out", std::make_shared<Linear>(131, 5));
    }
    Tensor forward(const Tensor& x) override { return (*out)(relu((*in)(x))); }
  };
  Generator gen(9);
  return {"mlp",
          [](uint64_t seed) {
            manual_seed(seed);
            return std::make_shared<Mlp>();
          },
          [](Module& m, const Tensor& x, const Tensor& y) { return cross_entropy(m(x), y); },
          randn({kSteps * kBatch, 37}, {}, &gen),
          randint(0, 5, {kSteps * kBatch}, {DType::I64}, &gen)};
}

// How a run splits each global batch.
enum class Mode {
  Distributed,  // DataParallel: rank r takes rows [rB/N, (r+1)B/N)
  Zero,         // the same with ZeRO-1: a DistributedOptimizer over sharded replicas
  SameRows,     // DataParallel, but every rank takes rank 0's rows: the negative control
  Accumulate,   // one process: the N slices one after the other, gradients summed, then / N
  FullBatch,    // one process, the whole batch at once
  Permuted,     // the same, rows in another order: the rounding noise floor
};

// What a run leaves: each step's loss and the final parameters and optimizer state.
struct Trace {
  std::vector<double> losses;
  std::vector<double> norms;  // each step's gradient norm before clipping
  std::vector<Tensor> state;
  int64_t clipped = 0;  // steps whose gradient norm exceeded the clip
};

// The rows of a batch in reverse order.
Tensor reversed(const Tensor& t) {
  TensorList rows;
  for (int64_t i = t.size(0) - 1; i >= 0; --i) rows.push_back(t.narrow(0, i, 1));
  return cat(rows, 0);
}

std::vector<Tensor> optimizer_state(const Optimizer& opt) {
  std::vector<Tensor> out;
  for (const auto& [name, t] : opt.state_dict()) out.push_back(t);
  return out;
}

// `batch_rows`: dropout masks by global row (BatchRows, as the training programs do); false:
// each dropout call draws its own key, so every rank draws the same masks.
Trace train(const Task& task, Mode mode, dist::DataParallelOptions options = {}, uint64_t seed = 1,
            bool batch_rows = true) {
  const int world = dist::world_size(), rank = dist::rank();
  auto model = task.make(seed);
  const bool ddp = mode == Mode::Distributed || mode == Mode::SameRows || mode == Mode::Zero;
  if (mode == Mode::Zero) options.zero = 1;
  std::optional<dist::DataParallel> replicas;
  if (ddp) replicas.emplace(*model, options);
  // Plain modes drive AdamW by hand, as a program without DistributedOptimizer does.
  AdamW opt(decay_groups(*model, 1e-2, 0.1));
  std::optional<dist::DistributedOptimizer> sharded;
  if (mode == Mode::Zero)
    sharded.emplace(*replicas, decay_groups(*model, 1e-2, 0.1), [](std::vector<ParamGroup> g) {
      return std::make_unique<AdamW>(std::move(g));
    });
  const int64_t rows = kBatch / world;
  const double clip = 0.05;  // small enough to be active at every step
  Trace trace;
  for (int64_t s = 0; s < kSteps; ++s) {
    Tensor x = task.inputs.narrow(0, s * kBatch, kBatch),
           y = task.targets.narrow(0, s * kBatch, kBatch);
    opt.zero_grad();
    if (sharded) sharded->zero_grad();
    double loss = 0;
    const uint64_t key = default_generator().next_u64();  // the same on every rank
    auto scope = [&](int64_t first) {
      return batch_rows ? std::make_unique<BatchRows>(key, first) : nullptr;
    };
    if (ddp) {
      const int64_t first = mode == Mode::SameRows ? 0 : rank * rows;
      auto in_batch = scope(first);
      Tensor l = task.loss(*model, x.narrow(0, first, rows).contiguous(),
                           y.narrow(0, first, rows).contiguous());
      l.backward();
      replicas->sync_gradients();
      std::vector<double> v{l.item()};
      dist::all_reduce(v);
      loss = v[0] / world;
    } else if (mode == Mode::Accumulate) {
      double sum = 0;
      for (int k = 0; k < world; ++k) {
        auto in_batch = scope(k * rows);
        Tensor l = task.loss(*model, x.narrow(0, k * rows, rows).contiguous(),
                             y.narrow(0, k * rows, rows).contiguous());
        l.backward();
        sum += l.item();
      }
      loss = sum / world;
      for (Tensor p : model->parameters())
        if (p.grad().defined()) p.set_grad(mul(p.grad(), 1.0 / world));
    } else {
      auto in_batch = scope(0);
      Tensor l = mode == Mode::Permuted ? task.loss(*model, reversed(x), reversed(y))
                                        : task.loss(*model, x, y);
      l.backward();
      loss = l.item();
    }
    if (sharded) {
      trace.norms.push_back(sharded->clip_grad_norm(clip));
      sharded->step();
    } else {
      trace.norms.push_back(clip_grad_norm(model->parameters(), clip));
      opt.step();
    }
    trace.clipped += trace.norms.back() > clip;
    trace.losses.push_back(loss);
    if (ddp) {
      std::vector<Tensor> everything = model->parameters();
      if (!sharded)  // each rank's shard of the state differs; the whole is checked below
        for (const Tensor& t : optimizer_state(opt)) everything.push_back(t);
      dist::check_replicas(everything,
                           "parameters and optimizer state after step " + std::to_string(s + 1));
    }
  }
  trace.state = model->parameters();
  // ZeRO-1: the state gathered on rank 0 (the other ranks compare the parameters alone).
  const StateDict state = sharded ? sharded->state_dict() : opt.state_dict();
  for (const auto& [name, t] : state) trace.state.push_back(t);
  return trace;
}

// The default buckets (the tiny models' gradients in one), buckets of about 1 KiB (many,
// filled in a different order than backward finishes them), and everything after backward.
std::vector<dist::DataParallelOptions> bucket_layouts() {
  dist::DataParallelOptions many;
  many.bucket_bytes = many.first_bucket_bytes = 1024;
  dist::DataParallelOptions after;
  after.overlap = false;
  return {dist::DataParallelOptions{}, many, after};
}

bool same_bits(const Trace& a, const Trace& b) {
  if (a.losses != b.losses || a.norms != b.norms || a.state.size() != b.state.size()) return false;
  return dist::fingerprint(a.state) == dist::fingerprint(b.state);
}

// Largest |a - b| over the parameters, relative to the largest |b|.
double relative_difference(const Trace& a, const Trace& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.state.size(); ++i) {
    auto x = a.state[i].to(DType::F64).to_vector<double>();
    auto y = b.state[i].to(DType::F64).to_vector<double>();
    for (size_t k = 0; k < x.size(); ++k) {
      diff = std::max(diff, std::abs(x[k] - y[k]));
      scale = std::max(scale, std::abs(y[k]));
    }
  }
  return diff / scale;
}

}  // namespace

TEST_CASE("N ranks x B/N rows equal one process accumulating the N slices, bit for bit") {
  for (const Task& task : {gpt_task(), vit_task()}) {
    CAPTURE(task.name);
    Trace reference = train(task, Mode::Accumulate);
    CHECK(reference.clipped == kSteps);  // clipping acted on every step
    for (const auto& options : bucket_layouts()) {
      CAPTURE(options.bucket_bytes);
      CAPTURE(options.overlap);
      Trace ddp = train(task, Mode::Distributed, options);
      CHECK(same_bits(ddp, reference));
    }
  }
}

TEST_CASE("dropout: N ranks draw the masks one process draws for the whole batch") {
  const Task task = gpt_task(0.3);
  Trace reference = train(task, Mode::Accumulate);
  CHECK(same_bits(train(task, Mode::Distributed), reference));
  // Against the whole batch at once: the same masks, so only the rounding of the sums differs.
  const double full =
      relative_difference(train(task, Mode::Distributed), train(task, Mode::FullBatch));
  MESSAGE("dropout 0.3, relative parameter difference to one process x B: ", full);
  CHECK(full < 1e-5);
  if (dist::world_size() == 1) return;
  // What the ranks did before BatchRows: every rank drew the same masks for its rows, which is
  // not what one process draws (the control must fail both checks).
  Trace same_masks = train(task, Mode::Distributed, {}, 1, false);
  CHECK_FALSE(same_bits(same_masks, train(task, Mode::Accumulate, {}, 1, false)));
  const double control =
      relative_difference(same_masks, train(task, Mode::FullBatch, {}, 1, false));
  MESSAGE("without BatchRows: ", control);
  CHECK(control > 100 * full);
}

TEST_CASE("ranks seeded differently hold rank 0's parameters after construction") {
  auto model = gpt_task().make(100 + dist::rank());
  auto rank0 = gpt_task().make(100);
  dist::DataParallel replicas(*model);
  CHECK(dist::fingerprint(model->parameters()) == dist::fingerprint(rank0->parameters()));
  CHECK_NOTHROW(dist::check_replicas(model->parameters(), "parameters"));
}

TEST_CASE("N ranks x B/N rows against one process x B: within the noise of reordering B") {
  if (dist::world_size() == 1) return;  // the same computation there
  for (const Task& task : {gpt_task(), vit_task()}) {
    CAPTURE(task.name);
    Trace full = train(task, Mode::FullBatch);
    const double floor = relative_difference(train(task, Mode::Permuted), full);
    const double ddp = relative_difference(train(task, Mode::Distributed), full);
    const double wrong = relative_difference(train(task, Mode::SameRows), full);
    MESSAGE(task.name, ": noise floor ", floor, ", N ranks ", ddp, ", same rows on every rank ",
            wrong, " (relative parameter difference after ", kSteps, " steps)");
    const double tolerance = 10 * floor;
    CHECK(floor > 0);
    CHECK(ddp <= tolerance);
    CHECK(wrong > tolerance);  // the test can fail
    double loss_gap = 0;
    Trace d = train(task, Mode::Distributed);
    for (int64_t s = 0; s < kSteps; ++s)
      loss_gap = std::max(loss_gap, std::abs(d.losses[s] - full.losses[s]) / full.losses[s]);
    CHECK(loss_gap <= tolerance);
  }
}

TEST_CASE("no_sync accumulates locally; the next backward sends the sums") {
  auto model = gpt_task().make(3);
  Task task = gpt_task();
  const int world = dist::world_size(), rank = dist::rank();
  const int64_t rows = kBatch / world / 2;
  auto micro = [&](int r, int k) {
    const int64_t first = (2 * r + k) * rows;
    return task.loss(*model, task.inputs.narrow(0, first, rows).contiguous(),
                     task.targets.narrow(0, first, rows).contiguous());
  };
  // Reference, on every rank: each rank's two micro-batches summed, then the ranks' sums.
  std::vector<Tensor> expected;
  for (int r = 0; r < world; ++r) {
    model->zero_grad();
    micro(r, 0).backward();
    micro(r, 1).backward();
    std::vector<Tensor> sums;
    for (const Tensor& p : model->parameters()) sums.push_back(p.grad());
    if (expected.empty())
      expected = sums;
    else
      for (size_t i = 0; i < sums.size(); ++i) expected[i] = add(expected[i], sums[i]);
  }
  for (Tensor& e : expected) e = mul(e, 1.0 / world);

  // Counts the buckets sent, and those sent while a backward was still running.
  std::atomic<bool> in_backward{false};
  std::atomic<int> sent{0}, sent_during{0};
  dist::DataParallelOptions options;
  options.bucket_bytes = 4096;
  options.first_bucket_bytes = 1024;
  options.before_all_reduce = [&](int64_t) {
    ++sent;
    if (in_backward) ++sent_during;
  };
  dist::DataParallel replicas(*model, options);
  model->zero_grad();
  {
    auto guard = replicas.no_sync();
    micro(rank, 0).backward();
    CHECK_THROWS_AS(replicas.sync_gradients(), pg::Error);  // not inside no_sync
  }
  CHECK(sent == 0);  // inside no_sync nothing goes out
  // The backward after it sends the sums while it runs (held at its last gradient until a
  // bucket has gone out): an implementation that deferred everything to sync_gradients() fails.
  auto hold = add_grad_ready_hook(model->parameters().front(), [&](const Tensor&) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (world > 1 && sent == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  Tensor last = micro(rank, 1);
  in_backward = true;
  last.backward();
  in_backward = false;
  replicas.sync_gradients();
  CHECK(sent == replicas.num_buckets());
  if (world > 1) CHECK(sent_during > 0);
  std::vector<Tensor> got;
  for (const Tensor& p : model->parameters()) got.push_back(p.grad());
  CHECK(dist::fingerprint(got) == dist::fingerprint(expected));
}

namespace {
// Three parameters: `a` used by every rank, `b` only by rank 1, `c` by none.
struct ThreePaths : Module {
  Tensor a, b, c;
  ThreePaths() {
    a = ones({4});
    b = ones({4});
    c = ones({4});
    register_parameter("a", &a);
    register_parameter("b", &b);
    register_parameter("c", &c);
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = mul(x, a);
    if (dist::rank() == 1) y = add(y, mul(x, b));
    return sum(y);
  }
};
}  // namespace

TEST_CASE("parameters without a gradient are sent as zeros; no rank's grad goes missing") {
  ThreePaths model;
  dist::DataParallel replicas(model);
  const int world = dist::world_size();
  Tensor x = full({4}, 2.0 + dist::rank());
  model(x).backward();
  replicas.sync_gradients();
  // d/da = x: the mean of 2, 3, ... over the ranks.
  double mean_x = 0;
  for (int r = 0; r < world; ++r) mean_x += (2.0 + r) / world;
  CHECK(model.a.grad().to_vector<float>()[0] == doctest::Approx(mean_x));
  if (world > 1) {
    REQUIRE(model.b.grad().defined());  // defined on rank 0 too: rank 1 computed one
    CHECK(model.b.grad().to_vector<float>()[0] == doctest::Approx(3.0 / world));
  } else {
    CHECK_FALSE(model.b.grad().defined());
  }
  CHECK_FALSE(model.c.grad().defined());  // no rank computed one
  if (world > 1)  // a world of one has nothing to send, so nothing to get wrong
    CHECK_THROWS_AS(
        {
          model(x).backward();
          model(x).backward();  // a second backward before sync_gradients()
        },
        pg::Error);
}

TEST_CASE("ranks that built different models get the same error, not a hang") {
  if (dist::world_size() == 1) return;
  GptConfig cfg;
  cfg.vocab_size = 11;
  cfg.context = 8;
  cfg.dim = dist::rank() == 0 ? 16 : 32;
  cfg.layers = 1;
  cfg.heads = 2;
  Gpt model(cfg);
  CHECK_THROWS_WITH_AS(dist::DataParallel{model},
                       doctest::Contains("the model differs between ranks"), pg::Error);
}

TEST_CASE("the program's own all_reduce between backward and sync_gradients pairs with itself") {
  // One bucket. Before DataParallel had a communicator of its own, logging the loss here met
  // the bucket's all-reduce on the other rank (MPI_ERR_TRUNCATE, or with the collectives' lock
  // a hang), and a tensor of the bucket's size would have been summed with the gradients.
  auto model = gpt_task().make(3);
  Task task = gpt_task();
  const int world = dist::world_size(), rank = dist::rank();
  const int64_t rows = kBatch / world;
  auto slice = [&](int r) {
    return task.loss(*model, task.inputs.narrow(0, r * rows, rows).contiguous(),
                     task.targets.narrow(0, r * rows, rows).contiguous());
  };
  // The reference, on every rank: each rank's slice, its loss and gradients, in rank order.
  double expected_loss = 0;
  std::vector<Tensor> expected;
  for (int r = 0; r < world; ++r) {
    model->zero_grad();
    Tensor l = slice(r);
    expected_loss += l.item();
    l.backward();
    const std::vector<Tensor> params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i)
      if (r == 0)
        expected.push_back(params[i].grad().clone());
      else
        expected[i] = add(expected[i], params[i].grad());
  }

  std::atomic<bool> sending{false};
  dist::DataParallelOptions options;
  options.bucket_bytes = options.first_bucket_bytes = int64_t(1) << 30;
  // The order that broke it, forced: rank 0's bucket is on its way before rank 0 logs, while
  // rank 1 logs before its bucket goes out.
  options.before_all_reduce = [&](int64_t) {
    sending = true;
    if (dist::rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  };
  dist::DataParallel replicas(*model, options);
  CHECK(replicas.num_buckets() == (world > 1 ? 1 : 0));
  Tensor loss = slice(rank);
  model->zero_grad();
  loss.backward();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (world > 1 && rank == 0 && !sending && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::vector<double> logged{loss.item()};
  dist::all_reduce(logged, dist::ReduceOp::Sum);  // to log the mean loss
  int64_t bucket_size = 0;
  for (const Tensor& p : model->parameters()) bucket_size += p.numel() + 1;
  Tensor same_size = full({bucket_size}, 1.0);
  dist::all_reduce({same_size}, dist::ReduceOp::Sum);
  replicas.sync_gradients();
  CHECK(logged[0] == doctest::Approx(expected_loss).epsilon(1e-12));
  for (float v : same_size.to_vector<float>()) CHECK(v == world);
  const std::vector<Tensor> params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i)
    CHECK(max(abs(sub(params[i].grad(), mul(expected[i], 1.0 / world)))).item() < 1e-6);
}

TEST_CASE("buckets go out while backward runs, over the communication thread") {
  if (dist::world_size() == 1) return;  // nothing is sent in a world of one
  auto model = gpt_task().make(3);
  Task task = gpt_task();
  std::atomic<bool> in_backward{false};
  std::atomic<int> sent_during{0}, sent{0};
  dist::DataParallelOptions options;
  options.bucket_bytes = 4096;  // many buckets
  options.first_bucket_bytes = 1024;
  options.before_all_reduce = [&](int64_t) {
    ++sent;
    if (in_backward) ++sent_during;
  };
  dist::DataParallel replicas(*model, options);
  REQUIRE(replicas.num_buckets() > 3);
  // The first parameter's gradient comes last in backward: hold backward there until a bucket
  // has gone out (at most 5 s). Buckets sent only by sync_gradients() (hooks that never fire)
  // leave sent_during at 0.
  Tensor first = model->parameters().front();
  auto hold = add_grad_ready_hook(first, [&](const Tensor&) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (sent == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  const int64_t rows = kBatch / dist::world_size();
  Tensor loss = task.loss(*model, task.inputs.narrow(0, dist::rank() * rows, rows).contiguous(),
                          task.targets.narrow(0, dist::rank() * rows, rows).contiguous());
  in_backward = true;
  loss.backward();
  in_backward = false;
  replicas.sync_gradients();
  CHECK(sent == replicas.num_buckets());
  MESSAGE("buckets sent before backward returned: ", sent_during.load(), " of ", sent.load());
  CHECK(sent_during > 0);
}

TEST_CASE("a failed bucket all-reduce stops the sending; sync_gradients reports it, then refuses") {
  if (dist::world_size() == 1) return;
  for (bool overlap : {true, false}) {
    CAPTURE(overlap);
    auto model = gpt_task().make(3);
    Task task = gpt_task();
    std::atomic<int> attempts{0};
    dist::DataParallelOptions options;
    options.bucket_bytes = 4096;
    options.first_bucket_bytes = 1024;
    options.overlap = overlap;
    // Every rank fails at its first bucket, so the ranks stay paired and the test can go on.
    options.before_all_reduce = [&](int64_t bucket) {
      ++attempts;
      if (bucket == 0) throw Error("test", "injected failure in bucket 0");
    };
    dist::DataParallel replicas(*model, options);
    REQUIRE(replicas.num_buckets() > 3);
    const int64_t rows = kBatch / dist::world_size();
    auto step = [&] {
      Tensor loss = task.loss(*model, task.inputs.narrow(0, dist::rank() * rows, rows).contiguous(),
                              task.targets.narrow(0, dist::rank() * rows, rows).contiguous());
      model->zero_grad();
      loss.backward();
      replicas.sync_gradients();
    };
    CHECK_THROWS_WITH_AS(step(), doctest::Contains("injected failure in bucket 0"), pg::Error);
    // Nothing after the failed bucket was sent (it would pair with another rank's skipped one).
    CHECK(attempts == 1);
    CHECK_THROWS_WITH_AS(step(), doctest::Contains("an earlier gradient all-reduce failed"),
                         pg::Error);
    CHECK(attempts == 1);
  }
}

TEST_CASE("ZeRO-1: the parameters and optimizer state of plain data parallel, bit for bit") {
  for (const Task& task : {gpt_task(), vit_task(), mlp_task()}) {
    CAPTURE(task.name);
    Trace reference = train(task, Mode::Accumulate);  // = plain data parallel (tested above)
    // With 1 KiB buckets the MLP's large weight is alone in its bucket and cut inside it.
    for (const auto& options : bucket_layouts()) {
      CAPTURE(options.bucket_bytes);
      CAPTURE(options.overlap);
      Trace zero = train(task, Mode::Zero, options);
      CHECK(zero.clipped == kSteps);  // the norm decides every step's update
      CHECK(zero.losses == reference.losses);
      CHECK(zero.norms == reference.norms);
      const size_t params = task.make(1)->parameters().size();
      std::vector<Tensor> p(zero.state.begin(), zero.state.begin() + params),
          q(reference.state.begin(), reference.state.begin() + params);
      CHECK(dist::fingerprint(p) == dist::fingerprint(q));
      if (dist::rank() == 0) CHECK(same_bits(zero, reference));  // the state gathered here
    }
  }
}

namespace {
// Bytes of optimizer state each rank holds after one step of `task`'s model, ZeRO-1 or plain.
int64_t state_bytes_after_a_step(const Task& task, int zero) {
  auto model = task.make(1);
  dist::DataParallelOptions options;
  options.zero = zero;
  dist::DataParallel replicas(*model, options);
  dist::DistributedOptimizer opt(
      replicas, decay_groups(*model, 1e-2, 0.1),
      [](std::vector<ParamGroup> g) { return std::make_unique<AdamW>(std::move(g)); });
  const int64_t rows = kBatch / dist::world_size();
  task.loss(*model, task.inputs.narrow(0, dist::rank() * rows, rows).contiguous(),
            task.targets.narrow(0, dist::rank() * rows, rows).contiguous())
      .backward();
  replicas.sync_gradients();
  opt.clip_grad_norm(1.0);
  opt.step();
  return opt.state_bytes();
}
}  // namespace

TEST_CASE("ZeRO-1: each rank holds about 1/N of the optimizer state") {
  GptConfig cfg;
  cfg.vocab_size = 11;
  cfg.context = 8;
  cfg.dim = 64;
  cfg.layers = 2;
  cfg.heads = 2;
  Task task = gpt_task();
  task.make = [cfg](uint64_t seed) {
    manual_seed(seed);
    return std::make_shared<Gpt>(cfg);
  };
  const int world = dist::world_size();
  const int64_t whole = state_bytes_after_a_step(task, 0);
  const int64_t mine = state_bytes_after_a_step(task, 1);
  std::vector<double> all{static_cast<double>(mine)}, most{static_cast<double>(mine)};
  dist::all_reduce(all, dist::ReduceOp::Sum);
  dist::all_reduce(most, dist::ReduceOp::Max);
  MESSAGE("AdamW state: ", whole, " bytes whole; ZeRO-1 over ", world, " ranks: at most ", most[0],
          " bytes per rank, ", all[0], " in all");
  // Every element's moments are held once; a rank's share is off 1/N by at most a chunk per
  // cut (one bucket here) and the per-parameter step counts of pieces.
  const int64_t slack = 2 * 2 * kSumOfSquaresChunk * 4 + 8 * 64;
  CHECK(all[0] >= whole);
  CHECK(all[0] <= whole + 8 * 64 * world);
  CHECK(most[0] <= static_cast<double>(whole) / world + slack);
  if (world == 1) CHECK(mine == whole);
}

TEST_CASE("ZeRO-1 misuse: clear errors") {
  dist::DataParallelOptions two;
  two.zero = 2;
  auto model = gpt_task().make(1);
  CHECK_THROWS_WITH_AS(dist::DataParallel(*model, two), doctest::Contains("ZeRO stage 2"),
                       pg::Error);
  if (dist::world_size() == 1) return;  // ZeRO-1 of one process is plain
  dist::DataParallelOptions zero;
  zero.zero = 1;
  dist::DataParallel replicas(*model, zero);
  Task task = gpt_task();
  const int64_t rows = kBatch / dist::world_size();
  auto backward = [&] {
    task.loss(*model, task.inputs.narrow(0, dist::rank() * rows, rows).contiguous(),
              task.targets.narrow(0, dist::rank() * rows, rows).contiguous())
        .backward();
  };
  auto make = [](std::vector<ParamGroup> g) { return std::make_unique<AdamW>(std::move(g)); };
  backward();
  CHECK_THROWS_WITH_AS(replicas.sync_gradients(), doctest::Contains("DistributedOptimizer"),
                       pg::Error);
  model->zero_grad();
  dist::DistributedOptimizer opt(replicas, decay_groups(*model, 1e-2, 0.1), make);
  CHECK_THROWS_WITH_AS(dist::DistributedOptimizer(replicas, decay_groups(*model, 1e-2, 0.1), make),
                       doctest::Contains("already have a DistributedOptimizer"), pg::Error);
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("sync_gradients()"), pg::Error);
  backward();
  replicas.sync_gradients();
  CHECK_NOTHROW(opt.step());
  CHECK_THROWS_WITH_AS(opt.clip_grad_norm(1.0), doctest::Contains("sync_gradients()"), pg::Error);
  auto other = gpt_task().make(2);
  dist::DataParallel other_replicas(*other, zero);
  CHECK_THROWS_WITH_AS(
      dist::DistributedOptimizer(other_replicas, decay_groups(*model, 1e-2, 0.1), make),
      doctest::Contains("not a parameter of the replicated module"), pg::Error);
}
