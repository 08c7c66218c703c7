// The small GPT config the model, rope and training-task suites share.
#pragma once
#include <string>

#include "models/gpt.h"

namespace pg::test {

/// A 2-layer, 2-head GPT of width 16 over 11 tokens and a context of 8.
inline GptConfig tiny_gpt(const std::string& attn, double dropout = 0.0,
                          const std::string& pos = "learned") {
  GptConfig c;
  c.vocab_size = 11;
  c.context = 8;
  c.dim = 16;
  c.layers = 2;
  c.heads = 2;
  c.mlp_ratio = 4;
  c.dropout = dropout;
  c.attn = attn;
  c.pos = pos;
  return c;
}

}  // namespace pg::test
