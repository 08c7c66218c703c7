#include "nn/attention_activation.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

namespace {

// The largest |e| of a poly scale N^e.
constexpr double kMaxScaleExponent = 8;

[[noreturn]] void bad_spec(const std::string& spec, const std::string& why) {
  throw Error("attention activation", "invalid spec '" + spec + "': " + why +
                                          "; valid specs: " + AttentionActivation::valid_specs());
}

// The composite path's element operations on tensors, through autograd ops.
struct TensorMath {
  static Tensor exp(const Tensor& x) { return pg::exp(x); }
  static Tensor sigmoid(const Tensor& x) { return pg::sigmoid(x); }
  static Tensor relu(const Tensor& x) { return pg::relu(x); }
  static Tensor log(const Tensor& x) { return pg::log(x); }
  static Tensor pow(const Tensor& x, double e) { return pg::pow(x, e); }
  static Tensor inv(const Tensor& x) { return pg::pow(x, -1.0); }
  template <typename K>
  static Tensor ipow(const Tensor& x, K k) {
    int p = static_cast<int>(k);
    return p <= 0 ? ones({}, {x.dtype(), x.device()}) : p == 1 ? x : pg::pow(x, p);
  }
};

// Parses an integer or a real number that must fill the whole string.
bool parse_number(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(out);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) parts.push_back(item);
  if (!s.empty() && s.back() == sep) parts.push_back("");
  return parts;
}

}  // namespace

std::string AttentionActivation::valid_specs() {
  std::string names;
  for (AttnActivation a : attn::kBuiltinActivations)
    names += std::string(names.empty() ? "" : ", ") + attn::activation_name(a);
  return names +
         "; poly:P (P in 1..8, e.g. poly:3), poly:p=P,scale=n^E (E in -8..8, e.g. "
         "poly:p=2,scale=n^-0.5); "
         "all but softmax also take n=visible (e.g. relu:n=visible, poly:3,n=visible)";
}

AttentionActivation AttentionActivation::parse(const std::string& spec) {
  AttentionActivation a;
  std::string name = spec, args;
  if (auto colon = spec.find(':'); colon != std::string::npos) {
    name = spec.substr(0, colon);
    args = spec.substr(colon + 1);
    if (args.empty()) bad_spec(spec, "nothing after ':'");
  }
  bool known = false;
  for (AttnActivation k : attn::kBuiltinActivations)
    if (name == attn::activation_name(k)) a.kind_ = k, known = true;
  if (!known) bad_spec(spec, "unknown activation '" + name + "'");
  if (args.empty()) return a;
  if (a.kind_ == Kind::Softmax) bad_spec(spec, "softmax takes no options");
  auto parts = split(args, ',');
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    auto eq = part.find('=');
    // A bare first value of poly is its power: "poly:3" means "poly:p=3".
    bool bare = eq == std::string::npos;
    std::string key = bare ? (i == 0 && a.kind_ == Kind::Poly ? "p" : "") : part.substr(0, eq);
    std::string val = bare ? part : part.substr(eq + 1);
    if (key == "p" && a.kind_ == Kind::Poly) {
      double p;
      if (!parse_number(val, p) || p != std::floor(p) || p < 1 || p > 8)
        bad_spec(spec, "the power must be an integer in 1..8, got '" + val + "'");
      a.power_ = static_cast<int>(p);
    } else if (key == "scale" && a.kind_ == Kind::Poly) {
      if (val.rfind("n^", 0) != 0 || !parse_number(val.substr(2), a.n_exponent_))
        bad_spec(spec, "scale must look like n^-0.5, got '" + val + "'");
      // Beyond this, N^e leaves f32's range for contexts a model can have (16384^8 = 2^112).
      if (!(std::abs(a.n_exponent_) <= kMaxScaleExponent))
        bad_spec(spec, detail::concat("the scale's exponent must be in [-", kMaxScaleExponent, ", ",
                                      kMaxScaleExponent, "], got '", val.substr(2), "'"));
    } else if (key == "n") {
      if (val == "visible")
        a.n_visible_ = true;
      else if (val == "keys")
        a.n_visible_ = false;
      else
        bad_spec(spec, "n must be 'keys' or 'visible', got '" + val + "'");
    } else {
      bad_spec(spec, "unexpected option '" + part + "'");
    }
  }
  return a;
}

AttentionActivation AttentionActivation::custom(std::string name, CustomFn fn) {
  PG_CHECK(fn != nullptr, "attention activation", "custom activation '", name, "' has no function");
  AttentionActivation a;
  a.kind_ = Kind::Custom;
  a.custom_name_ = std::move(name);
  a.custom_ = std::move(fn);
  return a;
}

std::string AttentionActivation::spec() const {
  std::ostringstream os;
  if (kind_ == Kind::Custom) return "custom:" + custom_name_;
  os << attn::activation_name(kind_);
  if (kind_ == Kind::Poly) {
    // Shortest text that reads back as the same double: checkpoints rebuild models from it.
    char e[32];
    auto end = std::to_chars(e, e + sizeof e, n_exponent_).ptr;
    os << ":p=" << power_ << ",scale=n^" << std::string_view(e, end - e);
  }
  if (n_visible_) os << (kind_ == Kind::Poly ? ",n=visible" : ":n=visible");
  return os.str();
}

void AttentionActivation::check_scale(int64_t keys, DType dtype) const {
  if (kind_ != Kind::Poly || keys < 1) return;
  // The extreme row: N = keys (with n=visible, rows see 1..keys keys, and 1^e = 1).
  const double f = std::pow(static_cast<double>(keys), n_exponent_);
  // bf16 has f32's exponent range.
  const bool holds = dtype == DType::F64 ? std::isnormal(f) : std::isnormal(static_cast<float>(f));
  const double held = dtype == DType::F64 ? f : static_cast<double>(static_cast<float>(f));
  PG_CHECK(holds, "attention", "the scale N^e of '", spec(), "' is ", f, " at N = ", keys,
           " keys, which ", dtype_name(dtype), " cannot hold (", held,
           "); use an exponent closer to 0");
}

AttentionParams AttentionActivation::kernel_params(bool causal, double scale) const {
  PG_CHECK(has_fused_kernel(), "attention activation", "custom activation '", custom_name_,
           "' has no fused kernel; use the composite path");
  AttentionParams p;
  p.act = kind_;
  p.power = power_;
  p.n_exponent = n_exponent_;
  p.n_visible = n_visible_;
  p.causal = causal;
  p.scale = scale;
  return p;
}

Tensor AttentionActivation::apply(const Tensor& s, const Tensor& visible) const {
  TensorOptions opts{s.dtype(), s.device()};
  auto times_visible = [&](const Tensor& a) { return visible.defined() ? mul(a, visible) : a; };
  switch (kind_) {
    case Kind::Custom:
      return times_visible(custom_(s));
    case Kind::Softmax: {
      Tensor masked =
          visible.defined()
              ? where(visible, s, full({}, -std::numeric_limits<double>::infinity(), opts))
              : s;
      return softmax(masked, -1);
    }
    default:
      break;
  }
  double keys = static_cast<double>(s.size(-1));
  if (!n_visible_) {  // one N for every row: the row factors are numbers
    auto f = attn::row_factors(kind_, power_, n_exponent_, keys);
    return times_visible(attn::weight<TensorMath>(kind_, power_, s, f.fa));
  }
  // N per row [.., T, 1]: the visible keys, at least 1.
  Tensor count = visible.defined() ? sum(expand(visible, s.shape()).detach(), {-1}, true)
                                   : full({1}, keys, opts);
  Tensor n = where(gt(count, zeros({}, opts)), count, ones({}, opts));
  auto f = attn::row_factors<TensorMath>(kind_, power_, n_exponent_, n);
  return times_visible(attn::weight<TensorMath>(kind_, power_, s, f.fa));
}

}  // namespace pg
