// The training programs behind `polygrad train gpt|vit` and `polygrad compare`.
#pragma once
#include "models/gpt.h"
#include "models/vit.h"
#include "tools/train_options.h"

namespace pg::tools {

/// Trains (or resumes) a ViT; prints progress and results, writes OUT/.
RunSummary train_vit(const TrainOptions& options, VitConfig config);
/// Trains (or resumes) a GPT on a text corpus; prints progress, a sample, writes OUT/.
RunSummary train_gpt(const TrainOptions& options, GptConfig config);

}  // namespace pg::tools
