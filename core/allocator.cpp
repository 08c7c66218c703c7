#include "core/allocator.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace pg {

size_t allocation_size_class(size_t nbytes) {
  // Four classes per power of two keeps the worst-case waste under 25% while letting a
  // training step's repeated shapes hit the same free lists.
  if (nbytes > (size_t{1} << 62)) return nbytes;  // the doubling below would overflow
  nbytes = std::max<size_t>(nbytes, 64);
  size_t pow2 = 64;
  while (pow2 < nbytes) pow2 <<= 1;
  if (pow2 <= 256) return pow2;
  size_t quarter = pow2 / 8;  // pow2/2 .. pow2 in steps of pow2/8
  return (nbytes + quarter - 1) / quarter * quarter;
}

size_t physical_memory_bytes() {
  static const size_t bytes = [] {
    long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
  }();
  return bytes;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) bytes /= 1024, ++u;
  char buf[64];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

namespace {

class CachingCpuAllocator final : public Allocator {
 public:
  ~CachingCpuAllocator() override { empty_cache(); }

  void* allocate(size_t nbytes) override {
    size_t cls = allocation_size_class(nbytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        note_alloc(cls);
        ++stats_.cache_hits;
        return p;
      }
    }
    // A block larger than the machine's memory cannot be served; asking the system would
    // only trip a sanitizer's allocation limit or, with overcommit, the OOM killer later.
    const size_t ram = physical_memory_bytes();
    if (ram != 0 && cls > ram) throw std::bad_alloc();
    void* p = std::aligned_alloc(64, cls);
    if (!p) {
      empty_cache();
      p = std::aligned_alloc(64, cls);
      if (!p) throw std::bad_alloc();
    }
    std::lock_guard<std::mutex> lock(mu_);
    stats_.reserved += cls;
    ++stats_.system_allocs;
    note_alloc(cls);
    return p;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (!ptr) return;
    size_t cls = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.allocated -= cls;
    free_[cls].push_back(ptr);
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [cls, blocks] : free_) {
      for (void* p : blocks) std::free(p);
      stats_.reserved -= cls * blocks.size();
      blocks.clear();
    }
  }

  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  void note_alloc(size_t cls) {
    stats_.allocated += cls;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  }

  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

}  // namespace

Allocator& cpu_allocator() {
  // Leaked on purpose: tensors held in static objects may be freed after main returns.
  static auto* alloc = new CachingCpuAllocator();
  return *alloc;
}

}  // namespace pg
