// Raw tensor math: validates arguments, allocates outputs and calls the device backend.
// Nothing here is recorded by autograd; autograd/ wraps these into differentiable ops.
#pragma once
#include <initializer_list>

#include "kernels/backend.h"

namespace pg::kernels {

/// Throws pg::Error naming `op` unless all defined tensors sit on the same device.
void check_same_device(const char* op, std::initializer_list<const Tensor*> ts);
/// Throws pg::Error naming `op` unless all defined tensors have the same dtype.
void check_same_dtype(const char* op, std::initializer_list<const Tensor*> ts);
/// Throws pg::Error naming `op` unless t is f32 or f64.
void check_floating(const char* op, const Tensor& t);
/// Throws pg::Error naming `op` if a tensor is bf16, which only stores values.
void check_computable(const char* op, std::initializer_list<const Tensor*> ts);

/// op(x, scalar) element-wise.
Tensor unary(UnaryOp op, const Tensor& x, double scalar = 0);
/// op(a, b) with broadcasting; `name` is the op named in errors.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const char* name);
/// cond != 0 ? a : b with broadcasting.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// Reduces over `dims` (empty: all dims).
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
/// Matrix product with NumPy batch broadcasting; both operands of rank >= 2. A bf16 operand
/// pairs with an f32 or bf16 one and gives an f32 product. A defined `bias` [N] (of the
/// product's dtype) is added to every row inside the GEMM (written first, then accumulated on).
Tensor matmul(const Tensor& a, const Tensor& b, const Tensor& bias = Tensor());
/// Contiguous copy (always copies).
Tensor clone(const Tensor& x);
/// Copy converted to `dtype`.
Tensor convert(const Tensor& x, DType dtype);
/// Copy on `device`.
Tensor to_device(const Tensor& x, Device device);
/// Sums broadcast dims of x so that the result has `shape` (the reverse of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

/// weight[index] for weight [V, D] and integer index of any shape: [..., D].
Tensor index_select_rows(const Tensor& weight, const Tensor& index);
/// A zero [rows, D] tensor with src [..., D] added at the rows named by index.
Tensor index_add_rows(const Tensor& index, const Tensor& src, int64_t rows);
/// Softmax or log-softmax over the last dim.
Tensor softmax_lastdim(const Tensor& x, bool log);
/// Gradient of softmax_lastdim given its output y.
Tensor softmax_lastdim_backward(const Tensor& dy, const Tensor& y, bool log);

}  // namespace pg::kernels
