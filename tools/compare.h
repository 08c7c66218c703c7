// `polygrad compare`: the paper's comparison at small scale, one run per activation.
#pragma once
#include <string>
#include <vector>

#include "tools/train_programs.h"

namespace pg::tools {

/// What to compare and with which budget.
struct CompareOptions {
  std::string model = "vit";
  std::vector<std::string> activations = {"softmax", "poly:1", "poly:2",
                                          "poly:3",  "relu",   "sigmoid"};
  TrainOptions train;
  VitConfig vit;
  GptConfig gpt;
};

/// Trains the model once per activation (same seed, data order and budget), then writes
/// OUT/report.md and the plots OUT/loss.png and OUT/afrob.png.
int run_compare(const CompareOptions& options);

}  // namespace pg::tools
