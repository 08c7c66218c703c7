// Exceptions out of OpenMP regions. One that escapes the body of a parallel region calls
// std::terminate, so the process dies with "terminate called" instead of the caller seeing a
// pg::Error. A region whose body calls code that can throw (a check that raises pg::Error, an
// allocation) runs the body through RegionErrors and rethrows after the region.
#pragma once
#include <atomic>
#include <exception>
#include <mutex>

namespace pg::cpu {

/// Collects the first exception thrown by the iterations of one parallel region.
class RegionErrors {
 public:
  /// Runs body(); an exception it throws is kept (the first one wins), and once one has been
  /// thrown the remaining iterations are skipped.
  template <class Body>
  void run(Body&& body) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      body();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  /// After the region, on the calling thread: rethrows the kept exception, if any.
  void rethrow() {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_;
};

}  // namespace pg::cpu
