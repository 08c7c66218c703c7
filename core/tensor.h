// Tensor: a cheap shared handle to storage plus view metadata and autograd state.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace pg {

class Node;  // autograd/node.h: the backward function that produced a tensor

/// Everything a tensor handle points to. Views share `storage`.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       ///< in elements
  int64_t offset = 0;  ///< in elements, into storage
  DType dtype = DType::F32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;
};

/// Options for factory functions.
struct TensorOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
  bool requires_grad = false;
  TensorOptions& with_dtype(DType d) {
    dtype = d;
    return *this;
  }
};

/// A multi-dimensional array. Copying a Tensor copies the handle, not the data.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- metadata -------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  /// Size of dim `d` (negative counts from the end).
  int64_t size(int64_t d) const;
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  /// True when elements are laid out row-major without gaps.
  bool is_contiguous() const;
  /// True when both tensors view the same storage.
  bool shares_storage(const Tensor& other) const;
  /// Typed pointer to the first element (CPU; checks T against dtype).
  template <typename T>
  T* data() const;
  /// Untyped pointer to the first element.
  void* raw_data() const;

  // --- autograd state -------------------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  /// Marks a leaf as needing a gradient; returns *this.
  Tensor& requires_grad_(bool value = true);
  /// Accumulated gradient (undefined until a backward reaches this tensor).
  Tensor grad() const;
  /// Replaces the gradient (pass an undefined Tensor to clear it).
  void set_grad(const Tensor& g);
  /// The node that produced this tensor, or null for leaves.
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  /// A tensor sharing storage with this one but cut from the graph.
  Tensor detach() const;
  /// Runs reverse-mode differentiation from this tensor (scalar, or pass `grad`). With
  /// create_graph a leaf's .grad refers to the graph that refers to the leaf (as in PyTorch):
  /// clear it (set_grad(Tensor())) when done, or both are never freed.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false,
                bool create_graph = false) const;

  // --- values ---------------------------------------------------------------------------
  /// The single value of a one-element tensor, as double.
  double item() const;
  /// The single value of a one-element tensor, as T.
  template <typename T>
  T item() const {
    return static_cast<T>(item());
  }
  /// All values in row-major order, converted to T.
  template <typename T>
  std::vector<T> to_vector() const;
  /// Human-readable summary: shape, dtype, device and (abbreviated) values.
  std::string str() const;

  // --- in-place, not recorded by autograd -----------------------------------------------
  /// Sets every element to `value`.
  Tensor& fill_(double value);
  /// Copies `src` (broadcast to this shape, any dtype) into this tensor's elements.
  Tensor& copy_(const Tensor& src);

  // --- differentiable views and conversions (defined in autograd/) ---------------------
  Tensor reshape(const Shape& shape) const;
  /// Like reshape but never copies; throws pg::Error when the strides forbid a view.
  Tensor view(const Shape& shape) const;
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  /// Elements [start, end) of dim with a step; start and end are clamped like Python's.
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  /// `length` elements of dim from `start`; throws pg::Error when out of range.
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  /// Index `index` of dim, removing that dim.
  Tensor select(int64_t dim, int64_t index) const;
  /// Broadcast view to `shape` (-1 keeps a size).
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten() const;
  /// This tensor if contiguous, otherwise a contiguous copy.
  Tensor contiguous() const;
  /// A copy with its own storage.
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // --- internals ------------------------------------------------------------------------
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  /// A view of the same storage with other geometry; not recorded by autograd.
  Tensor as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

/// Uninitialised tensor with its own storage.
Tensor empty(const Shape& shape, TensorOptions opts = {});
/// Uninitialised tensor shaped and typed like `t`.
Tensor empty_like(const Tensor& t);

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace pg
