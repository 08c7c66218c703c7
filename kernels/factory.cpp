#include "kernels/factory.h"

#include <algorithm>
#include <cmath>

#include "kernels/backend.h"

namespace pg {

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = empty(shape, opts);
  if (t.numel()) backend_for(t.device()).fill(t, value);
  if (rg) t.requires_grad_(true);
  return t;
}

Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {t.dtype(), t.device()}); }
Tensor full_like(const Tensor& t, double value) {
  return full(t.shape(), value, {t.dtype(), t.device()});
}
Tensor scalar_tensor(double value, TensorOptions opts) { return full({}, value, opts); }

Tensor arange(double start, double end, double step, TensorOptions opts) {
  PG_CHECK(step != 0, "arange", "step must be non-zero");
  PG_CHECK(std::isfinite(start) && std::isfinite(end), "arange", "bounds must be finite");
  double count = std::ceil((end - start) / step);
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor t = empty({n}, opts);
  if (n) backend_for(t.device()).arange(t, start, step);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor arange(int64_t end, TensorOptions opts) {
  if (opts.dtype == DType::F32 && !opts.requires_grad) opts.dtype = DType::I64;
  return arange(0.0, static_cast<double>(end), 1.0, opts);
}

namespace {

// Draws on the host (so streams are identical on every device) and copies to the device.
template <typename Draw>
Tensor host_random(const Shape& shape, TensorOptions opts, Draw draw) {
  bool rg = opts.requires_grad;
  Device dev = opts.device;
  Tensor host = empty(shape, TensorOptions{opts.dtype, Device::cpu(), false});
  int64_t n = host.numel();
  switch (opts.dtype) {
    case DType::F32: {
      float* p = host.data<float>();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(draw());
      break;
    }
    case DType::F64: {
      double* p = host.data<double>();
      for (int64_t i = 0; i < n; ++i) p[i] = draw();
      break;
    }
    case DType::I64: {
      int64_t* p = host.data<int64_t>();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int64_t>(draw());
      break;
    }
    case DType::I32: {
      int32_t* p = host.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>(draw());
      break;
    }
    case DType::BF16: {
      BFloat16* p = host.data<BFloat16>();
      for (int64_t i = 0; i < n; ++i) p[i] = BFloat16(draw());
      break;
    }
  }
  Tensor out = dev.is_cpu() ? host : host.to(dev);
  if (rg) out.requires_grad_(true);
  return out;
}

}  // namespace

Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  PG_CHECK(is_floating(opts.dtype), "rand", "expected a floating dtype, got ",
           dtype_name(opts.dtype));
  Generator& g = gen ? *gen : default_generator();
  if (opts.dtype == DType::F32) {
    // Draws above 1 - 2^-25 round up to 1.0f; clamp them to the largest float below 1 so the
    // range stays [0, 1) without changing any other value of the stream.
    const double below_one = static_cast<double>(std::nextafter(1.0f, 0.0f));
    return host_random(shape, opts, [&] { return std::min(g.uniform(), below_one); });
  }
  return host_random(shape, opts, [&] { return g.uniform(); });
}

Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  PG_CHECK(is_floating(opts.dtype), "randn", "expected a floating dtype, got ",
           dtype_name(opts.dtype));
  Generator& g = gen ? *gen : default_generator();
  return host_random(shape, opts, [&] { return g.normal(); });
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opts, Generator* gen) {
  PG_CHECK(high > low, "randint", "expected low < high, got [", low, ", ", high, ")");
  Generator& g = gen ? *gen : default_generator();
  return host_random(shape, opts, [&] { return static_cast<double>(g.randint(low, high)); });
}

template <typename T>
Tensor from_data(const T* data, const Shape& shape, Device device, bool requires_grad) {
  Tensor host = empty(shape, TensorOptions{dtype_of<T>(), Device::cpu(), false});
  std::copy(data, data + host.numel(), host.data<T>());
  Tensor out = device.is_cpu() ? host : host.to(device);
  if (requires_grad) out.requires_grad_(true);
  return out;
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device,
                   bool requires_grad) {
  check_shape(shape, "from_vector");
  PG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector", "got ",
           values.size(), " values for shape ", shape_str(shape), " (expected ", shape_numel(shape),
           ")");
  return from_data(values.data(), shape, device, requires_grad);
}

#define PG_INSTANTIATE(T)                                             \
  template Tensor from_data<T>(const T*, const Shape&, Device, bool); \
  template Tensor from_vector<T>(const std::vector<T>&, const Shape&, Device, bool);
PG_INSTANTIATE(float)
PG_INSTANTIATE(double)
PG_INSTANTIATE(int64_t)
PG_INSTANTIATE(int32_t)
#undef PG_INSTANTIATE

}  // namespace pg
