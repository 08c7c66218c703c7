// Fuzz target: a checkpoint read the way `polygrad train --resume` reads it (eval and sample
// read a subset): the file, its metadata, the config (refused before allocation when it
// describes more parameters than the file holds), the vocabulary, then a model built from the
// config with the weights, optimizer state and generator restored into it.
#include "nn/checkpoint.h"

#include "fuzz_input.h"
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/optim.h"
#include "tools/cli/checkpoint_fields.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pg::fuzz::InputFile in(data, size);
  pg::fuzz::expect_clean([&] {
    const pg::Checkpoint ck = pg::load_checkpoint(in.path());
    if (pg::tools::model_kind(ck) == "gpt") {
      const pg::GptConfig cfg = pg::tools::gpt_config(ck);
      const pg::CharVocab vocab = pg::tools::gpt_vocab(ck, cfg);
      pg::fuzz::require(vocab.size() == cfg.vocab_size, "vocabulary size differs from the config");
      pg::Gpt model(cfg);
      pg::AdamW optimizer(pg::decay_groups(model, 1e-3, 0.05));
      pg::tools::restore_run(ck, model, optimizer);
    } else {
      const pg::VitConfig cfg = pg::tools::vit_config(ck);
      pg::Vit model(cfg);
      pg::AdamW optimizer(pg::decay_groups(model, 1e-3, 0.05, {"cls_token", "pos_embed"}));
      pg::tools::restore_run(ck, model, optimizer);
    }
  });
  return 0;
}
