// Blocks are kept by size class (core/allocator.h's classes) and reused in stream order: every
// kernel runs on the one stream, so a block freed by the host after queueing work on it can be
// handed to the next kernel on the same stream without waiting.
#include <map>
#include <mutex>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/allocator.h"
#include "kernels/cuda/context.h"

namespace pg::cuda {

namespace {

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    size_t size = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* p = nullptr;
    auto& list = free_[size];
    if (!list.empty()) {
      p = list.back();
      list.pop_back();
      ++stats_.cache_hits;
    } else {
      cudaError_t err = cudaMalloc(&p, size);
      if (err == cudaErrorMemoryAllocation) {  // give the cache back and try once more
        (void)cudaGetLastError();
        release_cached();
        err = cudaMalloc(&p, size);
      }
      if (err != cudaSuccess)
        throw Error("cuda", detail::concat("cudaMalloc of ", size, " bytes failed: ",
                                           cudaGetErrorString(err), " (", stats_.allocated,
                                           " bytes in use, ", stats_.reserved, " reserved)"));
      stats_.reserved += size;
      ++stats_.system_allocs;
    }
    stats_.allocated += size;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    return p;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (ptr == nullptr) return;
    size_t size = allocation_size_class(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    free_[size].push_back(ptr);
    stats_.allocated -= size;
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached();
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated = stats_.allocated;
  }

 private:
  // Caller holds mutex_. Waits for queued kernels first: they may still use cached blocks.
  void release_cached() {
    (void)cudaStreamSynchronize(stream());
    for (auto& [size, list] : free_) {
      for (void* p : list) (void)cudaFree(p);
      stats_.reserved -= size * list.size();
      list.clear();
    }
  }

  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

}  // namespace

Allocator& caching_allocator() {
  // Never destroyed: tensors released during static destruction still return their blocks.
  static auto* a = new CachingAllocator;
  return *a;
}

}  // namespace pg::cuda
