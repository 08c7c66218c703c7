// The flags of the `polygrad` command: every number range-checked with a one-line message
// ("--steps: -1 is negative (expected 0 or more)"), every word and spec checked before a run.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "models/vit.h"
#include "tools/cli/train_programs.h"

namespace pg::tools {

/// A number in [lo, hi] (hi may be infinity), finite; `note` is added to the message.
CLI::Validator number_in(double lo, double hi, const std::string& note = "");
/// One of `words`.
CLI::Validator one_of(std::vector<std::string> words);
/// 0 or more; 1 or more; an attention-activation spec (the message lists the valid ones).
extern const CLI::Validator kNonNegative, kPositive, kAttnSpec;

/// Flags every training run takes (train vit, train gpt, compare).
void add_train_flags(CLI::App* app, TrainOptions& o);
/// ViT size flags, bounded by VitConfig's limits.
void add_vit_flags(CLI::App* app, VitConfig& c);
/// GPT size flags, bounded by GptConfig's limits.
void add_gpt_flags(CLI::App* app, GptConfig& c);
/// Recall task flags (--vocab, --context, --pairs) and the model's size flags.
void add_recall_flags(CLI::App* app, GptConfig& c, RecallTask& task);
/// The recall model's defaults: 2 blocks of width 64, 2 heads, rotary positions.
GptConfig default_recall_model();

}  // namespace pg::tools
