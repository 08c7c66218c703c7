#include "distributed/data_parallel.h"

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
  if (options.overlap) {
    for (size_t i = 0; i < params_.size(); ++i)
      hooks_.push_back(add_grad_ready_hook(params_[i], [this, i](const Tensor&) { on_ready(i); }));
    thread_ = std::thread([this] { communicate(); });
  }
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
  all_reduce({b.flat}, ReduceOp::Sum);
  // The mean: values only, the presence counts stay counts.
  NoGradGuard no_grad;
  std::vector<Tensor> values{b.flat.narrow(0, 0, b.values)};
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
