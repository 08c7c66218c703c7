// Character-level text corpora: UTF-8 files or folders, a vocabulary, a train/val split.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace pg {

/// Where Debian's fortunes package puts its text files.
inline constexpr const char* kFortunesDir = "/usr/share/games/fortunes";
/// The name (as a data path) of the long-range corpus: the Python standard library sources of
/// this machine's python3 (Debian's libpython3.N-stdlib), tests excluded.
inline constexpr const char* kPythonStdlib = "python-stdlib";

/// Maps Unicode code points to token ids and back.
class CharVocab {
 public:
  CharVocab() = default;
  /// Vocabulary of the distinct code points of `text`, sorted.
  static CharVocab from_text(const std::u32string& text);
  /// Rebuilds a vocabulary saved with to_utf8(); throws pg::Error naming `who` unless `chars`
  /// is valid UTF-8 and holds at least one character, none twice.
  static CharVocab from_utf8(const std::string& chars, const std::string& who = "vocabulary");
  /// The characters in id order, as UTF-8 (what checkpoints store).
  std::string to_utf8() const;
  int64_t size() const { return static_cast<int64_t>(chars_.size()); }
  /// True when `c` has an id.
  bool contains(char32_t c) const { return index_.count(c) != 0; }
  /// Token ids of `text`; throws pg::Error on a character outside the vocabulary.
  std::vector<int32_t> encode(const std::u32string& text) const;
  /// UTF-8 text of token ids.
  std::string decode(const std::vector<int32_t>& ids) const;

 private:
  std::u32string chars_;
  std::unordered_map<char32_t, int32_t> index_;
};

/// A tokenised corpus split into training and validation tokens.
struct TextCorpus {
  CharVocab vocab;
  std::vector<int32_t> train, val;
};

/// UTF-8 to code points; each byte where utf8_error_offset would stop becomes U+FFFD.
std::u32string utf8_decode(const std::string& bytes);
/// Offset of the first byte where `bytes` stops being valid UTF-8 (a bad lead or continuation
/// byte, a cut sequence, an overlong form, a surrogate or a code point above U+10FFFF), or
/// std::string::npos when it is valid throughout.
size_t utf8_error_offset(const std::string& bytes);
/// Code points to UTF-8.
std::string utf8_encode(const std::u32string& text);
/// Reads a file, or every regular text file of a folder (sorted by name; skips fortune's
/// .dat index files and symbolic links), and concatenates them.
std::string read_text(const std::string& path);
/// Reads `path`, builds the vocabulary from the training part and splits off the last
/// `val_fraction` of the text for validation.
TextCorpus load_text_corpus(const std::string& path = kFortunesDir, double val_fraction = 0.1);

/// Regular files under `dir` (recursively, symbolic links not followed) whose name matches the
/// shell pattern `glob` (fnmatch: '*', '?', '[...]'), in sorted path order, leaving out every
/// folder whose name is in `skip_folders`. A pg::Error when `dir` is not a folder or nothing
/// matches.
std::vector<std::string> list_files(const std::string& dir, const std::string& glob,
                                    const std::vector<std::string>& skip_folders = {});
/// A corpus split by file, not by offset: of `files` in their order, every `val_every`-th (the
/// val_every-th, 2*val_every-th, ...) is validation text, the rest training text, each part the
/// concatenation of its files; the vocabulary comes from the training text (characters only
/// in validation files are dropped).
TextCorpus load_file_corpus(const std::vector<std::string>& files, int64_t val_every = 10);
/// The folders the Python standard library corpus leaves out: its tests and installed packages.
std::vector<std::string> python_stdlib_skipped_folders();
/// The newest /usr/lib/python3.N holding os.py; a pg::Error naming the Debian package otherwise.
std::string python_stdlib_dir();
/// The corpus a training program reads from its --data PATH and --glob PATTERN: with an empty
/// glob, load_text_corpus(path, 0.1) (the fortunes when path is empty); with one, the matching
/// files under the folder `path`, split by file (load_file_corpus). kPythonStdlib as the path is
/// python_stdlib_dir() with glob "*.py" unless one is given, python_stdlib_skipped_folders() left
/// out.
TextCorpus load_corpus(const std::string& path, const std::string& glob);

}  // namespace pg
