#include "nn/attention_activation.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/factory.h"

namespace pg {

namespace {

const char* kValidSpecs =
    "valid specs: softmax, poly:P (P in 1..8, e.g. poly:3), poly:p=P,scale=n^E "
    "(e.g. poly:p=2,scale=n^-0.5), relu, sigmoid; poly, relu and sigmoid also take "
    ",n=visible";

[[noreturn]] void bad_spec(const std::string& spec, const std::string& why) {
  throw Error("attention activation", "invalid spec '" + spec + "': " + why + "; " + kValidSpecs);
}

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

AttentionActivation AttentionActivation::parse(const std::string& spec) {
  AttentionActivation a;
  std::string name = spec, args;
  if (auto colon = spec.find(':'); colon != std::string::npos) {
    name = spec.substr(0, colon);
    args = spec.substr(colon + 1);
    if (args.empty()) bad_spec(spec, "nothing after ':'");
  }
  if (name == "softmax")
    a.kind_ = Kind::Softmax;
  else if (name == "poly")
    a.kind_ = Kind::Poly;
  else if (name == "relu")
    a.kind_ = Kind::Relu;
  else if (name == "sigmoid")
    a.kind_ = Kind::Sigmoid;
  else
    bad_spec(spec, "unknown activation '" + name + "'");
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
  switch (kind_) {
    case Kind::Softmax:
      return "softmax";
    case Kind::Custom:
      return "custom:" + custom_name_;
    case Kind::Poly:
      os << "poly:p=" << power_ << ",scale=n^" << n_exponent_;
      break;
    case Kind::Relu:
      os << "relu";
      break;
    case Kind::Sigmoid:
      os << "sigmoid";
      break;
  }
  if (n_visible_) os << (kind_ == Kind::Poly ? ",n=visible" : ":n=visible");
  return os.str();
}

AttentionParams AttentionActivation::kernel_params(bool causal, double scale) const {
  PG_CHECK(has_fused_kernel(), "attention activation", "custom activation '", custom_name_,
           "' has no fused kernel; use the composite path");
  AttentionParams p;
  p.act = kind_ == Kind::Softmax ? AttnActivation::Softmax
          : kind_ == Kind::Poly  ? AttnActivation::Poly
          : kind_ == Kind::Relu  ? AttnActivation::Relu
                                 : AttnActivation::Sigmoid;
  p.power = power_;
  p.n_exponent = n_exponent_;
  p.n_visible = n_visible_;
  p.causal = causal;
  p.scale = scale;
  return p;
}

Tensor AttentionActivation::apply(const Tensor& s, const Tensor& visible) const {
  TensorOptions opts{s.dtype(), s.device()};
  double keys = static_cast<double>(s.size(-1));
  // N as a scalar, or per row [.., T, 1] when counting visible keys.
  Tensor n_rows;
  if (n_visible_) {
    Tensor count = visible.defined() ? sum(expand(visible, s.shape()).detach(), {-1}, true)
                                     : full({1}, keys, opts);
    n_rows = where(gt(count, zeros({}, opts)), count, ones({}, opts));
  }
  auto times_visible = [&](const Tensor& a) { return visible.defined() ? mul(a, visible) : a; };
  switch (kind_) {
    case Kind::Softmax: {
      Tensor masked =
          visible.defined()
              ? where(visible, s, full({}, -std::numeric_limits<double>::infinity(), opts))
              : s;
      return softmax(masked, -1);
    }
    case Kind::Poly: {
      Tensor a = pow(s, power_);
      a = n_visible_ ? mul(a, pow(n_rows, n_exponent_)) : mul(a, std::pow(keys, n_exponent_));
      return times_visible(a);
    }
    case Kind::Relu: {
      Tensor a = n_visible_ ? div(relu(s), n_rows) : mul(relu(s), 1.0 / keys);
      return times_visible(a);
    }
    case Kind::Sigmoid: {
      Tensor shifted = n_visible_ ? sub(s, log(n_rows)) : add(s, -std::log(keys));
      return times_visible(sigmoid(shifted));
    }
    case Kind::Custom:
      return times_visible(custom_(s));
  }
  return Tensor();
}

Tensor composite_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionActivation& act, bool causal, double scale,
                           const Tensor& key_padding_mask, AttentionStats* stats) {
  PG_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "attention",
           "expected q, k, v of rank 4 [B, H, T, d], got ", shape_str(q.shape()), ", ",
           shape_str(k.shape()), ", ", shape_str(v.shape()));
  TensorOptions opts{q.dtype(), q.device()};
  int64_t B = q.size(0), T = q.size(2), S = k.size(2);
  Tensor s = mul(matmul(q, transpose(k, -1, -2)), scale);
  // Visible = causal [T, S] and/or key padding [B, 1, 1, S], as a 0/1 tensor.
  Tensor visible;
  if (causal) {
    Tensor i = reshape(arange(0, static_cast<double>(T), 1, opts), {T, 1});
    Tensor j = reshape(arange(0, static_cast<double>(S), 1, opts), {1, S});
    visible = le(expand(j, {T, S}), expand(i, {T, S}));
  }
  if (key_padding_mask.defined()) {
    PG_CHECK(key_padding_mask.shape() == Shape({B, S}), "attention",
             "expected a key padding mask of shape ", shape_str({B, S}), ", got ",
             shape_str(key_padding_mask.shape()));
    Tensor kp = ne(key_padding_mask, zeros({}, {key_padding_mask.dtype(), q.device()}))
                    .to(q.dtype())
                    .reshape({B, 1, 1, S});
    visible = visible.defined() ? mul(visible, kp) : kp;
  }
  Tensor a = act.apply(s, visible);
  if (stats) {
    NoGradGuard ng;
    stats->a_frob_sq = reshape(sum(mul(a, a), {2, 3}), {-1}).to(DType::F64);
    stats->keys = S;
    stats->grad_frob_sq = Tensor();  // the composite path records no gradient diagnostic
  }
  return matmul(a, v);
}

}  // namespace pg
