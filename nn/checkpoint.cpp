#include "nn/checkpoint.h"

#include <cstring>

#include "core/rng.h"
#include "kernels/factory.h"
#include "nn/safetensors.h"

namespace pg {

void save_checkpoint(const std::string& path, const Module& model, const Optimizer* optimizer,
                     int64_t step, const std::map<std::string, std::string>& metadata) {
  StateDict all;
  for (auto& [name, t] : model.state_dict()) all["model." + name] = t;
  if (optimizer)
    for (auto& [name, t] : optimizer->state_dict()) all["optim." + name] = t;
  auto rng = default_generator().state();
  std::vector<int64_t> bits(rng.size());
  std::memcpy(bits.data(), rng.data(), sizeof(uint64_t) * rng.size());
  all["rng.state"] = from_vector(bits, {static_cast<int64_t>(bits.size())});
  auto meta = metadata;
  meta["format"] = "polygrad-checkpoint-1";
  meta["step"] = std::to_string(step);
  save_safetensors(path, all, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  Checkpoint c;
  c.metadata = file.metadata;
  PG_CHECK(c.metadata.count("format") && c.metadata.at("format") == "polygrad-checkpoint-1", path,
           "is not a polygrad checkpoint (metadata 'format' missing or unknown)");
  PG_CHECK(c.metadata.count("step"), path, "checkpoint has no 'step' in its metadata");
  try {
    c.step = std::stoll(c.metadata.at("step"));
  } catch (const std::exception&) {
    throw Error(path, "checkpoint step '" + c.metadata.at("step") + "' is not a number");
  }
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
    } else {
      throw Error(path, "unexpected tensor '" + name + "' in checkpoint");
    }
  }
  PG_CHECK(!c.model.empty(), path, "checkpoint holds no model tensors");
  return c;
}

void restore_checkpoint(const Checkpoint& ckpt, Module& model, Optimizer* optimizer) {
  model.load_state_dict(ckpt.model);
  if (optimizer) optimizer->load_state_dict(ckpt.optimizer);
  default_generator().set_state(ckpt.rng);
}

}  // namespace pg
