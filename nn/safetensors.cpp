#include "nn/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/factory.h"

namespace pg {

namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit

const char* st_dtype(DType dt) {
  switch (dt) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::I64:
      return "I64";
    case DType::I32:
      return "I32";
  }
  return "?";
}

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400));
      bits = sign | ((127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    PG_CHECK(t.defined(), path, "tensor '", name, "' is undefined");
    PG_CHECK(name != "__metadata__", path, "'__metadata__' is reserved");
    Tensor c = t.detach().to(Device::cpu()).contiguous();
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", st_dtype(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    host.push_back(c);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path tmp = target;
  tmp += ".tmp" + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  PG_CHECK(f != nullptr, path, "cannot create ", tmp.string(), ": ", std::strerror(errno));
  bool ok = true;
  uint64_t n = text.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  ok = ok && std::fwrite(len, 1, 8, f) == 8;
  ok = ok && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (const Tensor& c : host) {
    size_t bytes = static_cast<size_t>(c.numel()) * dtype_size(c.dtype());
    ok = ok && (bytes == 0 || std::fwrite(c.raw_data(), 1, bytes, f) == bytes);
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (ok) fs::rename(tmp, target, ec);
  if (!ok || ec) {
    fs::remove(tmp, ec);
    throw Error(path, "writing the file failed; any previous file at this path is unchanged");
  }
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PG_CHECK(in.good() && !std::filesystem::is_directory(path), path, "cannot open safetensors file");
  in.seekg(0, std::ios::end);
  uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  PG_CHECK(size >= 8, path, "is ", size, " bytes long, too short for a safetensors file");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(len[i]) << (8 * i);
  PG_CHECK(hlen <= kMaxHeader && hlen <= size - 8, path, "header length ", hlen,
           " does not fit a file of ", size, " bytes");
  std::string text(hlen, '\0');
  in.read(text.data(), static_cast<std::streamsize>(hlen));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(path, std::string("header is not valid JSON: ") + e.what());
  }
  PG_CHECK(header.is_object(), path, "header is not a JSON object");
  uint64_t data_start = 8 + hlen, data_size = size - data_start;
  SafetensorsFile out;
  std::vector<char> data(data_size);
  in.read(data.data(), static_cast<std::streamsize>(data_size));
  PG_CHECK(in.good() || data_size == 0, path, "read failed");
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      PG_CHECK(entry.is_object(), path, "__metadata__ must be an object of strings");
      for (auto& [k, v] : entry.items()) {
        PG_CHECK(v.is_string(), path, "__metadata__ value of '", k, "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) { return Error(path, "tensor '" + name + "': " + why); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      throw bad("entry needs dtype, shape and data_offsets");
    if (!entry["dtype"].is_string()) throw bad("dtype must be a string");
    std::string dt = entry["dtype"];
    if (!entry["shape"].is_array()) throw bad("shape must be an array");
    Shape shape;
    for (auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw bad("shape holds a negative or non-integer size");
      shape.push_back(d.get<int64_t>());
    }
    if (static_cast<int>(shape.size()) > kMaxRank)
      throw bad("rank above " + std::to_string(kMaxRank));
    auto& offs = entry["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
        !offs[1].is_number_unsigned())
      throw bad("data_offsets must be two non-negative integers");
    uint64_t begin = offs[0], end = offs[1];
    if (begin > end || end > data_size)
      throw bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                "] lie outside the " + std::to_string(data_size) +
                "-byte data section (truncated file?)");
    size_t elem;
    DType target;
    if (dt == "F32")
      elem = 4, target = DType::F32;
    else if (dt == "F64")
      elem = 8, target = DType::F64;
    else if (dt == "I64")
      elem = 8, target = DType::I64;
    else if (dt == "I32")
      elem = 4, target = DType::I32;
    else if (dt == "BF16" || dt == "F16")
      elem = 2, target = DType::F32;
    else
      throw bad("unsupported dtype '" + dt + "' (supported: F32, F64, I64, I32, BF16, F16)");
    uint64_t numel = 1;
    for (int64_t d : shape) {
      if (d != 0 && numel > (1ull << 62) / static_cast<uint64_t>(d)) throw bad("shape too large");
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * elem != end - begin)
      throw bad("shape " + shape_str(shape) + " " + dt + " needs " + std::to_string(numel * elem) +
                " bytes but data_offsets span " + std::to_string(end - begin));
    Tensor t = empty(shape, {target});
    const char* src = data.data() + begin;
    if (dt == "BF16" || dt == "F16") {
      float* p = t.data<float>();
      for (uint64_t i = 0; i < numel; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        p[i] = dt == "BF16" ? bf16_to_float(h) : half_to_float(h);
      }
    } else if (numel) {
      std::memcpy(t.raw_data(), src, numel * elem);
    }
    out.tensors[name] = t;
  }
  return out;
}

}  // namespace pg
