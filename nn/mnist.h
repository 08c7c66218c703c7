// Fashion-MNIST (and any data set in MNIST's IDX layout), gzipped or not.
#pragma once
#include <string>

#include "core/tensor.h"

namespace pg {

/// Images [N, rows, cols] as f32 in [0, 1] and labels [N] as i64.
struct ImageSet {
  Tensor images;
  Tensor labels;
};

/// The two splits of an MNIST-layout directory.
struct MnistData {
  ImageSet train, test;
};

/// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Reads an IDX image file (magic 2051), gzipped or raw; validates magic, dims and size.
Tensor load_idx_images(const std::string& path);
/// Reads an IDX label file (magic 2049), gzipped or raw.
Tensor load_idx_labels(const std::string& path);
/// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `dir`.
MnistData load_mnist(const std::string& dir = kFashionMnistDir);

}  // namespace pg
