#include "nn/data_loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/factory.h"

namespace pg {

Prefetcher::Prefetcher(std::function<Batch(int64_t)> make, int64_t first_step)
    : make_(std::move(make)), step_(first_step) {
  pending_ = std::async(std::launch::async, make_, step_);
}

Prefetcher::~Prefetcher() {
  if (pending_.valid()) pending_.wait();
}

Batch Prefetcher::next() {
  Batch b = pending_.get();
  pending_ = std::async(std::launch::async, make_, ++step_);
  return b;
}

ImageBatcher::ImageBatcher(const ImageSet& data, int64_t batch_size, uint64_t seed,
                           ImageAugment aug)
    : data_(data), aug_(aug), batch_size_(batch_size), seed_(seed) {
  int64_t n = data.images.size(0);
  PG_CHECK(batch_size > 0 && batch_size <= n, "ImageBatcher", "batch size ", batch_size,
           " must be in [1, ", n, "]");
  PG_CHECK(aug.max_shift >= 0 && aug.max_shift < std::min(data.images.size(1), data.images.size(2)),
           "ImageBatcher", "max_shift ", aug.max_shift, " must be in [0, image side)");
  steps_per_epoch_ = n / batch_size;
}

const std::vector<int64_t>& ImageBatcher::order(int64_t epoch) const {
  if (epoch != cached_epoch_) {
    int64_t n = data_.images.size(0);
    cached_order_.resize(static_cast<size_t>(n));
    std::iota(cached_order_.begin(), cached_order_.end(), 0);
    // Fisher-Yates with our own generator: the same permutation on every machine.
    Generator g(seed_ + static_cast<uint64_t>(epoch));
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(cached_order_[i], cached_order_[g.randint(0, i + 1)]);
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

Batch ImageBatcher::batch(int64_t step) const {
  int64_t epoch = step / steps_per_epoch_, first = (step % steps_per_epoch_) * batch_size_;
  const auto& ord = order(epoch);
  int64_t h = data_.images.size(1), w = data_.images.size(2);
  Tensor x = empty({batch_size_, 1, h, w});
  Tensor y = empty({batch_size_}, {DType::I64});
  const float* src = data_.images.data<float>();
  const int64_t* lab = data_.labels.data<int64_t>();
  // The augmentation draws depend only on (seed, step), so resumed runs see the same images.
  Generator g(~seed_ * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(step));
  const bool augment = aug_.flip || aug_.max_shift > 0;
  for (int64_t i = 0; i < batch_size_; ++i) {
    int64_t j = ord[first + i];
    float* dst = x.data<float>() + i * h * w;
    const float* img = src + j * h * w;
    y.data<int64_t>()[i] = lab[j];
    if (!augment) {
      std::memcpy(dst, img, sizeof(float) * h * w);
      continue;
    }
    bool flip = aug_.flip && g.randint(0, 2) == 1;
    int64_t dy = aug_.max_shift ? g.randint(-aug_.max_shift, aug_.max_shift + 1) : 0;
    int64_t dx = aug_.max_shift ? g.randint(-aug_.max_shift, aug_.max_shift + 1) : 0;
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c) {
        int64_t sr = r - dy, sc = c - dx;
        if (flip) sc = w - 1 - sc;
        bool inside = sr >= 0 && sr < h && sc >= 0 && sc < w;
        dst[r * w + c] = inside ? img[sr * w + sc] : 0.0f;
      }
  }
  return {x, y};
}

Batch text_batch(const std::vector<int32_t>& tokens, int64_t batch_size, int64_t context,
                 uint64_t seed, int64_t step) {
  int64_t n = static_cast<int64_t>(tokens.size());
  PG_CHECK(n > context + 1, "text_batch", "the text has ", n, " tokens, fewer than context ",
           context, " + 2");
  Generator g(seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(step));
  Tensor x = empty({batch_size, context}, {DType::I64});
  Tensor y = empty({batch_size, context}, {DType::I64});
  for (int64_t b = 0; b < batch_size; ++b) {
    int64_t off = g.randint(0, n - context - 1);
    for (int64_t t = 0; t < context; ++t) {
      x.data<int64_t>()[b * context + t] = tokens[off + t];
      y.data<int64_t>()[b * context + t] = tokens[off + t + 1];
    }
  }
  return {x, y};
}

}  // namespace pg
