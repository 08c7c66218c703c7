// What every fuzz target shares: the input as a file (the readers under test take paths), and
// the rule that bad input may only ever end in a pg::Error.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace pg::fuzz {

/// The fuzzer's bytes written to a per-process scratch file (tmpfs when /dev/shm exists).
class InputFile {
 public:
  InputFile(const uint8_t* data, size_t size, const char* suffix = "") {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::getenv("TMPDIR");
    path_ = std::string(dir ? dir : "/tmp") + "/pg-fuzz-" + std::to_string(getpid()) + suffix;
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
      std::perror(path_.c_str());
      std::abort();  // the harness itself failed: not a finding about polygrad
    }
  }
  ~InputFile() { std::remove(path_.c_str()); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Runs `f`; a pg::Error is the expected answer to bad input and is swallowed. Anything else
/// (another exception, a crash, a sanitizer report) escapes and is a finding.
template <typename F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const pg::Error&) {
  }
}

/// Stops the fuzzer with a message when a property the target checks does not hold.
inline void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}

}  // namespace pg::fuzz
