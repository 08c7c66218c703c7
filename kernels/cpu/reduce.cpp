// Sum, max, min and argmax over any set of dims.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace pg::cpu {

namespace {

template <typename T>
bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return std::isnan(v);
  else
    return false;
}

// Accumulator of one reduction; sums of f32 accumulate in f64.
template <typename T>
struct Acc {
  using Sum = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
  ReduceOp op;
  Sum sum = 0;
  T best{};
  int64_t index = -1;

  void add(T v, int64_t i) {
    if (op == ReduceOp::Sum) {
      sum += static_cast<Sum>(v);
      return;
    }
    if (index < 0 || is_nan(best)) {
      if (index < 0) best = v, index = i;
      return;
    }
    bool better = op == ReduceOp::Min ? (v < best || is_nan(v)) : (v > best || is_nan(v));
    if (better) best = v, index = i;
  }
  // Merges a later partial result; ties keep the earlier index.
  void merge(const Acc& o) {
    if (o.index < 0 && op != ReduceOp::Sum) return;
    if (op == ReduceOp::Sum) {
      sum += o.sum;
      return;
    }
    add(o.best, o.index);
  }
};

template <typename T>
void reduce_typed(ReduceOp op, const Tensor& x, Tensor& out) {
  const T* xp = static_cast<const T*>(x.raw_data());
  auto [kept_shape, kept_x, kept_out, red_shape, red_x] = split_reduce_dims(x, out);
  auto outer = coalesce<2>(kept_shape, {&kept_x, &kept_out});
  auto inner = coalesce<1>(red_shape, {&red_x});
  int64_t n_out = shape_numel(kept_shape), n_red = shape_numel(red_shape);
  int64_t inner_len = inner.shape.empty() ? 1 : inner.shape.back();
  int64_t inner_rows = n_red / inner_len;
  int64_t inner_st = inner.shape.empty() ? 0 : inner.strides[0].back();

  auto row_off = [&](int64_t r) {
    int64_t off = 0;
    for (int64_t d = static_cast<int64_t>(inner.shape.size()) - 2; d >= 0; --d) {
      off += (r % inner.shape[d]) * inner.strides[0][d];
      r /= inner.shape[d];
    }
    return off;
  };
  auto accumulate_rows = [&](const T* base, int64_t r0, int64_t r1, Acc<T>& acc) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* p = base + row_off(r);
      int64_t i0 = r * inner_len;
      if (op == ReduceOp::Sum && inner_st == 1) {
        typename Acc<T>::Sum s = 0;
        for (int64_t i = 0; i < inner_len; ++i) s += p[i];
        acc.sum += s;
      } else {
        for (int64_t i = 0; i < inner_len; ++i) acc.add(p[i * inner_st], i0 + i);
      }
    }
  };
  auto write = [&](int64_t out_off, const Acc<T>& acc) {
    if (op == ReduceOp::ArgMax)
      static_cast<int64_t*>(out.raw_data())[out_off] = acc.index;
    else if (op == ReduceOp::Sum)
      static_cast<T*>(out.raw_data())[out_off] = static_cast<T>(acc.sum);
    else
      static_cast<T*>(out.raw_data())[out_off] = acc.best;
  };
  auto outer_offsets = [&](int64_t o) {
    int64_t xo = 0, oo = 0;
    for (int64_t d = static_cast<int64_t>(outer.shape.size()) - 1; d >= 0; --d) {
      int64_t i = o % outer.shape[d];
      o /= outer.shape[d];
      xo += i * outer.strides[0][d];
      oo += i * outer.strides[1][d];
    }
    return std::pair{xo, oo};
  };

  int threads = omp_get_max_threads();
  bool big = n_out * n_red >= kParallelGrain && threads > 1;
  // Column sums of a contiguous matrix (bias gradients): accumulate whole rows, vectorised.
  if (op == ReduceOp::Sum && x.is_contiguous() && outer.shape.size() == 1 &&
      outer.strides[0][0] == 1 && inner.shape.size() == 1 && inner_st == n_out) {
    std::vector<typename Acc<T>::Sum> acc(static_cast<size_t>(n_out), 0);
#pragma omp parallel for schedule(static) if (big)
    for (int64_t c0 = 0; c0 < n_out; c0 += 256) {
      int64_t c1 = std::min(n_out, c0 + 256);
      for (int64_t r = 0; r < n_red; ++r) {
        const T* p = xp + r * n_out;
        for (int64_t c = c0; c < c1; ++c) acc[c] += p[c];
      }
    }
    for (int64_t c = 0; c < n_out; ++c) write(outer.strides[1][0] * c, Acc<T>{op, acc[c]});
    return;
  }
  if (n_out >= threads || !big) {
#pragma omp parallel for schedule(static) if (big)
    for (int64_t o = 0; o < n_out; ++o) {
      auto [xo, oo] = outer_offsets(o);
      Acc<T> acc{op};
      accumulate_rows(xp + xo, 0, inner_rows, acc);
      write(oo, acc);
    }
    return;
  }
  // Few outputs, long reductions: split each reduction across threads, merge in order.
  for (int64_t o = 0; o < n_out; ++o) {
    // Not a structured binding: clang 14 cannot capture one in the parallel region.
    const auto offsets = outer_offsets(o);
    const int64_t xo = offsets.first, oo = offsets.second;
    std::vector<Acc<T>> parts(static_cast<size_t>(threads), Acc<T>{op});
    if (inner_rows >= threads) {
#pragma omp parallel num_threads(threads)
      {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t r0 = inner_rows * t / nt, r1 = inner_rows * (t + 1) / nt;
        accumulate_rows(xp + xo, r0, r1, parts[t]);
      }
    } else {
      accumulate_rows(xp + xo, 0, inner_rows, parts[0]);
    }
    Acc<T> total{op};
    for (auto& p : parts) total.merge(p);
    write(oo, total);
  }
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, Tensor& out) {
  dispatch_all(x.dtype(), "reduction", [&](auto tag) { reduce_typed<decltype(tag)>(op, x, out); });
}

}  // namespace pg::cpu
