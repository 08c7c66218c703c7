// Reading back what polygrad's training programs write into a checkpoint (model kind, config,
// vocabulary, optimizer step), each field checked, every error naming the file and the field.
#pragma once
#include <string>

#include "models/gpt.h"
#include "models/vit.h"
#include "nn/checkpoint.h"
#include "nn/mnist.h"
#include "nn/recall.h"
#include "nn/text.h"

namespace pg::tools {

/// Metadata 'model': "gpt", "vit" or "recall"; anything else is a pg::Error naming the file.
std::string model_kind(const Checkpoint& ck);
/// The checked config of a GPT checkpoint; also refuses a config that describes more
/// parameters than the file holds values, before anything is allocated for it.
GptConfig gpt_config(const Checkpoint& ck);
/// The checked model config and task of a recall checkpoint (metadata 'config', 'task'); the
/// model's vocabulary and context must be the task's.
std::pair<GptConfig, RecallTask> recall_config(const Checkpoint& ck);
/// The checked config of a ViT checkpoint (see gpt_config).
VitConfig vit_config(const Checkpoint& ck);
/// Refuses a ViT checkpoint whose images (config fields 'image_size', 'channels') are not those
/// of `images` ([N, H, W] grey images).
void check_image_size(const Checkpoint& ck, const VitConfig& cfg, const ImageSet& images);
/// Metadata 'vocab' of a GPT checkpoint: valid UTF-8, distinct characters, `cfg.vocab_size`
/// of them.
CharVocab gpt_vocab(const Checkpoint& ck, const GptConfig& cfg);
/// Metadata 'schedule_steps': the length of the learning-rate schedule the run started with, a
/// whole number > 0 (less than the step where a run went on past its end); `absent` for
/// checkpoints written before it was kept.
int64_t schedule_steps(const Checkpoint& ck, int64_t absent);
/// restore_checkpoint for a resumed run: the optimizer's own step counter must also equal the
/// checkpoint's step (save_checkpoint writes the two together).
void restore_run(const Checkpoint& ck, Module& model, RestorableOptimizer& optimizer);

}  // namespace pg::tools
