// Scratch files for the suites that write files and read them back: a fresh directory, whole
// files as bytes, and a safetensors file assembled from its parts.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace pgt {

/// An empty directory TMP/pg_test_<suite>_<name>, emptied first: the suite's own name keeps
/// suites that run at once apart.
inline std::filesystem::path temp_dir(const std::string& suite, const std::string& name) {
  std::filesystem::path d =
      std::filesystem::temp_directory_path() / ("pg_test_" + suite + "_" + name);
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

/// Writes `bytes` as the whole file `p`.
inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

/// The whole file `p` as bytes.
inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A safetensors file: 8-byte little-endian header length, header text, data bytes.
inline std::string st_file(const std::string& header, const std::string& data) {
  std::string s;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return s + header + data;
}

}  // namespace pgt
