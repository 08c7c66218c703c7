#include "tools/cli/run_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace pg::tools {

namespace {
struct flock whole_file(short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;  // start 0, length 0: the whole file
  return fl;
}
}  // namespace

RunLock::RunLock(const std::string& dir) {
  const std::string path = dir + "/.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  PG_CHECK(fd_ >= 0, path, "cannot open the run directory's lock file: ", std::strerror(errno));
  struct flock lock = whole_file(F_WRLCK);
  if (::fcntl(fd_, F_SETLK, &lock) == 0) {
    // For a person looking at the folder; the lock itself is the kernel's.
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
      // The pid is a courtesy: a folder where it cannot be written still holds the lock.
    }
    return;
  }
  const int err = errno;
  struct flock holder = whole_file(F_WRLCK);
  const bool known = ::fcntl(fd_, F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK;
  ::close(fd_);
  fd_ = -1;
  if (err == EACCES || err == EAGAIN)
    throw Error(dir, detail::concat(
                         "another run (",
                         known ? "pid " + std::to_string(holder.l_pid) : std::string("pid unknown"),
                         ") is writing to this folder; wait for it to end, stop it, "
                         "or use another --out"));
  throw Error(path, detail::concat("cannot lock the run directory: ", std::strerror(err)));
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays for the next run to take
}

}  // namespace pg::tools
