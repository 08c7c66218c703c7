// Runs a test function on every available GPU beside the CPU and compares values and gradients:
// the op tests are written once (for the CPU and gradcheck) and reused per device. Without a
// GPU each call counts one skipped check, and the suite ends with one line saying how many.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "helpers.h"
#include "kernels/device_api.h"
#include "polygrad.h"

namespace pgt {

/// Counts device checks that could not run; prints the total once, when the suite exits.
struct DeviceSkips {
  int count = 0;
  ~DeviceSkips() {
    if (count > 0) std::printf("no CUDA device: %d CUDA tests skipped\n", count);
  }
};

inline DeviceSkips& device_skips() {
  static DeviceSkips skips;
  return skips;
}

/// True when a CUDA device can run the checks; otherwise counts one skipped check.
inline bool have_cuda() {
  if (pg::cuda::is_available()) return true;
  ++device_skips().count;
  return false;
}

/// A copy of x on `device` with the same shape, strides and offset (views stay views).
inline pg::Tensor same_layout_on(const pg::Tensor& x, pg::Device device) {
  if (!x.defined()) return x;
  int64_t extent = x.offset() + 1;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.size(d) == 0) return pg::empty(x.shape(), {x.dtype(), device});
    extent += (x.size(d) - 1) * x.strides()[d];
  }
  pg::Tensor flat = x.detach().as_strided({extent}, {1}, 0).to(device);
  return flat.as_strided(x.shape(), x.strides(), x.offset()).detach();
}

/// The device a checked function is being run on (the CPU outside check_on_devices).
inline pg::Device& current_device() {
  static pg::Device device = pg::Device::cpu();
  return device;
}

/// A constant captured by a checked function, on the device the function now runs on.
inline pg::Tensor here(const pg::Tensor& t) {
  return current_device().is_cpu() ? t : same_layout_on(t, current_device());
}

/// Tolerance of a CPU-vs-GPU comparison: both sides round differently (FMA, summation order).
inline double device_tolerance(pg::DType dt) { return dt == pg::DType::F64 ? 1e-10 : 2e-5; }

/// fn on the CPU inputs and on same-layout GPU copies: outputs and the gradients of every input
/// that requires grad must agree. The upstream gradient is a fixed pseudo-random tensor.
inline void check_on_devices(const std::function<pg::Tensor(const pg::TensorList&)>& fn,
                             const pg::TensorList& inputs, const std::string& label) {
  if (!have_cuda()) return;
  INFO("device check: " << label);
  pg::Device gpu = pg::Device::cuda(0);
  pg::TensorList cpu_in, gpu_in, cpu_leaves, gpu_leaves;
  for (const pg::Tensor& x : inputs) {
    pg::Tensor c = x.defined() ? x.detach() : x, g = same_layout_on(x, gpu);
    if (x.defined() && x.requires_grad()) {
      c.requires_grad_(true);
      g.requires_grad_(true);
      cpu_leaves.push_back(c);
      gpu_leaves.push_back(g);
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  pg::Tensor yc = fn(cpu_in);
  current_device() = gpu;
  pg::Tensor yg;
  try {
    yg = fn(gpu_in);
  } catch (...) {
    current_device() = pg::Device::cpu();
    throw;
  }
  current_device() = pg::Device::cpu();
  REQUIRE(yg.device() == gpu);
  REQUIRE(yc.shape() == yg.shape());
  double tol = device_tolerance(yc.dtype());
  CHECK_MESSAGE(max_rel_diff_strict(yg, yc) <= tol,
                "forward differs: ", max_rel_diff_strict(yg, yc));
  if (cpu_leaves.empty() || !yc.requires_grad()) return;
  pg::Generator gen(7);
  pg::Tensor w = pg::randn(yc.shape(), {yc.dtype()}, &gen);
  auto gc = pg::grad(yc, cpu_leaves, w);
  auto gg = pg::grad(yg, gpu_leaves, w.to(gpu));
  for (size_t i = 0; i < gc.size(); ++i) {
    INFO("gradient of input " << i);
    REQUIRE(gc[i].defined() == gg[i].defined());
    if (gc[i].defined())
      CHECK_MESSAGE(max_rel_diff_strict(gg[i], gc[i]) <= tol,
                    "gradient differs: ", max_rel_diff_strict(gg[i], gc[i]));
  }
}

}  // namespace pgt
