#include "core/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace pg {

size_t allocation_size_class(size_t nbytes) {
  // Four classes per power of two keeps the worst-case waste under 25% while letting a
  // training step's repeated shapes hit the same free lists.
  nbytes = std::max<size_t>(nbytes, 64);
  size_t pow2 = 64;
  while (pow2 < nbytes) pow2 <<= 1;
  if (pow2 <= 256) return pow2;
  size_t quarter = pow2 / 8;  // pow2/2 .. pow2 in steps of pow2/8
  return (nbytes + quarter - 1) / quarter * quarter;
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
