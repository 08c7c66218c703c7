// Trains polygrad's default GPT from given weights on given batches with the training program's
// recipe and prints each step's loss and gradient norm; tools/reference/gpt_lockstep.py feeds it
// PyTorch's initial weights and batches and compares the two trajectories step by step.
// Usage: lockstep_gpt INIT.safetensors BATCHES.safetensors TOTAL_STEPS [LR]
//   INIT: the model's tensors by polygrad name; BATCHES: "x" and "y", i64 [K, B, T].
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/gpt.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "polygrad.h"

using namespace pg;

namespace {

// Tensor `name` of a file, or a pg::Error naming both.
const Tensor& need(const SafetensorsFile& f, const char* path, const std::string& name) {
  auto it = f.tensors.find(name);
  PG_CHECK(it != f.tensors.end(), path, "has no tensor '", name, "'");
  return it->second;
}

// A whole command-line number (no trailing text), or a pg::Error naming the argument.
double number_arg(const char* text, const char* what) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  PG_CHECK(end != text && *end == '\0' && std::isfinite(v) && v >= 0, what, "'", text,
           "' is not a number of 0 or more");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: lockstep_gpt INIT.safetensors BATCHES.safetensors TOTAL [LR]\n");
    return 2;
  }
  try {
    SafetensorsFile init = load_safetensors(argv[1]);
    SafetensorsFile batches = load_safetensors(argv[2]);
    const auto total = static_cast<int64_t>(number_arg(argv[3], "TOTAL"));
    const double lr = argc > 4 ? number_arg(argv[4], "LR") : 2e-3;
    set_num_threads(1);
    GptConfig cfg;  // the defaults of `polygrad train gpt`
    cfg.vocab_size = need(init, argv[1], "tok.weight").size(0);
    Gpt model(cfg);
    model.load_state_dict(init.tensors);
    AdamW optimizer(decay_groups(model, lr, 0.05));
    WarmupCosineLR schedule(lr, total / 20, total, lr * 0.1);
    const Tensor& xs = need(batches, argv[2], "x");
    const Tensor& ys = need(batches, argv[2], "y");
    for (int64_t step = 0; step < xs.size(0); ++step) {
      optimizer.set_lr(schedule.lr_at(step));
      Tensor loss = cross_entropy(model(xs.select(0, step)), ys.select(0, step));
      optimizer.zero_grad();
      loss.backward();
      double norm = clip_grad_norm(model.parameters(), 1.0);
      optimizer.step();
      std::printf("%lld %.9f %.6f\n", static_cast<long long>(step), loss.item(), norm);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lockstep_gpt: %s\n", e.what());
    return 1;
  }
  return 0;
}
