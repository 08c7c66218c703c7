// Exceptions out of OpenMP regions. One that escapes the body of a parallel region calls
// std::terminate, so the process dies with "terminate called" instead of the caller seeing a
// pg::Error. A region whose body calls code that can throw (a check that raises pg::Error, an
// allocation) catches in the body and rethrows after the region:
//
//   RegionErrors errors;
//   #pragma omp parallel for
//   for (...) {
//     if (errors.failed()) continue;
//     try { body; } catch (...) { errors.capture(); }
//   }
//   errors.rethrow();
//
// (No lambda inside the region: clang 14 cannot capture an enclosing generic lambda's locals
// in one.)
#pragma once
#include <atomic>
#include <exception>
#include <mutex>

namespace pg::cpu {

/// Collects the first exception thrown by the iterations of one parallel region.
class RegionErrors {
 public:
  /// True once an iteration has thrown: the remaining ones may be skipped.
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  /// Inside a catch block: keeps the exception being handled (the first one wins).
  void capture() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!first_) first_ = std::current_exception();
    failed_.store(true, std::memory_order_relaxed);
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
