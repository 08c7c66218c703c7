#include "distributed/data_parallel.h"

#include <algorithm>
#include <chrono>

#include "autograd/grad_mode.h"
#include "distributed/dist.h"
#include "kernels/backend.h"
#include "kernels/factory.h"

namespace pg::dist {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string describe(const Module& module) {
  std::string text;
  auto add = [&](const char* kind, const NamedTensors& named) {
    for (const auto& [name, t] : named)
      text += detail::concat(kind, " ", name, " ", shape_str(t.shape()), " ", dtype_name(t.dtype()),
                             " ", t.device().is_cpu() ? "cpu" : "cuda", "\n");
  };
  add("parameter", module.named_parameters());
  add("buffer", module.named_buffers());
  return text;
}

}  // namespace

DataParallel::DataParallel(Module& module, DataParallelOptions options) : options_(options) {
  PG_CHECK(options.bucket_bytes > 0 && options.first_bucket_bytes > 0, "DataParallel",
           "bucket sizes must be positive, got ", options.bucket_bytes, " and ",
           options.first_bucket_bytes);
  PG_CHECK(options.zero == 0 || options.zero == 1, "DataParallel", "ZeRO stage ", options.zero,
           " is not available; expected 0 (plain) or 1 (optimizer state sharded)");
  module_params_ = module.parameters();
  if (world_size() == 1) return;
  check_same_on_all_ranks("the model", describe(module));
  channel_.emplace();
  {
    // Replicas start from rank 0's values, whatever each rank's seed drew.
    NoGradGuard no_grad;
    std::vector<Tensor> state;
    for (const auto& [name, t] : module.named_parameters()) state.push_back(t);
    for (const auto& [name, t] : module.named_buffers()) state.push_back(t);
    broadcast(state, 0);
  }

  // Buckets: parameters in reverse registration order (roughly the order backward finishes
  // them), one dtype and device per bucket, fixed here so every rank sends the same messages.
  const NamedTensors named = module.named_parameters();
  for (auto it = named.rbegin(); it != named.rend(); ++it) {
    PG_CHECK(it->second.dtype() == DType::F32 || it->second.dtype() == DType::F64, "DataParallel",
             "parameter ", it->first, " is ", dtype_name(it->second.dtype()),
             "; expected f32 or f64");
    // The CPU kernels' order of summation is what makes ZeRO-1's clipping exact (see
    // DistributedOptimizer); the CUDA path has never run on a GPU.
    PG_CHECK(!sharded() || it->second.device().is_cpu(), "DataParallel",
             "ZeRO-1 shards CPU parameters only; ", it->first, " is on ",
             it->second.device().str());
    params_.push_back(it->second);
  }
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const int64_t size = p.numel() * static_cast<int64_t>(dtype_size(p.dtype()));
    bool fresh = buckets_.empty();
    if (!fresh) {
      const Tensor& head = params_[buckets_.back().params.front()];
      const int64_t cap = buckets_.size() == 1 ? options.first_bucket_bytes : options.bucket_bytes;
      fresh = bytes + size > cap || head.dtype() != p.dtype() || head.device() != p.device();
    }
    if (fresh) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    where_.emplace_back(buckets_.size() - 1, b.params.size());
    b.params.push_back(i);
    b.offsets.push_back(b.values);
    b.values += p.numel();
    bytes += size;
  }
  for (Bucket& b : buckets_) {
    const Tensor& first = params_[b.params.front()];
    b.flat =
        zeros({b.values + static_cast<int64_t>(b.params.size())}, {first.dtype(), first.device()});
    b.pending = static_cast<int>(b.params.size());
  }
  filled_.assign(params_.size(), false);
  if (sharded()) make_shards();
  if (options.overlap) {
    for (size_t i = 0; i < params_.size(); ++i)
      hooks_.push_back(add_grad_ready_hook(params_[i], [this, i](const Tensor&) { on_ready(i); }));
    thread_ = std::thread([this] { communicate(); });
  }
}

std::vector<int64_t> DataParallel::Bucket::counts() const {
  std::vector<int64_t> out;
  for (size_t r = 0; r + 1 < bounds.size(); ++r) out.push_back(bounds[r + 1] - bounds[r]);
  return out;
}

void DataParallel::make_shards() {
  // Cuts fall on a parameter's start or on a multiple of kSumOfSquaresChunk into it: every
  // chunk of the gradient-norm sum lies in one rank's piece, so the ranks' chunk sums added in
  // order give the norm of one process bit for bit.
  const int world = world_size(), me = rank();
  pieces_.assign(params_.size(), {});
  for (Bucket& b : buckets_) {
    std::vector<int64_t> cuts;
    for (size_t slot = 0; slot < b.params.size(); ++slot)
      for (int64_t k = 0; k < params_[b.params[slot]].numel(); k += kSumOfSquaresChunk)
        cuts.push_back(b.offsets[slot] + k);
    cuts.push_back(b.values);
    b.bounds = {0};
    for (int r = 1; r < world; ++r) {
      // The cut nearest an even split, never before the previous one.
      const int64_t target = b.values * r / world;
      auto it = std::lower_bound(cuts.begin(), cuts.end(), target);
      int64_t cut = *it;
      if (it != cuts.begin() && target - *std::prev(it) < cut - target) cut = *std::prev(it);
      b.bounds.push_back(std::max(cut, b.bounds.back()));
    }
    b.bounds.push_back(b.values);
    const int64_t first = b.bounds[static_cast<size_t>(me)],
                  last = b.bounds[static_cast<size_t>(me) + 1];
    b.shard = zeros({last - first}, {b.flat.dtype(), b.flat.device()});
    for (size_t slot = 0; slot < b.params.size(); ++slot) {
      const int64_t begin = std::max(b.offsets[slot], first),
                    end = std::min(b.offsets[slot] + params_[b.params[slot]].numel(), last);
      if (end > begin) pieces_[b.params[slot]] = {begin - b.offsets[slot], end - begin, Tensor()};
    }
  }
}

std::vector<int64_t> DataParallel::piece_counts(size_t param) const {
  const auto [b, slot] = where_[param];
  const Bucket& bucket = buckets_[b];
  const int64_t begin = bucket.offsets[slot], end = begin + params_[param].numel();
  std::vector<int64_t> out;
  for (size_t r = 0; r + 1 < bucket.bounds.size(); ++r)
    out.push_back(std::max<int64_t>(
        0, std::min(end, bucket.bounds[r + 1]) - std::max(begin, bucket.bounds[r])));
  return out;
}

void DataParallel::gather_parameters() {
  NoGradGuard no_grad;
  ChannelScope channel(*channel_);
  for (size_t index = 0; index < buckets_.size(); ++index) {
    Bucket& b = buckets_[index];
    // The gradients' buffer is free until the next backward: it carries the parameters.
    Tensor values = b.flat.narrow(0, 0, b.values);
    for (size_t slot = 0; slot < b.params.size(); ++slot) {
      const Piece& piece = pieces_[b.params[slot]];
      if (piece.count == 0) continue;
      values.narrow(0, b.offsets[slot] + piece.begin, piece.count)
          .copy_(params_[b.params[slot]].detach().view({-1}).narrow(0, piece.begin, piece.count));
    }
    CollectiveLabel label(detail::concat("parameter bucket ", index + 1, " of ", buckets_.size()));
    all_gather(values, b.counts());
    for (size_t slot = 0; slot < b.params.size(); ++slot) {
      Tensor p = params_[b.params[slot]].detach();
      p.copy_(values.narrow(0, b.offsets[slot], p.numel()).view(p.shape()));
    }
  }
  pieces_fresh_ = false;
}

DataParallel::~DataParallel() {
  hooks_.clear();
  {
    std::lock_guard lock(mutex_);
    shutdown_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DataParallel::fill(size_t param) {
  const auto [b, slot] = where_[param];
  Bucket& bucket = buckets_[b];
  const Tensor& p = params_[param];
  Tensor values = bucket.flat.narrow(0, bucket.offsets[slot], p.numel()).view(p.shape());
  Tensor count = bucket.flat.narrow(0, bucket.values + static_cast<int64_t>(slot), 1);
  Tensor g = p.grad();
  if (g.defined()) {
    values.copy_(g);
    count.fill_(1);
  } else {
    values.fill_(0);  // sent all the same: every rank sends the same messages
    count.fill_(0);
  }
}

void DataParallel::on_ready(size_t param) {
  if (!enabled_) return;
  {
    std::lock_guard lock(mutex_);
    PG_CHECK(!filled_[param], "DataParallel",
             "a second backward() reached the parameters before sync_gradients(); wrap the "
             "backward passes that only accumulate in no_sync()");
    filled_[param] = true;
  }
  fill(param);  // only this thread writes this slot in this round
  const size_t b = where_[param].first;
  bool ready;
  {
    std::lock_guard lock(mutex_);
    ready = --buckets_[b].pending == 0;
  }
  if (ready) cv_.notify_all();
}

void DataParallel::reduce(Bucket& b, size_t index) {
  const auto t0 = Clock::now();
  ChannelScope channel(*channel_);
  CollectiveLabel label(detail::concat("gradient bucket ", index + 1, " of ", buckets_.size()));
  if (options_.before_all_reduce) options_.before_all_reduce(static_cast<int64_t>(index));
  std::vector<Tensor> values{b.flat.narrow(0, 0, b.values)};
  if (sharded()) {
    reduce_scatter(values[0], b.shard, b.counts());
    all_reduce({b.flat.narrow(0, b.values, static_cast<int64_t>(b.params.size()))});
    values = {b.shard};
  } else {
    all_reduce({b.flat}, ReduceOp::Sum);
  }
  // The mean: values only, the presence counts stay counts.
  NoGradGuard no_grad;
  backend_for(b.flat.device()).scale(values, 1.0 / world_size(), values);
  std::lock_guard lock(mutex_);
  stats_.comm_seconds += seconds_since(t0);
}

void DataParallel::communicate() {
  while (true) {
    size_t index;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] {
        return shutdown_ || (next_ < buckets_.size() && buckets_[next_].pending == 0);
      });
      if (shutdown_) return;
      index = next_;
    }
    try {
      reduce(buckets_[index], index);
    } catch (...) {
      // Stop here: the next bucket could pair with the one this rank skipped on another.
      {
        std::lock_guard lock(mutex_);
        failure_ = std::current_exception();
        broken_ = true;
      }
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      ++next_;
    }
    cv_.notify_all();
  }
}

void DataParallel::sync_gradients() {
  PG_CHECK(enabled_, "DataParallel", "sync_gradients() inside no_sync()");
  if (world_size() == 1) return;
  {
    std::lock_guard lock(mutex_);
    PG_CHECK(!broken_ || failure_, "DataParallel",
             "an earlier gradient all-reduce failed, so the replicas may differ and the ranks' "
             "messages no longer pair up; end the job (and --resume from the last checkpoint)");
  }
  const auto t0 = Clock::now();
  if (!options_.overlap) {
    for (size_t i = 0; i < params_.size(); ++i) fill(i);
    try {
      for (size_t b = 0; b < buckets_.size(); ++b) reduce(buckets_[b], b);
    } catch (...) {
      std::lock_guard lock(mutex_);
      broken_ = true;
      throw;
    }
  } else {
    // Parameters this backward did not reach send what they hold (an accumulated gradient,
    // or zeros), so every bucket goes out on every rank.
    for (size_t i = 0; i < params_.size(); ++i) {
      {
        std::lock_guard lock(mutex_);
        if (filled_[i]) continue;
        filled_[i] = true;
      }
      fill(i);
      {
        std::lock_guard lock(mutex_);
        --buckets_[where_[i].first].pending;
      }
      cv_.notify_all();
    }
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return next_ == buckets_.size() || broken_; });
  }
  std::exception_ptr failure;
  {
    std::lock_guard lock(mutex_);
    failure = failure_;
    failure_ = nullptr;  // rethrown once; later calls refuse (broken_)
    for (Bucket& b : buckets_) b.pending = static_cast<int>(b.params.size());
    filled_.assign(params_.size(), false);
    next_ = 0;
  }
  if (failure) std::rethrow_exception(failure);
  if (sharded()) {
    // Checked once the round is complete, so that the replicas stay usable.
    PG_CHECK(optimizer_, "DataParallel",
             "ZeRO-1 leaves each rank only its shard of the gradients: build a "
             "dist::DistributedOptimizer on these replicas before the first sync_gradients()");
    for (const Bucket& b : buckets_) {
      std::vector<double> counts =
          b.flat.narrow(0, b.values, static_cast<int64_t>(b.params.size())).to_vector<double>();
      const int64_t first = b.bounds[static_cast<size_t>(rank())];
      for (size_t slot = 0; slot < b.params.size(); ++slot) {
        Piece& piece = pieces_[b.params[slot]];
        piece.grad = piece.count > 0 && counts[slot] > 0
                         ? b.shard.narrow(0, b.offsets[slot] + piece.begin - first, piece.count)
                         : Tensor();
        Tensor p = params_[b.params[slot]];
        p.set_grad(Tensor());  // the rest of the mean is on other ranks
      }
    }
    pieces_fresh_ = true;
    stats_.exposed_seconds += seconds_since(t0);
    ++stats_.syncs;
    return;
  }
  for (const Bucket& b : buckets_) {
    std::vector<double> counts =
        b.flat.narrow(0, b.values, static_cast<int64_t>(b.params.size())).to_vector<double>();
    for (size_t slot = 0; slot < b.params.size(); ++slot) {
      Tensor p = params_[b.params[slot]];
      p.set_grad(counts[slot] > 0 ? b.flat.narrow(0, b.offsets[slot], p.numel()).view(p.shape())
                                  : Tensor());
    }
  }
  stats_.exposed_seconds += seconds_since(t0);
  ++stats_.syncs;
}

}  // namespace pg::dist
