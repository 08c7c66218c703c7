// Row kernels of neural networks: gather/scatter, softmax, layer norm, cross-entropy, dropout.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/counter_rng.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"

namespace pg::cpu {

namespace {

// Reads an i64 or i32 index tensor as int64 values.
std::vector<int64_t> read_indices(const Tensor& index) {
  std::vector<int64_t> idx(static_cast<size_t>(index.numel()));
  if (index.dtype() == DType::I64) {
    const int64_t* p = index.data<int64_t>();
    idx.assign(p, p + index.numel());
  } else {
    const int32_t* p = index.data<int32_t>();
    for (int64_t i = 0; i < index.numel(); ++i) idx[i] = p[i];
  }
  return idx;
}

void check_indices(const std::vector<int64_t>& idx, int64_t rows, const char* op) {
  for (size_t i = 0; i < idx.size(); ++i)
    PG_CHECK(idx[i] >= 0 && idx[i] < rows, op, "index ", idx[i], " at position ", i,
             " is out of range for ", rows, " rows (expected 0 <= index < ", rows, ")");
}

bool parallel(int64_t work) { return work >= kParallelGrain && omp_get_max_threads() > 1; }

}  // namespace

void CpuBackend::index_select_rows(const Tensor& weight, const Tensor& index, Tensor& out) {
  auto idx = read_indices(index);
  int64_t rows = weight.size(0), d = weight.size(1), n = static_cast<int64_t>(idx.size());
  check_indices(idx, rows, "embedding");
  size_t bytes = static_cast<size_t>(d) * dtype_size(weight.dtype());
  const char* w = static_cast<const char*>(weight.raw_data());
  char* o = static_cast<char*>(out.raw_data());
#pragma omp parallel for schedule(static) if (parallel(n * d))
  for (int64_t i = 0; i < n; ++i) std::memcpy(o + i * bytes, w + idx[i] * bytes, bytes);
}

void CpuBackend::index_add_rows(const Tensor& index, const Tensor& src, Tensor& out) {
  auto idx = read_indices(index);
  int64_t rows = out.size(0), d = out.size(1), n = static_cast<int64_t>(idx.size());
  check_indices(idx, rows, "index_add");
  dispatch_floating(src.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    const T* s = static_cast<const T*>(src.raw_data());
    T* o = static_cast<T*>(out.raw_data());
    // Threads own column blocks, so repeated indices never race.
    int64_t block = 64;
#pragma omp parallel for schedule(static) if (parallel(n * d) && d >= 2 * block)
    for (int64_t c0 = 0; c0 < d; c0 += block) {
      int64_t c1 = std::min(d, c0 + block);
      for (int64_t i = 0; i < n; ++i) {
        T* orow = o + idx[i] * d;
        const T* srow = s + i * d;
        for (int64_t c = c0; c < c1; ++c) orow[c] += srow[c];
      }
    }
  });
}

void CpuBackend::softmax(const Tensor& x, Tensor& out, bool log) {
  int64_t rows = x.size(0), cols = x.size(1);
  dispatch_floating(x.dtype(), "softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
#pragma omp parallel for schedule(static) if (parallel(rows * cols))
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * cols;
      T* orow = op + r * cols;
      T mx = max_wide<T>(cols, [&](int64_t c) { return xr[c]; });
      if (mx == -std::numeric_limits<T>::infinity()) mx = 0;  // fully masked row
      if (log) {
        T sum = static_cast<T>(sum_wide(cols, [&](int64_t c) { return vexp(xr[c] - mx); }));
        T lse = mx + std::log(sum);
        for (int64_t c = 0; c < cols; ++c) orow[c] = xr[c] - lse;
      } else {
        for (int64_t c = 0; c < cols; ++c) orow[c] = vexp(xr[c] - mx);
        T inv = T(1) / static_cast<T>(sum_wide(cols, [&](int64_t c) { return orow[c]; }));
        for (int64_t c = 0; c < cols; ++c) orow[c] *= inv;
      }
    }
  });
}

void CpuBackend::softmax_backward(const Tensor& dy, const Tensor& y, Tensor& dx, bool log) {
  int64_t rows = y.size(0), cols = y.size(1);
  dispatch_floating(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dy.raw_data());
    const T* yp = static_cast<const T*>(y.raw_data());
    T* d = static_cast<T*>(dx.raw_data());
#pragma omp parallel for schedule(static) if (parallel(rows * cols))
    for (int64_t r = 0; r < rows; ++r) {
      const T* gr = g + r * cols;
      const T* yr = yp + r * cols;
      T* dr = d + r * cols;
      T acc = 0;
      if (log) {
        for (int64_t c = 0; c < cols; ++c) acc += gr[c];
        for (int64_t c = 0; c < cols; ++c) dr[c] = gr[c] - vexp(yr[c]) * acc;
      } else {
        for (int64_t c = 0; c < cols; ++c) acc += gr[c] * yr[c];
        for (int64_t c = 0; c < cols; ++c) dr[c] = yr[c] * (gr[c] - acc);
      }
    }
  });
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                            Tensor& out, Tensor& mean, Tensor& rstd) {
  int64_t rows = x.size(0), cols = x.size(1);
  dispatch_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* w = weight.defined() ? static_cast<const T*>(weight.raw_data()) : nullptr;
    const T* b = bias.defined() ? static_cast<const T*>(bias.raw_data()) : nullptr;
    T* op = static_cast<T*>(out.raw_data());
    T* mp = static_cast<T*>(mean.raw_data());
    T* rp = static_cast<T*>(rstd.raw_data());
#pragma omp parallel for schedule(static) if (parallel(rows * cols))
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xp + r * cols;
      double mu = sum_wide(cols, [&](int64_t c) { return static_cast<double>(xr[c]); }) /
                  static_cast<double>(cols);
      double v = sum_wide(cols, [&](int64_t c) {
        double e = xr[c] - mu;
        return e * e;
      });
      double inv = 1.0 / std::sqrt(v / static_cast<double>(cols) + eps);
      mp[r] = static_cast<T>(mu);
      rp[r] = static_cast<T>(inv);
      T m = static_cast<T>(mu), is = static_cast<T>(inv);
      T* orow = op + r * cols;
      for (int64_t c = 0; c < cols; ++c) {
        T h = (xr[c] - m) * is;
        orow[c] = (w ? h * w[c] : h) + (b ? b[c] : T(0));
      }
    }
  });
}

void CpuBackend::layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                     const Tensor& mean, const Tensor& rstd, Tensor& dx,
                                     Tensor& dweight, Tensor& dbias) {
  int64_t rows = x.size(0), cols = x.size(1);
  dispatch_floating(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(dy.raw_data());
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* w = weight.defined() ? static_cast<const T*>(weight.raw_data()) : nullptr;
    const T* mp = static_cast<const T*>(mean.raw_data());
    const T* rp = static_cast<const T*>(rstd.raw_data());
    T* d = dx.defined() ? static_cast<T*>(dx.raw_data()) : nullptr;
    bool want_wb = dweight.defined() || dbias.defined();
    int threads = parallel(rows * cols) ? omp_get_max_threads() : 1;
    // Per-thread partial sums of dweight/dbias, added in thread order afterwards.
    std::vector<double> part(want_wb ? static_cast<size_t>(threads * 2 * cols) : 0, 0.0);
#pragma omp parallel num_threads(threads)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      double* pw = want_wb ? part.data() + static_cast<size_t>(t) * 2 * cols : nullptr;
      int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
      for (int64_t r = r0; r < r1; ++r) {
        const T* gr = g + r * cols;
        const T* xr = xp + r * cols;
        T m = mp[r], is = rp[r];
        auto gh_of = [&](int64_t c) { return w ? gr[c] * w[c] : gr[c]; };
        double sum_g = sum_wide(cols, [&](int64_t c) { return static_cast<double>(gh_of(c)); });
        double sum_gh = sum_wide(
            cols, [&](int64_t c) { return static_cast<double>(gh_of(c) * ((xr[c] - m) * is)); });
        if (pw)
          for (int64_t c = 0; c < cols; ++c) {
            pw[c] += gr[c] * ((xr[c] - m) * is);
            pw[cols + c] += gr[c];
          }
        if (d) {
          T mg = static_cast<T>(sum_g / cols), mgh = static_cast<T>(sum_gh / cols);
          T* dr = d + r * cols;
          for (int64_t c = 0; c < cols; ++c) {
            T h = (xr[c] - m) * is;
            T gh = w ? gr[c] * w[c] : gr[c];
            dr[c] = is * (gh - mg - h * mgh);
          }
        }
      }
    }
    if (!want_wb) return;
    for (int64_t c = 0; c < cols; ++c) {
      double sw = 0, sb = 0;
      for (int t = 0; t < threads; ++t) {
        sw += part[static_cast<size_t>(t) * 2 * cols + c];
        sb += part[static_cast<size_t>(t) * 2 * cols + cols + c];
      }
      if (dweight.defined()) static_cast<T*>(dweight.raw_data())[c] = static_cast<T>(sw);
      if (dbias.defined()) static_cast<T*>(dbias.raw_data())[c] = static_cast<T>(sb);
    }
  });
}

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index,
                               double smoothing, Tensor& loss, Tensor& lse) {
  int64_t n = logits.size(0), c = logits.size(1);
  auto tgt = read_indices(target);
  for (int64_t i = 0; i < n; ++i)
    PG_CHECK(tgt[i] == ignore_index || (tgt[i] >= 0 && tgt[i] < c), "cross_entropy", "target ",
             tgt[i], " at position ", i, " is out of range for ", c,
             " classes (expected 0 <= target < ", c, " or ignore_index ", ignore_index, ")");
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(logits.raw_data());
    T* lp = static_cast<T*>(lse.raw_data());
    double total = 0;
    int64_t kept = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, kept) if (parallel(n * c))
    for (int64_t i = 0; i < n; ++i) {
      const T* xr = x + i * c;
      T mx = max_wide<T>(c, [&](int64_t j) { return xr[j]; });
      double s = sum_wide(c, [&](int64_t j) { return vexp(xr[j] - mx); });
      double sx = sum_wide(c, [&](int64_t j) { return static_cast<double>(xr[j]); });
      double l = static_cast<double>(mx) + std::log(s);
      lp[i] = static_cast<T>(l);
      if (tgt[i] == ignore_index) continue;
      ++kept;
      total += (1 - smoothing) * (l - xr[tgt[i]]) + smoothing * (l - sx / c);
    }
    static_cast<T*>(loss.raw_data())[0] =
        static_cast<T>(kept ? total / kept : std::numeric_limits<double>::quiet_NaN());
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& grad, const Tensor& logits,
                                        const Tensor& target, const Tensor& lse,
                                        int64_t ignore_index, double smoothing, Tensor& dlogits) {
  int64_t n = logits.size(0), c = logits.size(1);
  auto tgt = read_indices(target);
  int64_t kept = 0;
  for (int64_t t : tgt) kept += t != ignore_index;
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(logits.raw_data());
    const T* lp = static_cast<const T*>(lse.raw_data());
    T* d = static_cast<T*>(dlogits.raw_data());
    T scale = kept ? static_cast<T>(grad.item() / static_cast<double>(kept)) : T(0);
    T off = static_cast<T>(smoothing / static_cast<double>(c));
    T on = static_cast<T>(1 - smoothing);
#pragma omp parallel for schedule(static) if (parallel(n * c))
    for (int64_t i = 0; i < n; ++i) {
      T* dr = d + i * c;
      if (tgt[i] == ignore_index) {
        for (int64_t j = 0; j < c; ++j) dr[j] = 0;
        continue;
      }
      const T* xr = x + i * c;
      for (int64_t j = 0; j < c; ++j) dr[j] = scale * (vexp(xr[j] - lp[i]) - off);
      dr[tgt[i]] -= scale * on;
    }
  });
}

void CpuBackend::dropout_mask(Tensor& out, double keep, uint64_t key, uint64_t first_index) {
  dispatch_floating(out.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(out.raw_data());
    T scale = static_cast<T>(1.0 / keep);
    const int64_t n = out.numel();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i)
      p[i] = counter_uniform(key, first_index + static_cast<uint64_t>(i)) < keep ? scale : T(0);
  });
}

}  // namespace pg::cpu
