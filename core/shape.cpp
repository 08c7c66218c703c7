#include "core/shape.h"

#include <sstream>

#include "core/error.h"

namespace pg {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  bool overflow = false, zero = false;
  for (int64_t s : shape) {
    PG_CHECK(s >= 0, "shape", "negative size in shape ", shape_str(shape));
    zero = zero || s == 0;
    // A wrapped product would size a tiny buffer for a huge shape.
    overflow = __builtin_mul_overflow(n, s, &n) || overflow;
  }
  if (zero) return 0;  // [2^40, 2^40, 0] holds nothing, whatever its partial products
  PG_CHECK(!overflow, "shape", "shape ", shape_str(shape), " has more than 2^63 - 1 elements");
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

int64_t wrap_dim(int64_t dim, int64_t rank, const char* op) {
  int64_t r = std::max<int64_t>(rank, 1);
  PG_CHECK(dim >= -r && dim < r, op, "dim ", dim, " is out of range for a tensor of rank ", rank,
           " (expected a dim in [", -r, ", ", r - 1, "])");
  return dim < 0 ? dim + r : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    PG_CHECK(da == db || da == 1 || db == 1, op, "shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast together (dim ", i, ": ", da, " vs ", db,
             "; expected equal sizes or 1)");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& target,
                        const char* op) {
  PG_CHECK(shape.size() <= target.size(), op, "cannot expand shape ", shape_str(shape), " to ",
           shape_str(target), " (target has lower rank)");
  size_t off = target.size() - shape.size();
  Shape out(target.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t s = shape[i], t = target[off + i];
    PG_CHECK(s == t || s == 1, op, "cannot expand shape ", shape_str(shape), " to ",
             shape_str(target), " (dim ", off + i, ": size ", s, " must equal ", t, " or be 1)");
    out[off + i] = (s == t && t != 1) ? strides[i] : 0;
  }
  return out;
}

Shape infer_shape(const Shape& requested, int64_t numel, const Shape& from, const char* op) {
  Shape out = requested;
  int infer = -1;
  Shape known_dims;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      PG_CHECK(infer < 0, op, "only one dimension can be -1 in ", shape_str(requested));
      infer = static_cast<int>(i);
    } else {
      PG_CHECK(out[i] >= 0, op, "invalid size ", out[i], " in ", shape_str(requested));
      known_dims.push_back(out[i]);
    }
  }
  const int64_t known = shape_numel(known_dims);  // throws when the sizes overflow
  if (infer >= 0) {
    PG_CHECK(known != 0 && numel % known == 0, op, "cannot reshape ", shape_str(from), " (", numel,
             " elements) to ", shape_str(requested));
    out[infer] = numel / known;
  }
  PG_CHECK(shape_numel(out) == numel, op, "cannot reshape ", shape_str(from), " (", numel,
           " elements) to ", shape_str(requested), " (", shape_numel(out), " elements)");
  check_shape(out, op);
  return out;
}

std::optional<Shape> view_strides(const Shape& shape, const Shape& strides,
                                  const Shape& new_shape) {
  // Walk both shapes in chunks of dims that are contiguous among themselves in the old
  // layout; each chunk may be re-split freely (the algorithm PyTorch and NumPy use).
  Shape out(new_shape.size());
  if (shape_numel(shape) == 0 || new_shape.empty() || shape.empty()) {
    out = contiguous_strides(new_shape);
    if (shape_numel(shape) != 0 && !shape.empty()) return std::nullopt;
    return out;
  }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

void check_shape(const Shape& shape, const char* op) {
  PG_CHECK(static_cast<int>(shape.size()) <= kMaxRank, op, "rank ", shape.size(),
           " exceeds the maximum rank ", kMaxRank, " (shape ", shape_str(shape), ")");
  for (int64_t s : shape) PG_CHECK(s >= 0, op, "negative size in shape ", shape_str(shape));
}

}  // namespace pg
