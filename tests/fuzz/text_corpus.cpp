// Fuzz target: the text corpus reader (`--data` for the GPT) and the vocabulary it builds.
// Every token id must be in range, the vocabulary must round-trip through its UTF-8 form (what
// checkpoints store), and decoding the tokens must give back the training text.
#include "fuzz_input.h"
#include "nn/text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pg::fuzz::InputFile in(data, size);
  pg::fuzz::expect_clean([&] {
    pg::TextCorpus c = pg::load_text_corpus(in.path(), 0.1);
    for (int32_t id : c.train) pg::fuzz::require(id >= 0 && id < c.vocab.size(), "train id");
    for (int32_t id : c.val) pg::fuzz::require(id >= 0 && id < c.vocab.size(), "val id");
    pg::CharVocab back = pg::CharVocab::from_utf8(c.vocab.to_utf8());
    pg::fuzz::require(back.to_utf8() == c.vocab.to_utf8(), "vocabulary does not round-trip");
    const std::u32string text = pg::utf8_decode(pg::read_text(in.path()));
    const std::string train = c.vocab.decode(c.train);
    pg::fuzz::require(pg::utf8_decode(train) == text.substr(0, pg::utf8_decode(train).size()),
                      "decoded training tokens differ from the text");
  });
  return 0;
}
