// Device memory allocators; the CPU one caches freed blocks by size class.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pg {

/// Counters an allocator keeps (bytes).
struct AllocatorStats {
  size_t allocated = 0;       ///< bytes handed out and not yet returned
  size_t reserved = 0;        ///< bytes obtained from the system (handed out + cached)
  size_t peak_allocated = 0;  ///< high-water mark of `allocated`
  size_t system_allocs = 0;   ///< calls that went to the system allocator
  size_t cache_hits = 0;      ///< calls served from the cache
};

/// Interface every device's allocator implements.
class Allocator {
 public:
  virtual ~Allocator() = default;
  /// Returns a block of at least `nbytes` bytes (64-byte aligned on the CPU).
  virtual void* allocate(size_t nbytes) = 0;
  /// Returns a block obtained from allocate(nbytes).
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  /// Frees every cached block back to the system.
  virtual void empty_cache() = 0;
  /// Current counters.
  virtual AllocatorStats stats() const = 0;
  /// Restarts peak_allocated from the current allocation.
  virtual void reset_peak() = 0;
};

/// The process-wide caching CPU allocator.
Allocator& cpu_allocator();
/// Rounds a request up to the size class the caching allocators use (requests above 2^62
/// bytes, which no machine can serve, are returned unchanged).
size_t allocation_size_class(size_t nbytes);
/// Bytes of physical memory of this machine (0 when the system does not say).
size_t physical_memory_bytes();
/// "1.5 GiB": a byte count for messages.
std::string format_bytes(double bytes);

}  // namespace pg
