// User mistakes raise pg::Error whose message names the op, the shapes (or values) involved and
// what was expected. Each check asserts the message's contents, not just that something threw.
#include <doctest/doctest.h>

#include "helpers.h"
#include "kernels/device_api.h"

using namespace pg;

TEST_CASE("error type: op() and what()") {
  try {
    (void)add(zeros({2, 3}), zeros({4}));
    FAIL("add of [2, 3] and [4] did not throw");
  } catch (const Error& e) {
    CHECK(e.op() == "add");
    CHECK(std::string(e.what()).rfind("add: ", 0) == 0);
  }
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({2, 3})), doctest::Contains("matmul"), Error);
}

TEST_CASE("shape mismatches name the op and both shapes") {
  Tensor a = zeros({2, 3}), b = zeros({4});
  CHECK_PG_ERROR(add(a, b), "add", "[2, 3]", "[4]", "cannot be broadcast");
  CHECK_PG_ERROR(a - b, "sub", "[2, 3]", "[4]");
  CHECK_PG_ERROR(mul(a, zeros({3, 2})), "mul", "[2, 3]", "[3, 2]");
  CHECK_PG_ERROR(a / b, "div", "[2, 3]", "[4]");
  CHECK_PG_ERROR(where(ones({2, 3}), a, b), "where", "[4]");
  CHECK_PG_ERROR(matmul(zeros({2, 3}), zeros({4, 5})), "matmul", "[2, 3]", "[4, 5]",
                 "a.size(-1) == b.size(-2)");
  CHECK_PG_ERROR(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), "matmul", "[2, 2, 3]", "[3, 3, 4]");
  CHECK_PG_ERROR(matmul(zeros({3}), zeros({3, 4})), "matmul", "rank >= 2", "[3]");
  CHECK_PG_ERROR(cat({zeros({2, 3}), zeros({3, 2})}, 0), "cat", "[3, 2]", "[2, 3]", "dim 0");
  CHECK_PG_ERROR(stack({zeros({2, 3}), zeros({2, 4})}, 0), "stack", "[2, 4]", "[2, 3]");
  CHECK_PG_ERROR(cat({}, 0), "cat", "at least one");
  CHECK_PG_ERROR(cat({scalar_tensor(1), scalar_tensor(2)}, 0), "cat", "zero-dimensional");
  CHECK_PG_ERROR(zeros({2, 3}).copy_(zeros({2})), "copy_", "[2]", "[2, 3]");
  CHECK_PG_ERROR(zeros({3, 1}).expand({3, 2, 2}), "expand", "[3, 1]", "[3, 2, 2]");
  CHECK_PG_ERROR(zeros({3, 4}).expand({4}), "expand", "[3, 4]", "[4]");
  CHECK_PG_ERROR(sum_to(zeros({2, 3}), {4}), "sum_to", "[2, 3]", "[4]");
  Tensor w = zeros({5});
  CHECK_PG_ERROR(layer_norm(zeros({2, 4}), w, {}), "layer_norm", "[4]", "[5]", "[2, 4]");
  CHECK_PG_ERROR(cross_entropy(zeros({4, 5}), zeros({3}, {DType::I64})), "cross_entropy", "[4, 5]",
                 "[4]", "[3]");
  Tensor x = from_vector<double>({1, 2}, {2}, Device::cpu(), true);
  CHECK_PG_ERROR(x.set_grad(zeros({3}, {DType::F64})), "set_grad", "[3]", "[2]");
}

TEST_CASE("dtype mismatches name both dtypes") {
  Tensor f = zeros({2}, {DType::F32}), d = zeros({2}, {DType::F64});
  CHECK_PG_ERROR(add(f, d), "add", "same dtype", "f32", "f64", "[2]");
  CHECK_PG_ERROR(f * d, "mul", "f32", "f64");
  CHECK_PG_ERROR(matmul(zeros({2, 2}), zeros({2, 2}, {DType::F64})), "matmul", "f32", "f64");
  CHECK_PG_ERROR(matmul(zeros({2, 2}, {DType::I64}), zeros({2, 2}, {DType::I64})), "matmul",
                 "floating", "i64");
  CHECK_PG_ERROR(cat({f, d}, 0), "cat", "f32", "f64");
  CHECK_PG_ERROR(exp(zeros({2}, {DType::I64})), "exp", "floating", "i64");
  CHECK_PG_ERROR(softmax(zeros({2}, {DType::I32}), 0), "softmax", "floating", "i32");
  CHECK_PG_ERROR(layer_norm(f, zeros({2}, {DType::F64}), {}), "layer_norm", "f32", "f64");
  CHECK_PG_ERROR(cross_entropy(zeros({2, 3}), zeros({2})), "cross_entropy", "integer", "f32");
  CHECK_PG_ERROR(embedding(zeros({4, 2}), zeros({3})), "embedding", "i64 or i32", "f32");
  CHECK_PG_ERROR(f.data<double>(), "data", "f32", "f64");
  CHECK_PG_ERROR(div(zeros({2}, {DType::I64}), ones({2}, {DType::I64})), "div", "integer");
  CHECK_PG_ERROR(rand({2}, {DType::I64}), "rand", "floating", "i64");
}

TEST_CASE("bad reshapes and views") {
  Tensor x = zeros({2, 3});
  CHECK_PG_ERROR(x.reshape({4, 2}), "reshape", "[2, 3]", "6 elements", "[4, 2]");
  CHECK_PG_ERROR(x.reshape({-1, 4}), "reshape", "[2, 3]", "[-1, 4]");
  CHECK_PG_ERROR(x.reshape({-1, -1}), "reshape", "only one dimension can be -1");
  CHECK_PG_ERROR(x.view({5}), "view", "[2, 3]", "[5]");
  CHECK_PG_ERROR(x.transpose(0, 1).view({6}), "view", "[3, 2]", "without copying");
  CHECK_PG_ERROR(x.permute({0}), "permute", "[2, 3]", "expected 2 dims");
  CHECK_PG_ERROR(x.permute({1, 1}), "permute", "repeated");
  CHECK_PG_ERROR(x.slice(1, 0, 3, 0), "slice", "step must be positive");
  CHECK_PG_ERROR(zeros({-1, 2}), "negative size");
  CHECK_PG_ERROR(from_vector<float>({1, 2, 3}, {2, 2}), "from_vector", "3 values", "[2, 2]",
                 "expected 4");
}

TEST_CASE("out-of-range dims name the dim and the rank") {
  Tensor x = zeros({2, 3});
  CHECK_PG_ERROR(sum(x, {2}), "sum", "dim 2", "rank 2", "[-2, 1]");
  CHECK_PG_ERROR(sum(x, {-3}), "sum", "dim -3");
  CHECK_PG_ERROR(mean(x, {5}), "mean", "dim 5");
  CHECK_PG_ERROR(max(x, 2), "max", "dim 2");
  CHECK_PG_ERROR(argmax(x, -3), "argmax", "dim -3");
  CHECK_PG_ERROR(softmax(x, 2), "softmax", "dim 2");
  CHECK_PG_ERROR(log_softmax(x, -3), "log_softmax", "dim -3");
  CHECK_PG_ERROR(x.transpose(0, 2), "transpose", "dim 2");
  CHECK_PG_ERROR(x.squeeze(2), "squeeze", "dim 2");
  CHECK_PG_ERROR(x.unsqueeze(3), "unsqueeze", "dim 3");
  CHECK_PG_ERROR(x.size(2), "size", "dim 2");
  CHECK_PG_ERROR(cat({x, x}, 2), "cat", "dim 2");
  CHECK_PG_ERROR(stack({x, x}, 3), "stack", "dim 3");
  CHECK_PG_ERROR(x.slice(2, 0, 1), "slice", "dim 2");
  CHECK_PG_ERROR(sum(x, {1, -1}), "sum", "twice");
}

TEST_CASE("narrow, select and indices out of range") {
  Tensor x = zeros({2, 3});
  CHECK_PG_ERROR(x.narrow(1, 2, 2), "narrow", "[2, 4)", "dim 1", "size 3", "[2, 3]");
  CHECK_PG_ERROR(x.narrow(0, -1, 1), "narrow", "out of bounds");
  CHECK_PG_ERROR(x.narrow(2, 0, 1), "narrow", "dim 2");
  CHECK_PG_ERROR(x.select(1, 3), "select", "index 3", "dim 1", "size 3", "[2, 3]");
  CHECK_PG_ERROR(x.select(0, -3), "select", "index -3");

  Tensor w = zeros({5, 2});
  CHECK_PG_ERROR(embedding(w, from_vector<int64_t>({0, 7, 1}, {3})), "embedding", "index 7",
                 "position 1", "5 rows");
  CHECK_PG_ERROR(embedding(w, from_vector<int32_t>({-1}, {1})), "embedding", "index -1");
  CHECK_PG_ERROR(embedding(zeros({5}), from_vector<int64_t>({0}, {1})), "embedding", "2-D", "[5]");

  Tensor logits = zeros({3, 4});
  CHECK_PG_ERROR(cross_entropy(logits, from_vector<int64_t>({0, 4, 1}, {3})), "cross_entropy",
                 "target 4", "position 1", "4 classes");
  CHECK_PG_ERROR(cross_entropy(logits, from_vector<int64_t>({0, -1, 1}, {3})), "cross_entropy",
                 "target -1");
  CHECK_PG_ERROR(cross_entropy(logits, from_vector<int64_t>({0, 1, 2}, {3}), -100, 1.5),
                 "cross_entropy", "label_smoothing", "1.5");
  CHECK_PG_ERROR(dropout(logits, 1.5), "dropout", "probability", "1.5");
  CHECK_PG_ERROR(randint(3, 3, {2}), "randint", "low < high");
  CHECK_PG_ERROR(arange(0.0, 1.0, 0.0), "arange", "step");
}

TEST_CASE("misuse of values and autograd") {
  CHECK_PG_ERROR(zeros({2}).item(), "item", "one element", "[2]");
  CHECK_PG_ERROR(Tensor().shape(), "undefined");
  CHECK_PG_ERROR(zeros({2}, {DType::I64}).requires_grad_(), "requires_grad_", "floating", "i64");
  Tensor x = zeros({2});
  CHECK_PG_ERROR(x.backward(), "backward", "does not require grad");
  CHECK_PG_ERROR(gradcheck([](const TensorList& t) { return t[0] * 2.0; }, {x}), "gradcheck",
                 "no input requires grad");
  CHECK_PG_ERROR(set_num_threads(0), "set_num_threads", "at least 1", "0");
}

TEST_CASE("devices: a CUDA device that is not there, or not driven, is a clear error") {
  Tensor x = ones({2, 3});
  if (!cuda::is_available()) {
    CHECK_PG_ERROR(x.to(Device::cuda()), "cuda:0", "not available");
    CHECK_PG_ERROR(zeros({2}, {DType::F32, Device::cuda(1)}), "cuda:1", "not available");
    CHECK_PG_ERROR(backend_for(Device::cuda()), "cuda:0", "not available");
  } else {  // this version drives cuda:0 only
    CHECK_PG_ERROR(x.to(Device::cuda(1)), "cuda:1", "cuda:0 only");
    CHECK_PG_ERROR(zeros({2}, {DType::F32, Device::cuda(1)}), "cuda:1", "cuda:0 only");
  }
  CHECK(x.to(Device::cpu()).shares_storage(x));  // same device: no copy
}

TEST_CASE("sizes that overflow or cannot be allocated are pg::Errors, not crashes") {
  // Byte counts past 2^63 are refused before anything is allocated.
  CHECK_PG_ERROR(zeros({int64_t{1} << 61}, {DType::F64}), "empty", "2^63 bytes");
  // Element counts past 2^63 - 1, and negative sizes, are refused by shape_numel itself.
  CHECK_PG_ERROR(shape_numel({int64_t{1} << 40, int64_t{1} << 40}), "shape",
                 "[1099511627776, 1099511627776]", "2^63 - 1 elements");
  CHECK_PG_ERROR(shape_numel({int64_t{1} << 32, int64_t{1} << 32}), "2^63 - 1 elements");
  CHECK_PG_ERROR(shape_numel({2, -3}), "shape", "negative size", "[2, -3]");
  CHECK(shape_numel({int64_t{1} << 40, int64_t{1} << 40, 0}) == 0);
  CHECK(shape_numel({}) == 1);
  CHECK_PG_ERROR(zeros({6}).reshape({int64_t{1} << 40, int64_t{1} << 40, -1}), "2^63 - 1");
  // A block larger than the machine's memory: the system allocator is not even asked.
  CHECK_PG_ERROR(empty({int64_t{1} << 50}, {DType::F32}), "empty", "cannot allocate",
                 "4503599627370496 bytes", "[1125899906842624]", "f32");
  // The failed request leaves the allocator usable.
  CHECK(sum(ones({3})).item() == 3.0);
}
