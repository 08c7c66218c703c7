#include "nn/text.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace pg {

namespace {

// The code point of the well-formed UTF-8 sequence at s[i], and its length in bytes; length 0
// when the bytes there are not one (truncated, a stray continuation byte, an overlong form, a
// surrogate or a code point past Unicode's last). Decoding and validating share this rule, so a
// vocabulary built from any text reads back from its UTF-8 form.
std::pair<char32_t, int> decode_one(const std::string& s, size_t i) {
  const unsigned char c = s[i];
  const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > s.size()) return {0, 0};
  char32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
  for (int k = 1; k < len; ++k) {
    const unsigned char cc = s[i + k];
    if ((cc >> 6) != 2) return {0, 0};
    cp = (cp << 6) | (cc & 0x3f);
  }
  const char32_t least = len == 1 ? 0 : len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
  if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0, 0};
  return {cp, len};
}

}  // namespace

std::u32string utf8_decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto [cp, len] = decode_one(s, i);
    out.push_back(len ? cp : 0xFFFD);
    i += len ? len : 1;
  }
  return out;
}

size_t utf8_error_offset(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const int len = decode_one(s, i).second;
    if (len == 0) return i;
    i += len;
  }
  return std::string::npos;
}

std::string utf8_encode(const std::u32string& text) {
  std::string out;
  for (char32_t c : text) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xe0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return out;
}

CharVocab CharVocab::from_text(const std::u32string& text) {
  std::u32string chars = text;
  std::sort(chars.begin(), chars.end());
  chars.erase(std::unique(chars.begin(), chars.end()), chars.end());
  CharVocab v;
  v.chars_ = chars;
  for (size_t i = 0; i < chars.size(); ++i) v.index_[chars[i]] = static_cast<int32_t>(i);
  return v;
}

CharVocab CharVocab::from_utf8(const std::string& chars, const std::string& who) {
  const size_t bad = utf8_error_offset(chars);
  PG_CHECK(bad == std::string::npos, who, "vocabulary is not valid UTF-8 (byte ", bad, " of ",
           chars.size(), ")");
  PG_CHECK(!chars.empty(), who, "vocabulary is empty (expected at least one character)");
  CharVocab v;
  v.chars_ = utf8_decode(chars);
  for (size_t i = 0; i < v.chars_.size(); ++i) {
    auto [it, fresh] = v.index_.emplace(v.chars_[i], static_cast<int32_t>(i));
    PG_CHECK(fresh, who, "vocabulary holds character U+", std::hex, std::uppercase,
             static_cast<uint32_t>(v.chars_[i]), std::dec, " twice (at positions ", it->second,
             " and ", i, ")");
  }
  return v;
}

std::string CharVocab::to_utf8() const { return utf8_encode(chars_); }

std::vector<int32_t> CharVocab::encode(const std::u32string& text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    auto it = index_.find(text[i]);
    PG_CHECK(it != index_.end(), "vocabulary", "character U+", std::hex,
             static_cast<uint32_t>(text[i]), std::dec, " at position ", i,
             " is not in the vocabulary of ", chars_.size(), " characters");
    ids.push_back(it->second);
  }
  return ids;
}

std::string CharVocab::decode(const std::vector<int32_t>& ids) const {
  std::u32string text;
  for (int32_t id : ids) {
    PG_CHECK(id >= 0 && id < size(), "vocabulary", "token id ", id, " is out of range for ", size(),
             " characters");
    text.push_back(chars_[id]);
  }
  return utf8_encode(text);
}

std::string read_text(const std::string& path) {
  namespace fs = std::filesystem;
  PG_CHECK(fs::exists(path), path, "no such file or directory",
           path == kFortunesDir
               ? " (the default corpus, Debian's fortunes package: apt-get install "
                 "fortunes; or pass a UTF-8 text file or folder)"
               : "");
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && !e.is_symlink() && e.path().extension() != ".dat")
        files.push_back(e.path());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  PG_CHECK(!files.empty(), path, "contains no text files");
  std::string all;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    PG_CHECK(in.good(), f.string(), "cannot open file");
    std::ostringstream ss;
    ss << in.rdbuf();
    all += ss.str();
  }
  return all;
}

TextCorpus load_text_corpus(const std::string& path, double val_fraction) {
  PG_CHECK(val_fraction >= 0 && val_fraction < 1, "load_text_corpus",
           "val_fraction must be in [0, 1), got ", val_fraction);
  std::u32string text = utf8_decode(read_text(path));
  PG_CHECK(text.size() >= 2, path, "has too little text (", text.size(), " characters)");
  size_t n_train = static_cast<size_t>(static_cast<double>(text.size()) * (1 - val_fraction));
  TextCorpus c;
  std::u32string train = text.substr(0, n_train);
  c.vocab = CharVocab::from_text(train);
  c.train = c.vocab.encode(train);
  // Characters that occur only in the validation part have no id: they are dropped.
  std::u32string val;
  for (char32_t ch : text.substr(n_train))
    if (c.vocab.contains(ch)) val.push_back(ch);
  c.val = c.vocab.encode(val);
  return c;
}

std::vector<std::string> list_files(const std::string& dir, const std::string& glob,
                                    const std::vector<std::string>& skip_folders) {
  namespace fs = std::filesystem;
  PG_CHECK(fs::is_directory(dir), dir, "is not a folder (a --glob pattern selects files in one)");
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    const std::string name = it->path().filename().string();
    if (it->is_directory() && !it->is_symlink()) {
      if (std::find(skip_folders.begin(), skip_folders.end(), name) != skip_folders.end())
        it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && !it->is_symlink() && fnmatch(glob.c_str(), name.c_str(), 0) == 0)
      files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  PG_CHECK(!files.empty(), dir, "holds no file matching '", glob, "'");
  return files;
}

TextCorpus load_file_corpus(const std::vector<std::string>& files, int64_t val_every) {
  PG_CHECK(val_every >= 2, "load_file_corpus", "val_every must be 2 or more, got ", val_every);
  PG_CHECK(static_cast<int64_t>(files.size()) >= val_every, "load_file_corpus", "only ",
           files.size(), " files: a split by file needs at least ", val_every, " (every ",
           val_every, "th is validation text)");
  std::u32string train, val;
  for (size_t i = 0; i < files.size(); ++i)
    ((static_cast<int64_t>(i) + 1) % val_every == 0 ? val : train) +=
        utf8_decode(read_text(files[i]));
  PG_CHECK(train.size() >= 2 && !val.empty(), "load_file_corpus", "too little text: ", train.size(),
           " training and ", val.size(), " validation characters");
  TextCorpus c;
  c.vocab = CharVocab::from_text(train);
  c.train = c.vocab.encode(train);
  std::u32string kept;
  for (char32_t ch : val)
    if (c.vocab.contains(ch)) kept.push_back(ch);
  c.val = c.vocab.encode(kept);
  return c;
}

std::vector<std::string> python_stdlib_skipped_folders() {
  return {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"};
}

std::string python_stdlib_dir() {
  namespace fs = std::filesystem;
  std::string best;
  int best_minor = -1;
  if (fs::is_directory("/usr/lib"))
    for (const auto& e : fs::directory_iterator("/usr/lib")) {
      const std::string name = e.path().filename().string();
      if (!name.starts_with("python3.") || !fs::exists(e.path() / "os.py")) continue;
      const int minor = std::atoi(name.c_str() + 8);
      if (minor > best_minor) best_minor = minor, best = e.path().string();
    }
  PG_CHECK(!best.empty(), kPythonStdlib,
           "no Python standard library found (/usr/lib/python3.N/os.py): apt-get install "
           "libpython3-stdlib");
  return best;
}

TextCorpus load_corpus(const std::string& path, const std::string& glob) {
  if (path == kPythonStdlib)
    return load_file_corpus(list_files(python_stdlib_dir(), glob.empty() ? "*.py" : glob,
                                       python_stdlib_skipped_folders()));
  if (glob.empty()) return load_text_corpus(path.empty() ? kFortunesDir : path, 0.1);
  return load_file_corpus(list_files(path.empty() ? kFortunesDir : path, glob));
}

}  // namespace pg
