// The safetensors format: round trips of every dtype and layout, the on-disk layout checked by
// an independent reader, BF16/F16 files written byte by byte, atomic writes that leave the
// previous file intact, and every kind of corrupt file refused with a pg::Error naming the
// file (and the tensor).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "helpers.h"
#include "nn/safetensors.h"
#include "scratch_files.h"

using namespace pg;
namespace fs = std::filesystem;

namespace {

// Little-endian bytes of 16-bit words.
std::string words16(const std::vector<uint16_t>& w) {
  std::string s;
  for (uint16_t v : w) {
    s.push_back(static_cast<char>(v & 0xff));
    s.push_back(static_cast<char>(v >> 8));
  }
  return s;
}

// Files in `dir` whose name contains ".tmp".
std::vector<std::string> temp_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos)
      out.push_back(e.path().string());
  return out;
}

// Raw bytes of a tensor's elements in row-major order (the contiguous copy).
std::string raw_bytes(const Tensor& t) {
  Tensor c = t.contiguous();
  if (c.numel() == 0) return "";
  return std::string(static_cast<const char*>(c.raw_data()),
                     static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
}

}  // namespace

TEST_CASE("round trip: every dtype, 0-d, zero-size and transposed tensors, with metadata") {
  fs::path d = pgt::temp_dir("safetensors", "roundtrip");
  Generator g(1);
  Tensor base = randn({3, 4}, {}, &g);
  Tensor transposed = base.transpose(0, 1);
  REQUIRE_FALSE(transposed.is_contiguous());
  const double inf = std::numeric_limits<double>::infinity();
  StateDict t{
      {"f32.matrix", randn({2, 3, 4}, {}, &g)},
      {"f32.transposed", transposed},
      {"f32.scalar", scalar_tensor(-2.5)},
      {"f32.empty", zeros({0, 3})},
      {"f64.values", from_vector<double>({1.0 / 3, -0.0, 1e-310, -inf, 1e300}, {5})},
      {"f64.scalar", scalar_tensor(std::acos(-1.0), {DType::F64})},
      {"i64.extremes", from_vector<int64_t>({std::numeric_limits<int64_t>::min(), -1, 0,
                                             std::numeric_limits<int64_t>::max()},
                                            {2, 2})},
      {"i64.empty", zeros({4, 0}, {DType::I64})},
      {"i32.values", from_vector<int32_t>({-7, 2147483647, -2147483647 - 1}, {3, 1})},
      {"i32.scalar", scalar_tensor(42, {DType::I32})},
      // A stepped view of a larger tensor.
      {"f64.stepped", randn({2, 9}, {DType::F64}, &g).slice(1, 1, 9, 3)},
  };
  std::map<std::string, std::string> meta{{"note", "hello"},
                                          {"json", R"({"a": [1, 2], "q": "\"quoted\""})"},
                                          {"unicode", "λ → ∞\nsecond line"},
                                          {"empty", ""}};
  std::string path = (d / "all.safetensors").string();
  save_safetensors(path, t, meta);
  CHECK(temp_files(d).empty());
  SafetensorsFile back = load_safetensors(path);
  CHECK(back.metadata == meta);
  REQUIRE(back.tensors.size() == t.size());
  for (auto& [name, v] : t) {
    CAPTURE(name);
    REQUIRE(back.tensors.count(name));
    const Tensor& b = back.tensors.at(name);
    CHECK(b.shape() == v.shape());
    CHECK(b.dtype() == v.dtype());
    CHECK(b.is_contiguous());
    CHECK(b.numel() == v.numel());
    // Bit-exact (covers -0.0, subnormals, infinities and the integer extremes).
    CHECK(raw_bytes(b) == raw_bytes(v));
  }
  CHECK(back.tensors.at("f32.scalar").dim() == 0);
  CHECK(back.tensors.at("f32.scalar").item() == -2.5);
  CHECK(back.tensors.at("i32.scalar").item() == 42);

  // No metadata: the loader gives an empty map; an empty state dict is a valid file too.
  save_safetensors((d / "nometa.safetensors").string(), {{"a", ones({2})}});
  CHECK(load_safetensors((d / "nometa.safetensors").string()).metadata.empty());
  save_safetensors((d / "nothing.safetensors").string(), {});
  SafetensorsFile nothing = load_safetensors((d / "nothing.safetensors").string());
  CHECK(nothing.tensors.empty());
  // Saving over an existing file replaces it.
  save_safetensors(path, {{"only", ones({1})}});
  CHECK(load_safetensors(path).tensors.size() == 1);
  CHECK(temp_files(d).empty());
}

TEST_CASE("on-disk layout: little-endian length, JSON header, packed data (independent reader)") {
  fs::path d = pgt::temp_dir("safetensors", "layout");
  Tensor a = from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -1.0f}, {2, 3});
  Tensor b = from_vector<int64_t>({5, -6}, {2});
  std::string path = (d / "layout.safetensors").string();
  save_safetensors(path, {{"b", b}, {"a", a.transpose(0, 1)}}, {{"k", "v"}});
  std::string bytes = pgt::read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  REQUIRE(8 + n <= bytes.size());
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  CHECK(header["__metadata__"]["k"] == "v");
  CHECK(header["a"]["dtype"] == "F32");
  CHECK(header["a"]["shape"] == nlohmann::json::array({3, 2}));
  CHECK(header["b"]["dtype"] == "I64");
  CHECK(header["b"]["shape"] == nlohmann::json::array({2}));
  std::string data = bytes.substr(8 + n);
  uint64_t a0 = header["a"]["data_offsets"][0], a1 = header["a"]["data_offsets"][1];
  uint64_t b0 = header["b"]["data_offsets"][0], b1 = header["b"]["data_offsets"][1];
  CHECK(a1 - a0 == 24);
  CHECK(b1 - b0 == 16);
  // Tensors are packed without gaps and fill the data section exactly.
  CHECK(std::min(a0, b0) == 0);
  CHECK(std::max(a1, b1) == data.size());
  CHECK((a1 == b0 || b1 == a0));
  // The transposed tensor is stored in row-major order of its logical (transposed) shape.
  std::vector<float> av(6);
  std::memcpy(av.data(), data.data() + a0, 24);
  CHECK(av == std::vector<float>{1.5f, 0.0f, -2.0f, 7.0f, 3.25f, -1.0f});
  std::vector<int64_t> bv(2);
  std::memcpy(bv.data(), data.data() + b0, 16);
  CHECK(bv == std::vector<int64_t>{5, -6});
}

TEST_CASE("BF16 and F16 files written byte by byte load as f32 with the right values") {
  fs::path d = pgt::temp_dir("safetensors", "half");
  // F16: 1, -2.5, the smallest subnormal 2^-24, the largest subnormal 1023 * 2^-24, a negative
  // subnormal -2^-15, the largest finite 65504, -0, +inf, 0.333251953125, -1/1024.
  std::vector<uint16_t> f16 = {0x3c00, 0xc100, 0x0001, 0x03ff, 0x8200,
                               0x7bff, 0x8000, 0x7c00, 0x3555, 0x9400};
  std::vector<float> f16_want = {1.0f,
                                 -2.5f,
                                 std::ldexp(1.0f, -24),
                                 1023 * std::ldexp(1.0f, -24),
                                 -std::ldexp(1.0f, -15),
                                 65504.0f,
                                 -0.0f,
                                 std::numeric_limits<float>::infinity(),
                                 0.333251953125f,
                                 -1.0f / 1024};
  // BF16 [2, 3]: 1, -3, 0.15625, -123.5, a subnormal (2^-133), -inf.
  std::vector<uint16_t> bf16 = {0x3f80, 0xc040, 0x3e20, 0xc2f7, 0x0001, 0xff80};
  std::vector<float> bf16_want = {1.0f,
                                  -3.0f,
                                  0.15625f,
                                  -123.5f,
                                  std::ldexp(1.0f, -133),
                                  -std::numeric_limits<float>::infinity()};
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("h":{"dtype":"F16","shape":[10],"data_offsets":[0,20]},)"
                       R"("b":{"dtype":"BF16","shape":[2,3],"data_offsets":[20,32]},)"
                       R"("s":{"dtype":"F16","shape":[],"data_offsets":[32,34]}})";
  pgt::write_bytes(d / "half.safetensors",
                   pgt::st_file(header, words16(f16) + words16(bf16) + words16({0xbc00})));
  SafetensorsFile f = load_safetensors((d / "half.safetensors").string());
  CHECK(f.metadata.at("format") == "pt");
  const Tensor& h = f.tensors.at("h");
  CHECK(h.dtype() == DType::F32);
  CHECK(h.shape() == Shape({10}));
  auto hv = h.to_vector<float>();
  for (size_t i = 0; i < f16_want.size(); ++i) {
    CAPTURE(i);
    CHECK(hv[i] == f16_want[i]);
    CHECK(std::signbit(hv[i]) == std::signbit(f16_want[i]));
  }
  const Tensor& b = f.tensors.at("b");
  CHECK(b.dtype() == DType::F32);
  CHECK(b.shape() == Shape({2, 3}));
  CHECK(b.to_vector<float>() == bf16_want);
  const Tensor& s = f.tensors.at("s");
  CHECK(s.dim() == 0);
  CHECK(s.item() == -1.0);
  // F16 NaN stays NaN.
  pgt::write_bytes(
      d / "nan.safetensors",
      pgt::st_file(R"({"n":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})", words16({0x7e00})));
  CHECK(std::isnan(load_safetensors((d / "nan.safetensors").string()).tensors.at("n").item()));
}

TEST_CASE("atomic write: a failed write raises, keeps the previous file, leaves no temp file") {
  fs::path d = pgt::temp_dir("safetensors", "atomic");
  std::string path = (d / "model.safetensors").string();
  save_safetensors(path, {{"a", ones({4})}}, {{"version", "1"}});
  const std::string before = pgt::read_bytes(path);
  StateDict next{{"a", zeros({4})}, {"b", ones({3})}};

  // The target directory does not exist.
  CHECK_PG_ERROR(save_safetensors((d / "no" / "such" / "x.safetensors").string(), next),
                 "x.safetensors");
  CHECK_FALSE(fs::exists(d / "no"));
  // The target path is a directory: it stays a directory.
  fs::create_directories(d / "isdir.safetensors");
  CHECK_PG_ERROR(save_safetensors((d / "isdir.safetensors").string(), next), "isdir.safetensors");
  CHECK(fs::is_directory(d / "isdir.safetensors"));
  CHECK(temp_files(d).empty());

  // The temporary file cannot be created (no file descriptor left: the open-files limit is
  // set to the lowest free descriptor, which works even for root): the old file stays.
  {
    struct rlimit old_limit;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old_limit) == 0);
    int lowest_free = ::dup(0);
    REQUIRE(lowest_free >= 0);
    ::close(lowest_free);
    struct rlimit none_left = old_limit;
    none_left.rlim_cur = static_cast<rlim_t>(lowest_free);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &none_left) == 0);
    std::string msg = pgt::error_message([&] { save_safetensors(path, next); });
    setrlimit(RLIMIT_NOFILE, &old_limit);
    CHECK(msg.find("model.safetensors") != std::string::npos);
    CHECK(msg.rfind("<", 0) == std::string::npos);  // a pg::Error, not another exception
  }
  CHECK(pgt::read_bytes(path) == before);
  CHECK(temp_files(d).empty());

  // The disk "fills up" in the middle of the data (a file-size limit): the partial temporary
  // file is removed and the old file is untouched.
  {
    struct rlimit old_limit;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    auto old_handler = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old_limit;
    small.rlim_cur = 4096;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string msg = pgt::error_message([&] {
      save_safetensors(path, {{"big", ones({1 << 16})}});
    });
    setrlimit(RLIMIT_FSIZE, &old_limit);
    signal(SIGXFSZ, old_handler);
    CHECK(msg.find("model.safetensors") != std::string::npos);
    CHECK(msg.find("<no exception>") == std::string::npos);
    CHECK(msg.find("<not a pg::Error") == std::string::npos);
  }
  CHECK(pgt::read_bytes(path) == before);
  CHECK(temp_files(d).empty());
  CHECK(load_safetensors(path).metadata.at("version") == "1");

  // Bad arguments fail before anything is written.
  CHECK_PG_ERROR(save_safetensors(path, {{"u", Tensor()}}), "model.safetensors", "'u'");
  CHECK_PG_ERROR(save_safetensors(path, {{"__metadata__", ones({1})}}), "__metadata__");
  CHECK(pgt::read_bytes(path) == before);
  // A successful write replaces the file.
  save_safetensors(path, next);
  CHECK(load_safetensors(path).tensors.size() == 2);
  CHECK(temp_files(d).empty());
}

TEST_CASE("a save removes the temporary files of saves killed on this host, and only those") {
  fs::path d = pgt::temp_dir("safetensors", "stale");
  std::string path = (d / "ckpt.safetensors").string();
  save_safetensors(path, {{"a", ones({2})}});
  // What a save killed half-way leaves: "<name>.tmp.<host>.<pid>.<n>" of a process now gone.
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(0);
  REQUIRE(waitpid(child, nullptr, 0) == child);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  const std::string prefix = "ckpt.safetensors.tmp." + std::string(host) + ".";
  const fs::path dead = d / (prefix + std::to_string(child) + ".0");
  const fs::path alive = d / (prefix + std::to_string(getppid()) + ".0");  // a live process
  const fs::path other_host =
      d / ("ckpt.safetensors.tmp.elsewhere." + std::to_string(child) + ".0");
  const fs::path other_file =
      d / ("other.safetensors.tmp." + std::string(host) + "." + std::to_string(child) + ".0");
  for (const auto& p : {dead, alive, other_host, other_file}) std::ofstream(p) << "partial";
  save_safetensors(path, {{"a", zeros({2})}});
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(alive));
  CHECK(fs::exists(other_host));
  CHECK(fs::exists(other_file));
  CHECK(load_safetensors(path).tensors.at("a").to_vector<float>() == std::vector<float>{0, 0});
}

TEST_CASE("corrupt files are refused with a pg::Error naming the file (and the tensor)") {
  fs::path d = pgt::temp_dir("safetensors", "corrupt");
  const std::string data8(8, '\0');
  auto entry = [](const std::string& name, const std::string& body) {
    return "{\"" + name + "\":" + body + "}";
  };
  struct Bad {
    std::string file;  // also the name the message must contain
    std::string bytes;
    std::string tensor;  // "" when the problem is not a tensor's
    const char* expect;
  };
  std::string huge_len(8, '\0');
  huge_len[3] = 1;  // 2^24 > file size
  std::string giant_len(8, '\xff');
  std::vector<Bad> cases = {
      {"empty_file", "", "", "too short"},
      {"seven_bytes", "abcdefg", "", "too short"},
      {"header_len_beyond_file", huge_len + "{}", "", "header length"},
      {"header_len_giant", giant_len + "{}", "", "header length"},
      {"header_not_json", pgt::st_file("{not json", data8), "", "not valid JSON"},
      {"header_cut_json", pgt::st_file(R"({"w":{"dtype":"F32")", data8), "", "not valid JSON"},
      {"header_array", pgt::st_file("[1, 2]", data8), "", "not a JSON object"},
      {"header_string", pgt::st_file(R"("hello")", data8), "", "not a JSON object"},
      {"entry_not_object", pgt::st_file(entry("w_scalar", "3"), data8), "w_scalar",
       "needs dtype, shape and data_offsets"},
      {"no_dtype", pgt::st_file(entry("w_nodtype", R"({"shape":[2],"data_offsets":[0,8]})"), data8),
       "w_nodtype", "dtype"},
      {"no_shape",
       pgt::st_file(entry("w_noshape", R"({"dtype":"F32","data_offsets":[0,8]})"), data8),
       "w_noshape", "shape"},
      {"no_offsets", pgt::st_file(entry("w_nooffs", R"({"dtype":"F32","shape":[2]})"), data8),
       "w_nooffs", "data_offsets"},
      {"dtype_number",
       pgt::st_file(entry("w_dtnum", R"({"dtype":7,"shape":[2],"data_offsets":[0,8]})"), data8),
       "w_dtnum", "dtype must be a string"},
      {"shape_string",
       pgt::st_file(entry("w_shstr", R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})"), data8),
       "w_shstr", "shape must be an array"},
      {"shape_float",
       pgt::st_file(entry("w_shflt", R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})"),
                    data8),
       "w_shflt", "non-integer"},
      {"shape_holds_string",
       pgt::st_file(entry("w_shs", R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), data8),
       "w_shs", "non-integer"},
      {"offsets_object",
       pgt::st_file(entry("w_offobj", R"({"dtype":"F32","shape":[2],"data_offsets":{"a":0}})"),
                    data8),
       "w_offobj", "data_offsets"},
      {"offsets_three",
       pgt::st_file(entry("w_off3", R"({"dtype":"F32","shape":[2],"data_offsets":[0,4,8]})"),
                    data8),
       "w_off3", "data_offsets"},
      {"offsets_negative",
       pgt::st_file(entry("w_offneg", R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"),
                    data8),
       "w_offneg", "data_offsets"},
      {"offsets_strings",
       pgt::st_file(entry("w_offs", R"({"dtype":"F32","shape":[2],"data_offsets":["0","8"]})"),
                    data8),
       "w_offs", "data_offsets"},
      {"unknown_dtype",
       pgt::st_file(entry("w_q7", R"({"dtype":"Q7","shape":[2],"data_offsets":[0,8]})"), data8),
       "w_q7", "unsupported dtype 'Q7'"},
      {"negative_dim",
       pgt::st_file(entry("w_neg", R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), data8),
       "w_neg", "negative"},
      {"begin_after_end",
       pgt::st_file(entry("w_order", R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), data8),
       "w_order", "data_offsets [8, 0]"},
      {"end_beyond_data",
       pgt::st_file(entry("w_beyond", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"),
                    data8),
       "w_beyond", "outside the 8-byte data section"},
      {"size_mismatch",
       pgt::st_file(entry("w_size", R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), data8),
       "w_size", "needs 12 bytes"},
      {"size_mismatch_f16",
       pgt::st_file(entry("w_size16", R"({"dtype":"F16","shape":[2,2],"data_offsets":[0,4]})"),
                    data8),
       "w_size16", "needs 8 bytes"},
      {"shape_overflow",
       pgt::st_file(
           entry("w_huge",
                 R"({"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]})"),
           data8),
       "w_huge", "too large"},
      {"rank_too_high",
       pgt::st_file(
           entry("w_rank", R"({"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]})"),
           data8),
       "w_rank", "rank"},
      {"metadata_not_object", pgt::st_file(R"({"__metadata__":[1]})", ""), "", "__metadata__"},
      {"metadata_not_string", pgt::st_file(R"({"__metadata__":{"epoch":3}})", ""), "epoch",
       "not a string"},
  };
  for (const Bad& c : cases) {
    CAPTURE(c.file);
    fs::path p = d / (c.file + ".safetensors");
    pgt::write_bytes(p, c.bytes);
    std::string msg = pgt::error_message([&] { load_safetensors(p.string()); });
    CHECK_MESSAGE(msg.find(p.string()) != std::string::npos, msg);
    if (!c.tensor.empty()) CHECK_MESSAGE(msg.find("'" + c.tensor + "'") != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(c.expect) != std::string::npos, msg);
  }

  // A missing file, and a directory given as a file.
  CHECK_PG_ERROR(load_safetensors((d / "missing.safetensors").string()), "missing.safetensors",
                 "cannot open");
  fs::create_directories(d / "dir.safetensors");
  CHECK_PG_ERROR(load_safetensors((d / "dir.safetensors").string()), "dir.safetensors");

  // A good file cut short: in the data (the last tensor is named) and in the header.
  std::string good = (d / "good.safetensors").string();
  save_safetensors(good, {{"first", ones({16})}, {"second", ones({16})}});
  CHECK_NOTHROW(load_safetensors(good));
  std::string bytes = pgt::read_bytes(good);
  pgt::write_bytes(d / "cut_data.safetensors", bytes.substr(0, bytes.size() - 4));
  CHECK_PG_ERROR(load_safetensors((d / "cut_data.safetensors").string()), "cut_data.safetensors",
                 "'second'", "truncated");
  pgt::write_bytes(d / "cut_header.safetensors", bytes.substr(0, 20));
  CHECK_PG_ERROR(load_safetensors((d / "cut_header.safetensors").string()),
                 "cut_header.safetensors", "header length");
}

TEST_CASE("the committed PyTorch-written fixture loads, with its metadata") {
  std::string path = std::string(PG_FIXTURE_DIR) + "/transformer_block.safetensors";
  SafetensorsFile f = load_safetensors(path);
  REQUIRE(f.metadata.count("generator"));
  CHECK(f.metadata.at("generator").find("make_fixtures") != std::string::npos);
  REQUIRE(f.metadata.count("config"));
  // x and g, 12 parameters, and per policy the output and the gradients of x and parameters.
  const size_t policies = nlohmann::json::parse(f.metadata.at("config")).at("policies").size();
  CHECK(policies >= 4);
  CHECK(f.tensors.size() == 2 + 12 + policies * (2 + 12));
  REQUIRE(f.tensors.count("x"));
  CHECK(f.tensors.at("x").dtype() == DType::F64);
  CHECK(f.tensors.at("x").shape() == Shape({2, 5, 8}));
  REQUIRE(f.tensors.count("param.attn.qkv.weight"));
  CHECK(f.tensors.at("param.attn.qkv.weight").shape() == Shape({24, 8}));
  // The loader agrees with an independent reading of the bytes.
  std::string bytes = pgt::read_bytes(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  for (auto& [name, t] : f.tensors) {
    CAPTURE(name);
    uint64_t b = header[name]["data_offsets"][0], e = header[name]["data_offsets"][1];
    CHECK(raw_bytes(t) == bytes.substr(8 + n + b, e - b));
  }
  // Written again by polygrad and read back: the same tensors and metadata.
  fs::path d = pgt::temp_dir("safetensors", "fixture");
  save_safetensors((d / "copy.safetensors").string(), f.tensors, f.metadata);
  SafetensorsFile g = load_safetensors((d / "copy.safetensors").string());
  CHECK(g.metadata == f.metadata);
  for (auto& [name, t] : f.tensors) {
    CAPTURE(name);
    CHECK(raw_bytes(g.tensors.at(name)) == raw_bytes(t));
  }
}

TEST_CASE(
    "PyTorch-written fixture (tools/reference/make_safetensors_fixture.py) loads with its values") {
  SafetensorsFile f = load_safetensors(std::string(PG_FIXTURE_DIR) + "/torch_small.safetensors");
  CHECK(f.metadata.at("format") == "pt");
  // The script's path when the committed file was made (tools/reference/ since).
  CHECK(f.metadata.at("generator").ends_with("make_safetensors_fixture.py"));
  REQUIRE(f.tensors.size() == 4);
  const Tensor& w = f.tensors.at("linear.weight");  // arange(6) / 2 - 1
  CHECK(w.dtype() == DType::F32);
  CHECK(w.shape() == Shape({2, 3}));
  CHECK(w.to_vector<float>() == std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f});
  const Tensor& ids = f.tensors.at("token_ids");  // arange(4) * 10^12 - 3
  CHECK(ids.dtype() == DType::I64);
  CHECK(ids.shape() == Shape({2, 2}));
  CHECK(ids.to_vector<int64_t>() ==
        std::vector<int64_t>{-3, 999999999997, 1999999999997, 2999999999997});
  const Tensor& inv = f.tensors.at("inv");  // 1 / (arange(3) + 1)
  CHECK(inv.dtype() == DType::F64);
  CHECK(inv.to_vector<double>() == std::vector<double>{1.0, 0.5, 1.0 / 3.0});
  const Tensor& temp = f.tensors.at("temperature");
  CHECK(temp.dtype() == DType::F64);
  CHECK(temp.dim() == 0);
  CHECK(temp.item() == 0.7);
}

TEST_CASE("header padding keeps the data 8-byte aligned; offsets in any order") {
  fs::path d = pgt::temp_dir("safetensors", "edge");
  // The header is padded with spaces so the data starts 8-byte aligned, as the reference
  // implementation does.
  for (const char* name : {"a", "ab", "abc", "abcdefgh"}) {
    std::string p = (d / "pad.safetensors").string();
    save_safetensors(p, {{name, ones({1})}});
    std::string bytes = pgt::read_bytes(p);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i)
      n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    CHECK(n % 8 == 0);
    CHECK(bytes.size() == 8 + n + 4);
  }

  // Regions listed in any order are read where their offsets say, zero-size tensors included,
  // as long as they tile the data section.
  std::string data = words16({0x3c00, 0x4000, 0x4200, 0x4400});  // F16 1, 2, 3, 4
  pgt::write_bytes(d / "order.safetensors",
                   pgt::st_file(R"({"late":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},)"
                                R"("early":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                                R"("none":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]}})",
                                data));
  SafetensorsFile f = load_safetensors((d / "order.safetensors").string());
  CHECK(f.tensors.at("late").to_vector<float>() == std::vector<float>{3, 4});
  CHECK(f.tensors.at("early").to_vector<float>() == std::vector<float>{1, 2});
  CHECK(f.tensors.at("none").shape() == Shape({0, 5}));
}

TEST_CASE("tensors must tile the data section: no overlap, no gap, nothing after the last") {
  fs::path d = pgt::temp_dir("safetensors", "tiling");
  const std::string data = words16({0x3c00, 0x4000, 0x4200, 0x4400});  // 8 bytes
  auto load = [&](const std::string& name, const std::string& header, const std::string& bytes) {
    pgt::write_bytes(d / name, pgt::st_file(header, bytes));
    return pgt::error_message([&] { load_safetensors((d / name).string()); });
  };
  auto has = [](const std::string& msg, std::initializer_list<const char*> parts) {
    for (const char* part : parts)
      CHECK_MESSAGE(msg.find(part) != std::string::npos, "missing \"" << part << "\" in " << msg);
  };
  // Overlapping regions (the same bytes read as two tensors).
  has(load("overlap.safetensors",
           R"({"all":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
           R"("mid":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}})",
           data),
      {"overlap.safetensors", "'all' [0, 8]", "'mid' [2, 6]", "overlap"});
  has(load("same.safetensors",
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
           data),
      {"same.safetensors", "'a' [0, 8]", "'b' [0, 8]", "overlap"});
  // A gap between two tensors, and one before the first.
  has(load("gap.safetensors",
           R"({"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},)"
           R"("b":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}})",
           data),
      {"gap.safetensors", "gap of 2 bytes", "'b' [4, 8]", "after 'a' [0, 2]"});
  has(load("late_start.safetensors", R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}})",
           data),
      {"late_start.safetensors", "gap of 4 bytes", "'w' [4, 8]", "at the start"});
  // Bytes after the last tensor, and data without any tensor.
  has(load("tail.safetensors", R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", data),
      {"tail.safetensors", "4 bytes after the last tensor 'w'", "ends at 4"});
  has(load("no_tensors.safetensors", R"({"__metadata__":{"k":"v"}})", data),
      {"no_tensors.safetensors", "8 bytes after the last tensor"});
  // Our writer always tiles: many tensors of mixed dtypes, zero-size ones included.
  std::string p = (d / "ours.safetensors").string();
  save_safetensors(p, {{"a", ones({3})},
                       {"b", zeros({0, 4})},
                       {"c", ones({2, 2}, {DType::F64})},
                       {"d", zeros({5}, {DType::I32})},
                       {"e", zeros({}, {DType::I64})}});
  CHECK(load_safetensors(p).tensors.size() == 5);
  save_safetensors(p, {});
  CHECK(load_safetensors(p).tensors.empty());
}

TEST_CASE("overflowing sizes, odd files, invalid UTF-8") {
  fs::path d = pgt::temp_dir("safetensors", "odd");
  std::string data = words16({0x3c00, 0x4000, 0x4200, 0x4400});  // F16 1, 2, 3, 4

  // A shape whose byte count wraps around 2^64 (2^61 doubles = 2^64 bytes) must not pass as
  // zero bytes.
  pgt::write_bytes(
      d / "wrap.safetensors",
      pgt::st_file(
          R"({"w_wrap":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", ""));
  CHECK_PG_ERROR(load_safetensors((d / "wrap.safetensors").string()), "wrap.safetensors",
                 "'w_wrap'", "data_offsets span 0");
  pgt::write_bytes(
      d / "wrap2.safetensors",
      pgt::st_file(
          R"({"w_wrap2":{"dtype":"F32","shape":[4294967296,1073741824],"data_offsets":[0,8]}})",
          data));
  CHECK_PG_ERROR(load_safetensors((d / "wrap2.safetensors").string()), "wrap2.safetensors",
                 "'w_wrap2'");
  // A span that is not a whole number of elements.
  pgt::write_bytes(
      d / "odd.safetensors",
      pgt::st_file(R"({"w_odd":{"dtype":"F32","shape":[1],"data_offsets":[0,5]}})", data));
  CHECK_PG_ERROR(load_safetensors((d / "odd.safetensors").string()), "odd.safetensors", "'w_odd'",
                 "needs 4 bytes");

  // A FIFO is not read (it would block), a directory is not a file.
  fs::path fifo = d / "pipe.safetensors";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_PG_ERROR(load_safetensors(fifo.string()), "pipe.safetensors", "not a regular file");

  // Names and metadata must be valid UTF-8 (JSON strings); the file is not written.
  std::string p = (d / "utf8.safetensors").string();
  CHECK_PG_ERROR(save_safetensors(p, {{"bad\xff", ones({1})}}), "utf8.safetensors", "UTF-8");
  CHECK_PG_ERROR(save_safetensors(p, {{"ok", ones({1})}}, {{"k", "\xc3"}}), "utf8.safetensors",
                 "UTF-8");
  CHECK_FALSE(fs::exists(p));
  CHECK(temp_files(d).empty());
  // Valid non-ASCII names round-trip.
  save_safetensors(p, {{"poids.é.λ", ones({2})}});
  CHECK(load_safetensors(p).tensors.count("poids.é.λ"));
}
