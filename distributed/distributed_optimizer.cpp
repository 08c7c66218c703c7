#include "distributed/distributed_optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "autograd/grad_mode.h"
#include "kernels/backend.h"
#include "kernels/factory.h"

namespace pg::dist {

namespace {

std::string state_key(size_t group, size_t index, const std::string& buffer) {
  return "state." + std::to_string(group) + "." + std::to_string(index) + "." + buffer;
}

int64_t chunks_of(int64_t numel) { return (numel + kSumOfSquaresChunk - 1) / kSumOfSquaresChunk; }

}  // namespace

DistributedOptimizer::DistributedOptimizer(DataParallel& replicas, std::vector<ParamGroup> groups,
                                           const Make& make)
    : replicas_(replicas), groups_(std::move(groups)) {
  PG_CHECK(!replicas_.optimizer_, "DistributedOptimizer",
           "these replicas already have a DistributedOptimizer (one per DataParallel)");
  whole_ = make(groups_);
  PG_CHECK(whole_ != nullptr, "DistributedOptimizer", "make returned no optimizer");
  if (!replicas_.sharded()) return;

  std::map<const TensorImpl*, size_t> bucket_order;
  for (size_t k = 0; k < replicas_.params_.size(); ++k)
    bucket_order[replicas_.params_[k].impl_ptr().get()] = k;
  std::vector<ParamGroup> pieces;
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    pieces.push_back({{}, groups_[g].lr, groups_[g].weight_decay});
    slots_.emplace_back();
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      auto it = bucket_order.find(groups_[g].params[i].impl_ptr().get());
      PG_CHECK(it != bucket_order.end(), "DistributedOptimizer", "group ", g, " parameter ", i,
               " is not a parameter of the replicated module");
      Slot slot{it->second, -1};
      const DataParallel::Piece& piece = replicas_.pieces_[slot.param];
      if (piece.count > 0) {
        slot.shard_index = static_cast<int64_t>(pieces[g].params.size());
        pieces[g].params.push_back(
            groups_[g].params[i].detach().view({-1}).narrow(0, piece.begin, piece.count));
      }
      slots_[g].push_back(slot);
    }
  }
  shard_ = make(std::move(pieces));
  PG_CHECK(shard_ != nullptr, "DistributedOptimizer", "make returned no optimizer");
  replicas_.optimizer_ = this;
}

DistributedOptimizer::~DistributedOptimizer() {
  if (replicas_.optimizer_ == this) replicas_.optimizer_ = nullptr;
}

void DistributedOptimizer::check_synced(const char* call) const {
  PG_CHECK(replicas_.pieces_fresh_, "DistributedOptimizer", call,
           " needs this step's gradients: call the replicas' sync_gradients() after backward()");
}

double DistributedOptimizer::clip_grad_norm(double max_norm) {
  if (!sharded()) return pg::clip_grad_norm(replicas_.module_params_, max_norm);
  PG_CHECK(max_norm >= 0, "clip_grad_norm", "max_norm must be >= 0, got ", max_norm);
  check_synced("clip_grad_norm()");
  NoGradGuard no_grad;
  // The chunk sums of pg::clip_grad_norm, each computed by the rank that holds its chunk (a
  // piece never splits a chunk), exchanged, then added in the same order on every rank.
  std::map<const TensorImpl*, size_t> bucket_order;
  for (size_t k = 0; k < replicas_.params_.size(); ++k)
    bucket_order[replicas_.params_[k].impl_ptr().get()] = k;
  std::vector<double> chunk_sums;
  Backend& cpu = backend_for(Device::cpu());
  Tensor sum = empty({}, {DType::F64});
  for (const Tensor& p : replicas_.module_params_) {
    const DataParallel::Piece& piece = replicas_.pieces_[bucket_order.at(p.impl_ptr().get())];
    const size_t first = chunk_sums.size();
    chunk_sums.resize(first + static_cast<size_t>(chunks_of(p.numel())), 0.0);
    if (!piece.grad.defined()) continue;
    for (int64_t at = 0; at < piece.count; at += kSumOfSquaresChunk) {
      const int64_t n = std::min(kSumOfSquaresChunk, piece.count - at);
      cpu.sum_of_squares({piece.grad.narrow(0, at, n)}, sum);
      chunk_sums[first + static_cast<size_t>((piece.begin + at) / kSumOfSquaresChunk)] = sum.item();
    }
  }
  all_reduce(chunk_sums, ReduceOp::Sum);  // one rank's value and zeros: exact
  double total = 0;
  for (double s : chunk_sums) total += s;
  const double norm = std::sqrt(total);
  if (norm > max_norm) {
    std::vector<Tensor> grads;
    for (const DataParallel::Piece& piece : replicas_.pieces_)
      if (piece.grad.defined()) grads.push_back(piece.grad);  // this rank's own buffers
    cpu.scale(grads, max_norm / (norm + 1e-6), grads);
  }
  return norm;
}

void DistributedOptimizer::step() {
  if (!sharded()) {
    whole_->step();
    return;
  }
  check_synced("step()");
  for (size_t g = 0; g < groups_.size(); ++g)
    for (const Slot& slot : slots_[g])
      if (slot.shard_index >= 0)
        shard_->param_groups()[g].params[static_cast<size_t>(slot.shard_index)].set_grad(
            replicas_.pieces_[slot.param].grad);
  shard_->step();
  shard_->zero_grad();
  replicas_.gather_parameters();
}

void DistributedOptimizer::zero_grad() {
  whole_->zero_grad();
  if (!sharded()) return;
  shard_->zero_grad();
  for (DataParallel::Piece& piece : replicas_.pieces_) piece.grad = Tensor();
  replicas_.pieces_fresh_ = false;
}

void DistributedOptimizer::set_lr(double lr) {
  whole_->set_lr(lr);
  if (sharded()) shard_->set_lr(lr);
}

int64_t DistributedOptimizer::steps() const {
  return sharded() ? shard_->steps() : whole_->steps();
}

StateDict DistributedOptimizer::state_dict() const {
  if (!sharded()) return whole_->state_dict();
  const StateDict mine = shard_->state_dict();
  const bool root = rank() == 0;
  StateDict out;
  if (root)
    for (const auto& [key, t] : mine)
      if (key.rfind("state.", 0) != 0) out[key] = t;  // the step and the groups' rates
  // Which parameters have state, and their step counts: from the ranks holding their pieces.
  const std::vector<std::string> names = shard_->state_names();
  std::vector<double> updated, counts;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (const Slot& slot : slots_[g]) {
      const std::string key =
          slot.shard_index < 0 ? "" : state_key(g, static_cast<size_t>(slot.shard_index), "step");
      auto it = key.empty() ? mine.end() : mine.find(key);
      const bool has =
          slot.shard_index >= 0 && !names.empty() &&
          mine.count(state_key(g, static_cast<size_t>(slot.shard_index), names.front()));
      updated.push_back(has ? 1 : 0);
      counts.push_back(it != mine.end() ? it->second.item() : 0);
    }
  all_reduce(updated, ReduceOp::Max);
  all_reduce(counts, ReduceOp::Max);
  size_t k = 0;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < slots_[g].size(); ++i, ++k) {
      if (updated[k] == 0) continue;
      const Slot& slot = slots_[g][i];
      const Tensor& p = groups_[g].params[i];
      const std::vector<int64_t> pieces = replicas_.piece_counts(slot.param);
      for (const std::string& name : names) {
        if (name == "step") {
          if (root) out[state_key(g, i, name)] = scalar_tensor(counts[k], {DType::F64});
          continue;
        }
        Tensor whole = empty({p.numel()}, {p.dtype()});
        if (slot.shard_index >= 0)
          whole.narrow(0, replicas_.pieces_[slot.param].begin, pieces[static_cast<size_t>(rank())])
              .copy_(mine.at(state_key(g, static_cast<size_t>(slot.shard_index), name)));
        all_gather(whole, pieces);
        if (root) out[state_key(g, i, name)] = whole.view(p.shape());
      }
    }
  return out;
}

void DistributedOptimizer::check_state_dict(const StateDict& state) const {
  whole_->check_state_dict(state);
}

void DistributedOptimizer::load_state_dict(const StateDict& state) {
  if (!sharded()) {
    whole_->load_state_dict(state);
    return;
  }
  whole_->check_state_dict(state);  // the whole format: the pieces cut below are then valid
  StateDict mine;
  for (const auto& [key, t] : state)
    if (key.rfind("state.", 0) != 0) mine[key] = t;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < slots_[g].size(); ++i) {
      const Slot& slot = slots_[g][i];
      if (slot.shard_index < 0) continue;
      const DataParallel::Piece& piece = replicas_.pieces_[slot.param];
      for (const std::string& name : shard_->state_names()) {
        auto it = state.find(state_key(g, i, name));
        if (it == state.end()) continue;  // never updated (checked: all of its buffers or none)
        mine[state_key(g, static_cast<size_t>(slot.shard_index), name)] =
            name == "step" ? it->second
                           : it->second.contiguous().view({-1}).narrow(0, piece.begin, piece.count);
      }
    }
  shard_->load_state_dict(mine);
  for (size_t g = 0; g < groups_.size(); ++g)
    whole_->param_groups()[g].lr = shard_->param_groups()[g].lr;
}

int64_t DistributedOptimizer::state_bytes() const {
  int64_t bytes = 0;
  for (const auto& [key, t] : (sharded() ? shard_ : whole_)->state_dict())
    if (key.rfind("state.", 0) == 0)
      bytes += t.numel() * static_cast<int64_t>(dtype_size(t.dtype()));
  return bytes;
}

}  // namespace pg::dist
