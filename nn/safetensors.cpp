// safetensors: an 8-byte little-endian header length N, N bytes of JSON header
// ({"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [begin, end]}}), then the
// data buffer with every tensor row-major, little-endian, at its offsets.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "kernels/factory.h"

namespace pg {

// Tensors are copied to and from the file byte for byte.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

namespace {

namespace fs = std::filesystem;

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
    case DType::BF16:
      return "BF16";
  }
  return "?";
}

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: shift the mantissa up until its leading 1 becomes implicit
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
  return std::bit_cast<float>(bits);
}

// Writes all of [data, data + n) to fd; false (errno set) on failure.
bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The header and host copies of the tensors, in name order.
std::string make_header(const std::string& path, const StateDict& tensors,
                        const std::map<std::string, std::string>& metadata,
                        std::vector<Tensor>& host) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    PG_CHECK(t.defined(), path, "tensor '", name, "' is undefined");
    PG_CHECK(name != "__metadata__", path, "'__metadata__' is reserved and cannot name a tensor");
    Tensor c = t.detach().to(Device::cpu()).contiguous();
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", st_dtype(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    host.push_back(c);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("tensor names and metadata must be valid UTF-8: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  return text;
}

// Temporary files of saves to `target` from this host: "<name>.tmp.<host>.<pid>.<n>". The
// host keeps processes of other machines (a shared file system) out of the sweep below.
std::string temporary_prefix(const fs::path& target) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  return target.filename().string() + ".tmp." + host + ".";
}

// A process killed while saving leaves its temporary file behind: the next save to the same
// path removes those whose process on this host no longer exists.
void remove_stale_temporaries(const fs::path& target, const std::string& prefix) {
  std::error_code ec;
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    std::error_code ignored;
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      fs::remove(it->path(), ignored);
  }
}

}  // namespace

void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<Tensor> host;
  std::string text = make_header(path, tensors, metadata, host);
  std::error_code ec;
  PG_CHECK(!fs::is_directory(path, ec), path, "is a directory; cannot write a safetensors file");
  // A name unique per process and call, so concurrent saves never share a temporary file.
  static std::atomic<uint64_t> counter{0};
  const fs::path target(path);
  const std::string prefix = temporary_prefix(target);
  remove_stale_temporaries(target, prefix);
  const fs::path tmp = target.parent_path() /
                       (prefix + std::to_string(::getpid()) + "." + std::to_string(counter++));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  PG_CHECK(fd >= 0, path, "cannot create the temporary file ", tmp.string(), ": ",
           std::strerror(errno), "; any previous file at this path is unchanged");
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(text.size() >> (8 * i));
  bool ok = write_all(fd, len, 8) && write_all(fd, text.data(), text.size());
  for (size_t i = 0; ok && i < host.size(); ++i)
    ok = write_all(fd, host[i].raw_data(), host[i].numel() * dtype_size(host[i].dtype()));
  ok = ok && ::fsync(fd) == 0;
  int err = ok ? 0 : errno;
  if (::close(fd) != 0 && ok) ok = false, err = errno;
  if (ok) {
    fs::rename(tmp, target, ec);
    if (ec) ok = false, err = ec.value();
  }
  if (!ok) {
    fs::remove(tmp, ec);
    throw Error(path, std::string("writing the file failed (") + std::strerror(err) +
                          "); any previous file at this path is unchanged");
  }
  // Makes the rename itself durable; best effort, the data is already safe.
  int dir = ::open(target.parent_path().empty() ? "." : target.parent_path().c_str(),
                   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

namespace {

// Where one tensor lies in the data buffer and how it is stored.
struct Entry {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, bytes = 0;
};

// Validates one header entry against a data buffer of data_size bytes.
Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& e,
                  uint64_t data_size) {
  auto bad = [&](const std::string& why) { return Error(path, "tensor '" + name + "': " + why); };
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    throw bad("entry needs dtype, shape and data_offsets");
  Entry out{name, "", {}, 0, 0};
  if (!e["dtype"].is_string()) throw bad("dtype must be a string");
  out.dtype = e["dtype"].get<std::string>();
  if (!e["shape"].is_array()) throw bad("shape must be an array");
  for (auto& d : e["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      throw bad("shape holds a negative or non-integer size");
    out.shape.push_back(d.get<int64_t>());
  }
  if (out.shape.size() > static_cast<size_t>(kMaxRank))
    throw bad("rank " + std::to_string(out.shape.size()) + " is above the maximum " +
              std::to_string(kMaxRank));
  auto& offs = e["data_offsets"];
  if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
      !offs[1].is_number_unsigned())
    throw bad("data_offsets must be two non-negative integers");
  uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
  if (begin > end || end > data_size)
    throw bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
              "] lie outside the " + std::to_string(data_size) +
              "-byte data section (truncated file?)");
  uint64_t elem;
  if (out.dtype == "F32" || out.dtype == "I32")
    elem = 4;
  else if (out.dtype == "F64" || out.dtype == "I64")
    elem = 8;
  else if (out.dtype == "BF16" || out.dtype == "F16")
    elem = 2;
  else
    throw bad("unsupported dtype '" + out.dtype +
              "' (supported: F32, F64, I64, I32, and BF16, F16 loaded as F32)");
  // numel is compared against the span without multiplying it up, so no size can overflow.
  uint64_t span = end - begin, numel = 1;
  for (int64_t d : out.shape) {
    if (d != 0 && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(d))
      throw bad("shape " + shape_str(out.shape) + " is too large");
    numel *= static_cast<uint64_t>(d);
  }
  if (span % elem != 0 || numel != span / elem)
    throw bad("shape " + shape_str(out.shape) + " of " + out.dtype + " needs " +
              (numel <= UINT64_MAX / elem ? std::to_string(numel * elem) : "more") +
              " bytes but data_offsets span " + std::to_string(span));
  out.begin = begin;
  out.bytes = span;
  return out;
}

// The safetensors rule (as the reference implementation enforces it): sorted by offset, the
// tensors tile the data section exactly, with no overlap, no gap and nothing after the last.
void check_tiling(const std::string& path, std::vector<Entry> entries, uint64_t data_size) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.bytes < b.bytes;
  });
  uint64_t at = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    auto range = [](const Entry& x) {
      return "'" + x.name + "' [" + std::to_string(x.begin) + ", " +
             std::to_string(x.begin + x.bytes) + "]";
    };
    PG_CHECK(e.begin >= at, path, "tensors ", range(*prev), " and ", range(e),
             " overlap in the data section");
    PG_CHECK(e.begin == at, path, "data_offsets leave a gap of ", e.begin - at, " bytes before ",
             range(e), prev ? " (after " + range(*prev) + ")" : std::string(" (at the start)"),
             "; the tensors must tile the data section");
    at = e.begin + e.bytes;
    prev = &e;
  }
  PG_CHECK(at == data_size, path, "the data section holds ", data_size - at,
           " bytes after the last tensor",
           prev ? " '" + prev->name + "' (ends at " + std::to_string(at) + ")" : std::string(),
           "; the tensors must tile the data section");
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  PG_CHECK(fs::exists(st), path, "cannot open safetensors file: no such file");
  PG_CHECK(fs::is_regular_file(st), path, "cannot open safetensors file: not a regular file");
  uint64_t size = fs::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  PG_CHECK(!ec && in.is_open(), path, "cannot open safetensors file: ", std::strerror(errno));
  // Reads exactly n bytes at `at`; a shorter read means the file changed under us.
  auto read_at = [&](uint64_t at, void* dst, uint64_t n) {
    in.seekg(static_cast<std::streamoff>(at));
    in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    PG_CHECK(static_cast<uint64_t>(in.gcount()) == n, path, "read of ", n, " bytes at offset ", at,
             " failed (file truncated while reading?)");
  };
  PG_CHECK(size >= 8, path, "is ", size, " bytes long, too short for a safetensors file");
  unsigned char len[8];
  read_at(0, len, 8);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(len[i]) << (8 * i);
  PG_CHECK(hlen <= kMaxHeader && hlen <= size - 8, path, "header length ", hlen,
           " does not fit a file of ", size, " bytes (limit ", kMaxHeader, ")");
  std::string text(hlen, '\0');
  read_at(8, text.data(), hlen);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(path, std::string("header is not valid JSON: ") + e.what());
  }
  PG_CHECK(header.is_object(), path, "header is not a JSON object");
  const uint64_t data_start = 8 + hlen, data_size = size - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  // Every entry is checked before any data is read.
  for (auto& [name, entry] : header.items()) {
    if (name != "__metadata__") {
      entries.push_back(parse_entry(path, name, entry, data_size));
      continue;
    }
    PG_CHECK(entry.is_object(), path, "__metadata__ must be an object of strings");
    for (auto& [k, v] : entry.items()) {
      PG_CHECK(v.is_string(), path, "__metadata__ value of '", k, "' is not a string");
      out.metadata[k] = v.get<std::string>();
    }
  }
  check_tiling(path, entries, data_size);
  for (const Entry& e : entries) {
    bool half = e.dtype == "BF16" || e.dtype == "F16";
    DType dt = half               ? DType::F32
               : e.dtype == "F32" ? DType::F32
               : e.dtype == "F64" ? DType::F64
               : e.dtype == "I64" ? DType::I64
                                  : DType::I32;
    Tensor t = empty(e.shape, {dt});
    if (!half) {
      read_at(data_start + e.begin, t.raw_data(), e.bytes);
    } else {
      std::vector<uint16_t> words(e.bytes / 2);
      read_at(data_start + e.begin, words.data(), e.bytes);
      float* p = t.data<float>();
      if (e.dtype == "BF16")
        for (size_t i = 0; i < words.size(); ++i) p[i] = bf16_to_float(words[i]);
      else
        for (size_t i = 0; i < words.size(); ++i) p[i] = half_to_float(words[i]);
    }
    out.tensors[e.name] = t;
  }
  return out;
}

}  // namespace pg
