// `polygrad compare`: the paper's comparison at small scale, one run per activation.
#pragma once
#include <string>
#include <vector>

#include "tools/cli/train_programs.h"

namespace pg::tools {

/// What to compare and with which budget.
struct CompareOptions {
  std::string model = "vit";
  std::vector<std::string> activations = {"softmax", "poly:1", "poly:2",
                                          "poly:3",  "relu",   "sigmoid"};
  int64_t seeds = 1;  ///< runs per activation, with seeds train.seed, train.seed + 1, ...
  TrainOptions train;
  VitConfig vit;
  GptConfig gpt;
  RecallTask recall;  ///< --model recall: the task (cmp.gpt is then the recall model)
};

/// Trains the model once per activation and seed (same data order per seed, same budget) into
/// OUT/<activation>/seed-<s>, continuing runs that exist there, then writes OUT/report.md
/// (mean ± std over seeds, per-seed values, paired differences to the first activation; for
/// the GPT, attention per row position) and the plots OUT/loss.png, OUT/afrob.png (means with
/// a ± std band) and OUT/rows.png, OUT/row_mass.png. OUT/compare.json records the flags: a
/// comparison continued with other ones is a pg::Error.
int run_compare(const CompareOptions& options);

/// A run's results read back from DIR/metrics.jsonl (so runs made earlier, or by `polygrad train`
/// with the same flags, count the same as runs made now): the last and best evaluation, the
/// steps, training milliseconds per step (evaluations and saves excluded; the segments of a
/// resumed run added up), the evaluations' seconds and the last ||A||_F/sqrt(N) per layer.
RunSummary summarize_run(const std::string& dir, bool accuracy);

}  // namespace pg::tools
