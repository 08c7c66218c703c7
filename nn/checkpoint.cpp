#include "nn/checkpoint.h"

#include <charconv>
#include <cstring>

#include "core/rng.h"
#include "kernels/factory.h"
#include "nn/safetensors.h"

namespace pg {

namespace {

constexpr const char* kFormat = "polygrad-checkpoint-1";

// The step as written by save_checkpoint: decimal digits only, no sign, no spaces, no
// trailing characters, and it must fit in int64_t.
int64_t parse_step(const std::string& path, const std::string& text) {
  auto fail = [&](const std::string& why) {
    const std::string shown = text.size() > 40 ? text.substr(0, 40) + "..." : text;
    return Error(path, "checkpoint metadata 'step' is '" + shown + "': " + why);
  };
  const char* digits = "0123456789";
  if (text.empty() || text.find_first_not_of(digits) != text.npos) {
    bool negative =
        text.size() > 1 && text[0] == '-' && text.find_first_not_of(digits, 1) == text.npos;
    throw fail(negative ? "negative, expected 0 or more"
                        : "expected a whole number of 0 or more (decimal digits only)");
  }
  int64_t step = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), step);
  if (ec == std::errc::result_out_of_range) throw fail("too large (more than 2^63 - 1)");
  if (ec != std::errc() || end != text.data() + text.size())
    throw fail("expected a whole number of 0 or more");
  return step;
}

}  // namespace

void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     int64_t step, const std::map<std::string, std::string>& metadata) {
  save_checkpoint(path, model, optimizer ? optimizer->state_dict() : StateDict{}, step, metadata);
}

void save_checkpoint(const std::string& path, const Module& model, const StateDict& optimizer_state,
                     int64_t step, const std::map<std::string, std::string>& metadata) {
  PG_CHECK(step >= 0, path, "cannot save a checkpoint at step ", step, " (expected 0 or more)");
  StateDict all;
  for (auto& [name, t] : model.state_dict()) all["model." + name] = t;
  for (auto& [name, t] : optimizer_state) all["optim." + name] = t;
  auto rng = default_generator().state();
  std::vector<int64_t> bits(rng.size());
  std::memcpy(bits.data(), rng.data(), sizeof(uint64_t) * rng.size());
  all["rng.state"] = from_vector(bits, {static_cast<int64_t>(bits.size())});
  auto meta = metadata;
  meta["format"] = kFormat;
  meta["step"] = std::to_string(step);
  save_safetensors(path, all, meta);
}

const std::string& Checkpoint::field(const std::string& key) const {
  auto it = metadata.find(key);
  PG_CHECK(it != metadata.end(), path.empty() ? "checkpoint" : path, "checkpoint metadata has no '",
           key,
           "' (polygrad's training programs write it; was the file written by another program?)");
  return it->second;
}

std::string Checkpoint::source(const std::string& key) const {
  return (path.empty() ? std::string("checkpoint") : path) + ": metadata '" + key + "'";
}

Checkpoint load_checkpoint(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  Checkpoint c;
  c.path = path;
  c.metadata = std::move(file.metadata);
  auto format = c.metadata.find("format");
  PG_CHECK(format != c.metadata.end(), path,
           "is not a polygrad checkpoint: its metadata has no 'format'");
  PG_CHECK(format->second == kFormat, path, "is not a polygrad checkpoint: metadata 'format' is '",
           format->second, "', expected '", kFormat, "'");
  c.step = parse_step(path, c.field("step"));
  bool has_rng = false;
  for (auto& [name, t] : file.tensors) {
    if (name.rfind("model.", 0) == 0)
      c.model[name.substr(6)] = t;
    else if (name.rfind("optim.", 0) == 0)
      c.optimizer[name.substr(6)] = t;
    else if (name == "rng.state") {
      PG_CHECK(t.dtype() == DType::I64 && t.numel() == 6, path,
               "tensor rng.state must be i64 of 6 elements, got ", dtype_name(t.dtype()), " ",
               shape_str(t.shape()));
      auto bits = t.to_vector<int64_t>();
      std::memcpy(c.rng.data(), bits.data(), sizeof(uint64_t) * 6);
      has_rng = true;
    } else {
      throw Error(path, "unexpected tensor '" + name + "' in checkpoint");
    }
  }
  PG_CHECK(!c.model.empty(), path, "checkpoint holds no model tensors");
  // An all-zero xoshiro state would draw zeros forever.
  PG_CHECK(has_rng, path, "checkpoint has no tensor 'rng.state' (save_checkpoint writes it)");
  PG_CHECK(c.rng[0] | c.rng[1] | c.rng[2] | c.rng[3], path,
           "tensor rng.state holds an all-zero generator state");
  return c;
}

void restore_checkpoint(const Checkpoint& ckpt, Module& model, RestorableOptimizer* optimizer) {
  const std::string who = ckpt.path.empty() ? "checkpoint" : ckpt.path;
  // Every part is checked before any is loaded: a damaged optimizer section must not leave the
  // model holding the checkpoint's weights and the optimizer its old state.
  try {
    model.check_state_dict(ckpt.model);
  } catch (const Error& e) {
    throw Error(who, std::string("model tensors 'model.*': ") + e.what());
  }
  if (optimizer) {
    try {
      optimizer->check_state_dict(ckpt.optimizer);
    } catch (const Error& e) {
      throw Error(who, std::string("optimizer state 'optim.*': ") + e.what());
    }
  }
  model.load_state_dict(ckpt.model);
  if (optimizer) optimizer->load_state_dict(ckpt.optimizer);
  default_generator().set_state(ckpt.rng);
}

}  // namespace pg
