// One run per run directory: two training runs writing the same OUT would interleave their
// metrics lines and overwrite each other's checkpoints.
#pragma once
#include <string>

namespace pg::tools {

/// Holds a POSIX record lock on DIR/.lock for its lifetime; the kernel drops it when the process
/// ends, however it ends, so a killed run leaves no stale lock behind. Constructing a second
/// RunLock on the same folder, from any process on this machine, is a pg::Error naming the folder
/// and the holder's pid.
class RunLock {
 public:
  /// Locks `dir` (which must exist).
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace pg::tools
