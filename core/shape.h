// Shapes, strides and the geometry of views (no data is touched here).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pg {

/// Sizes (or strides) of a tensor, outermost first.
using Shape = std::vector<int64_t>;

/// Largest rank a tensor may have.
inline constexpr int kMaxRank = 8;

/// Number of elements of a shape (1 for a scalar); throws pg::Error on a negative size or when
/// the count does not fit in int64_t.
int64_t shape_numel(const Shape& shape);
/// Row-major strides for a shape.
Shape contiguous_strides(const Shape& shape);
/// "[2, 3, 4]".
std::string shape_str(const Shape& shape);
/// Wraps a possibly negative dim into [0, rank); throws pg::Error naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t rank, const char* op);
/// NumPy broadcast of two shapes; throws pg::Error naming `op` when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
/// Strides that view a tensor of (shape, strides) as `target` (broadcast): 0 on expanded dims.
Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& target,
                        const char* op);
/// Resolves one -1 in a requested reshape; throws pg::Error when numel differs.
Shape infer_shape(const Shape& requested, int64_t numel, const Shape& from, const char* op);
/// Strides for viewing (shape, strides) as new_shape without copying, if possible.
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape);
/// Throws pg::Error naming `op` if the rank exceeds kMaxRank or a size is negative.
void check_shape(const Shape& shape, const char* op);

}  // namespace pg
