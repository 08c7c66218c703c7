// Where a tensor's storage lives.
#pragma once
#include <string>

namespace pg {

/// Kind of device.
enum class DeviceType { CPU, CUDA };

/// A device: type plus index (CUDA ordinal; 0 for the CPU).
struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  /// The host CPU.
  static Device cpu() { return {DeviceType::CPU, 0}; }
  /// CUDA device number `i`.
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
  /// "cpu" or "cuda:N".
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

}  // namespace pg
