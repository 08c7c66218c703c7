#include "tools/cli/checkpoint_fields.h"

#include <charconv>

namespace pg::tools {

namespace {

// The kind a program needs, or a pg::Error saying what the file holds instead.
void expect_kind(const Checkpoint& ck, const std::string& kind) {
  const std::string found = model_kind(ck);
  auto name = [](const std::string& k) {
    return k == "gpt" ? "GPT" : k == "vit" ? "ViT" : "recall";
  };
  PG_CHECK(found == kind, ck.path, "is a ", name(found), " checkpoint (metadata 'model' is '",
           found, "'), expected a ", name(kind), " checkpoint");
}

// The model tensors hold every parameter at least once (a tied head twice), so a config that
// needs more values than that cannot be the file's: refused before the model is allocated.
void expect_values(const Checkpoint& ck, int64_t parameters) {
  int64_t held = 0;
  for (const auto& [name, t] : ck.model) held += t.numel();
  PG_CHECK(parameters <= held, ck.source("config"), "config describes a model of ", parameters,
           " parameters, but the file holds only ", held, " model values");
}

}  // namespace

std::string model_kind(const Checkpoint& ck) {
  const std::string& kind = ck.field("model");
  PG_CHECK(kind == "gpt" || kind == "vit" || kind == "recall", ck.path,
           "checkpoint metadata 'model' is '", kind.size() > 40 ? kind.substr(0, 40) + "..." : kind,
           "', expected 'gpt', 'vit' or 'recall'");
  return kind;
}

GptConfig gpt_config(const Checkpoint& ck) {
  expect_kind(ck, "gpt");
  GptConfig cfg = GptConfig::from_json(ck.field("config"), ck.source("config"));
  expect_values(ck, cfg.parameter_count());
  return cfg;
}

std::pair<GptConfig, RecallTask> recall_config(const Checkpoint& ck) {
  expect_kind(ck, "recall");
  GptConfig cfg = GptConfig::from_json(ck.field("config"), ck.source("config"));
  RecallTask task = RecallTask::from_json(ck.field("task"), ck.source("task"));
  PG_CHECK(cfg.vocab_size == task.vocab && cfg.context == task.context, ck.source("config"),
           "the model's vocab_size ", cfg.vocab_size, " and context ", cfg.context,
           " are not the task's vocab ", task.vocab, " and context ", task.context);
  expect_values(ck, cfg.parameter_count());
  return {cfg, task};
}

VitConfig vit_config(const Checkpoint& ck) {
  expect_kind(ck, "vit");
  VitConfig cfg = VitConfig::from_json(ck.field("config"), ck.source("config"));
  expect_values(ck, cfg.parameter_count());
  return cfg;
}

void check_image_size(const Checkpoint& ck, const VitConfig& cfg, const ImageSet& images) {
  const int64_t h = images.images.size(1), w = images.images.size(2);
  PG_CHECK(cfg.channels == 1 && cfg.image_size == h && cfg.image_size == w, ck.source("config"),
           "the model takes ", cfg.channels, "x", cfg.image_size, "x", cfg.image_size,
           " images (config fields 'channels', 'image_size'), but the data's images are 1x", h, "x",
           w);
}

CharVocab gpt_vocab(const Checkpoint& ck, const GptConfig& cfg) {
  CharVocab vocab = CharVocab::from_utf8(ck.field("vocab"), ck.source("vocab"));
  PG_CHECK(vocab.size() == cfg.vocab_size, ck.source("vocab"), "vocabulary holds ", vocab.size(),
           " characters, but config field 'vocab_size' is ", cfg.vocab_size);
  return vocab;
}

int64_t schedule_steps(const Checkpoint& ck, int64_t absent) {
  if (!ck.metadata.count("schedule_steps")) return absent;
  const std::string& text = ck.field("schedule_steps");
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  // A run may have been continued past its schedule's end: n < step is fine.
  PG_CHECK(ec == std::errc() && end == text.data() + text.size() && n > 0,
           ck.source("schedule_steps"), "expected a whole number of steps > 0, got '", text, "'");
  return n;
}

void restore_run(const Checkpoint& ck, Module& model, RestorableOptimizer& optimizer) {
  restore_checkpoint(ck, model, &optimizer);
  PG_CHECK(optimizer.steps() == ck.step, ck.path, "optimizer state 'optim.step' is ",
           optimizer.steps(), ", but metadata 'step' is ", ck.step,
           " (save_checkpoint writes the two together)");
}

}  // namespace pg::tools
