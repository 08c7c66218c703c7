// Fuzz target: the text corpus reader (`--data` for the GPT) and the vocabulary it builds.
// Every token id must be in range, the vocabulary must round-trip through its UTF-8 form (what
// checkpoints store, checked strictly when read back), and decoding the tokens must give back
// the training text.
#include "fuzz_input.h"
#include "nn/text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pg::fuzz::InputFile in(data, size);
  pg::TextCorpus c;
  try {
    c = pg::load_text_corpus(in.path(), 0.1);
  } catch (const pg::Error&) {
    return 0;  // too little text: the expected answer
  }
  // From here on nothing may throw: a corpus that loads must give a usable vocabulary.
  for (int32_t id : c.train) pg::fuzz::require(id >= 0 && id < c.vocab.size(), "train id");
  for (int32_t id : c.val) pg::fuzz::require(id >= 0 && id < c.vocab.size(), "val id");
  const pg::CharVocab back = pg::CharVocab::from_utf8(c.vocab.to_utf8(), "fuzz");
  pg::fuzz::require(back.to_utf8() == c.vocab.to_utf8(), "vocabulary does not round-trip");
  const std::u32string text = pg::utf8_decode(pg::read_text(in.path()));
  const std::u32string train = pg::utf8_decode(c.vocab.decode(c.train));
  pg::fuzz::require(train == text.substr(0, train.size()),
                    "decoded training tokens differ from the text");
  return 0;
}
