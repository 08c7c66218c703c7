#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <ostream>
#include <sstream>

namespace pg {

TensorImpl& Tensor::impl() const {
  PG_CHECK(impl_ != nullptr, "Tensor", "operation on an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const {
  int64_t w = wrap_dim(d, dim(), "size");
  PG_CHECK(dim() > 0, "size", "a 0-d tensor has no dim ", d);
  return shape()[w];
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to lay out (strides of a 0-size dim are free)
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

bool Tensor::shares_storage(const Tensor& other) const {
  return defined() && other.defined() && impl().storage == other.impl().storage;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data()) + offset() * dtype_size(dtype());
}

template <typename T>
T* Tensor::data() const {
  PG_CHECK(dtype() == dtype_of<T>(), "data", "tensor has dtype ", dtype_name(dtype()), " but ",
           dtype_name(dtype_of<T>()), " was requested");
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;
template int32_t* Tensor::data<int32_t>() const;
template BFloat16* Tensor::data<BFloat16>() const;

Tensor& Tensor::requires_grad_(bool value) {
  PG_CHECK(!value || is_floating(dtype()), "requires_grad_",
           "only floating-point tensors can require gradients (got ", dtype_name(dtype()), ")");
  PG_CHECK(is_leaf() || value, "requires_grad_",
           "cannot turn off requires_grad of a non-leaf tensor; use detach()");
  impl().requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(impl().grad); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined())
    PG_CHECK(g.shape() == shape(), "set_grad", "gradient of shape ", shape_str(g.shape()),
             " does not match tensor of shape ", shape_str(shape()));
  impl().grad = g.impl_ptr();
}

Tensor Tensor::detach() const {
  auto out = std::make_shared<TensorImpl>();
  out->storage = impl().storage;
  out->shape = shape();
  out->strides = strides();
  out->offset = offset();
  out->dtype = dtype();
  return Tensor(out);
}

Tensor Tensor::as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  check_shape(shape, "as_strided");
  auto out = std::make_shared<TensorImpl>();
  out->storage = impl().storage;
  out->shape = shape;
  out->strides = strides;
  out->offset = offset;
  out->dtype = dtype();
  return Tensor(out);
}

Tensor empty(const Shape& shape, TensorOptions opts) {
  check_shape(shape, "empty");
  // The byte count must fit: a wrapped product would allocate a tiny block for a huge shape.
  const size_t elem = dtype_size(opts.dtype);
  size_t numel = 1;
  bool fits = true;
  for (int64_t s : shape) {
    if (s == 0) {
      numel = 0;
      fits = true;
      break;
    }
    fits = fits && numel <= (std::numeric_limits<int64_t>::max() / elem) / static_cast<size_t>(s);
    numel *= fits ? static_cast<size_t>(s) : 1;
  }
  PG_CHECK(fits, "empty", "shape ", shape_str(shape), " of ", dtype_name(opts.dtype),
           " needs more than 2^63 bytes");
  auto impl = std::make_shared<TensorImpl>();
  size_t nbytes = numel * elem;
  Allocator& allocator = allocator_for(opts.device);
  try {
    impl->storage = std::make_shared<Storage>(nbytes, opts.device, allocator);
  } catch (const std::bad_alloc&) {
    // Said here, where the shape is known, rather than as a bare std::bad_alloc.
    const size_t ram = opts.device.is_cpu() ? physical_memory_bytes() : 0;
    const std::string why =
        ram && nbytes > ram
            ? "more than this machine's " + format_bytes(static_cast<double>(ram)) + " of memory"
            : std::string("out of memory");
    throw Error("empty",
                detail::concat("cannot allocate ", nbytes, " bytes (",
                               format_bytes(static_cast<double>(nbytes)),
                               ") for a tensor of shape ", shape_str(shape), " of ",
                               dtype_name(opts.dtype), " on ", opts.device.str(), ": ", why));
  }
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype;
  Tensor t(impl);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor empty_like(const Tensor& t) {
  return empty(t.shape(), TensorOptions{t.dtype(), t.device(), false});
}

namespace {

// Reads the element at multi-index `idx` of a CPU tensor as T, converting directly from the
// stored type (through double, 64-bit integers above 2^53 would lose their low bits).
template <typename T>
T read_as(const Tensor& t, const Shape& idx) {
  int64_t off = t.offset();
  for (size_t i = 0; i < idx.size(); ++i) off += idx[i] * t.strides()[i];
  const char* base = static_cast<const char*>(t.impl().storage->data());
  switch (t.dtype()) {
    case DType::F32:
      return static_cast<T>(reinterpret_cast<const float*>(base)[off]);
    case DType::F64:
      return static_cast<T>(reinterpret_cast<const double*>(base)[off]);
    case DType::I64:
      return static_cast<T>(reinterpret_cast<const int64_t*>(base)[off]);
    case DType::I32:
      return static_cast<T>(reinterpret_cast<const int32_t*>(base)[off]);
    case DType::BF16:
      return static_cast<T>(static_cast<float>(reinterpret_cast<const BFloat16*>(base)[off]));
  }
  return T(0);
}

double read_as_double(const Tensor& t, const Shape& idx) { return read_as<double>(t, idx); }

template <typename F>
void for_each_index(const Shape& shape, F&& f) {
  int64_t n = shape_numel(shape);
  Shape idx(shape.size(), 0);
  for (int64_t k = 0; k < n; ++k) {
    f(idx);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

Tensor on_cpu(const Tensor& t) { return t.device().is_cpu() ? t : t.detach().to(Device::cpu()); }

}  // namespace

double Tensor::item() const {
  PG_CHECK(numel() == 1, "item", "expected a tensor with one element, got shape ",
           shape_str(shape()));
  Tensor c = on_cpu(*this);
  return read_as_double(c, Shape(c.dim(), 0));
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = on_cpu(*this);
  std::vector<T> out;
  out.reserve(static_cast<size_t>(numel()));
  if (c.dtype() == dtype_of<T>() && c.is_contiguous()) {
    const T* p = c.data<T>();
    out.assign(p, p + numel());
    return out;
  }
  for_each_index(c.shape(), [&](const Shape& idx) { out.push_back(read_as<T>(c, idx)); });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;

namespace {

void print_values(std::ostream& os, const Tensor& t, Shape& idx, size_t d, int indent) {
  constexpr int64_t kEdge = 3;  // shown at each end of a long dim
  int64_t n = t.shape()[d];
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (n > 2 * kEdge && i == kEdge) {
      os << (d + 1 == t.shape().size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - kEdge;
    }
    idx[d] = i;
    if (d + 1 == t.shape().size()) {
      double v = read_as_double(t, idx);
      if (is_floating(t.dtype())) {
        std::ostringstream s;
        s.precision(4);
        s << v;
        os << s.str();
      } else {
        os << static_cast<int64_t>(v);
      }
    } else {
      print_values(os, t, idx, d + 1, indent + 1);
    }
    if (i + 1 < n) os << (d + 1 == t.shape().size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
     << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad";
  os << ")\n";
  Tensor c = on_cpu(*this);
  if (c.dim() == 0) {
    os << read_as_double(c, {});
  } else {
    Shape idx(c.dim(), 0);
    print_values(os, c, idx, 0, 0);
  }
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace pg
