// Views: which ops share storage, writes seen through views in both directions, when
// contiguous()/reshape() copy, and the geometry (strides, offsets) views produce.
#include <doctest/doctest.h>

#include "helpers.h"

using namespace pg;

namespace {

// [rows, cols] f64 holding 0, 1, 2, ... row-major.
Tensor iota(int64_t rows, int64_t cols) {
  return arange(0.0, static_cast<double>(rows * cols), 1.0, {DType::F64}).reshape({rows, cols});
}

}  // namespace

TEST_CASE("view ops share storage with their input") {
  Tensor x = iota(3, 4);
  struct V {
    const char* name;
    Tensor t;
  };
  std::vector<V> views = {
      {"view", x.view({4, 3})},
      {"reshape (contiguous)", x.reshape({2, 6})},
      {"flatten", x.flatten()},
      {"permute", x.permute({1, 0})},
      {"transpose", x.transpose(0, 1)},
      {"slice", x.slice(1, 1, 4, 2)},
      {"narrow", x.narrow(0, 1, 2)},
      {"select", x.select(1, -1)},
      {"expand", x.unsqueeze(0).expand({5, 3, 4})},
      {"squeeze", x.unsqueeze(1).squeeze(1)},
      {"unsqueeze", x.unsqueeze(-1)},
      {"detach", x.detach()},
      {"contiguous (already)", x.contiguous()},
      {"to same dtype", x.to(DType::F64)},
  };
  for (const V& v : views) {
    INFO(v.name);
    CHECK(v.t.shares_storage(x));
  }
  CHECK_FALSE(x.clone().shares_storage(x));
  CHECK_FALSE(x.to(DType::F32).shares_storage(x));
  CHECK_FALSE((x + 0.0).shares_storage(x));
}

TEST_CASE("writes through a view are seen by the base and vice versa") {
  Tensor base = zeros({3, 4}, {DType::F64});
  base.slice(1, 0, 4, 2).fill_(7);  // columns 0 and 2
  CHECK(base.to_vector<double>() == std::vector<double>{7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0});

  Tensor t = base.transpose(0, 1);                            // [4, 3]
  t.select(0, 1).copy_(from_vector<double>({1, 2, 3}, {3}));  // column 1 of base
  CHECK(base.to_vector<double>() == std::vector<double>{7, 1, 7, 0, 7, 2, 7, 0, 7, 3, 7, 0});

  // data<T>() of a view points at the view's first element (offset included).
  Tensor row2 = base.select(0, 2);
  double* p = row2.data<double>();
  p[3] = -5;
  CHECK(base.to_vector<double>()[11] == -5);

  // Base to view.
  Tensor col = base.narrow(1, 3, 1);
  base.fill_(4);
  CHECK(col.to_vector<double>() == std::vector<double>{4, 4, 4});
  base.data<double>()[7] = 9;
  CHECK(col.to_vector<double>() == std::vector<double>{4, 9, 4});
  CHECK(t.to_vector<double>()[3 * 3 + 1] == 9);

  // copy_ broadcasts and converts dtype into a strided destination.
  Tensor dst = zeros({2, 6}, {DType::F64});
  dst.slice(1, 1, 6, 2).copy_(from_vector<float>({1.5f, 2.5f, 3.5f}, {3}));
  CHECK(dst.to_vector<double>() ==
        std::vector<double>{0, 1.5, 0, 2.5, 0, 3.5, 0, 1.5, 0, 2.5, 0, 3.5});
}

TEST_CASE("contiguous() copies only when needed") {
  Tensor x = iota(3, 4);
  Tensor c = x.contiguous();
  CHECK(c.shares_storage(x));
  CHECK(c.raw_data() == x.raw_data());

  Tensor t = x.transpose(0, 1);
  CHECK_FALSE(t.is_contiguous());
  Tensor tc = t.contiguous();
  CHECK_FALSE(tc.shares_storage(x));
  CHECK(tc.is_contiguous());
  CHECK(tc.to_vector<double>() == t.to_vector<double>());
  CHECK(tc.strides() == Shape{3, 1});

  Tensor s = x.slice(1, 0, 4, 2);
  CHECK_FALSE(s.is_contiguous());
  Tensor sc = s.contiguous();
  CHECK_FALSE(sc.shares_storage(x));
  CHECK(sc.to_vector<double>() == std::vector<double>{0, 2, 4, 6, 8, 10});

  // A row slice is contiguous (offset only): no copy.
  Tensor rows = x.narrow(0, 1, 2);
  CHECK(rows.is_contiguous());
  CHECK(rows.contiguous().shares_storage(x));
  CHECK(rows.offset() == 4);
}

TEST_CASE("reshape copies only when the strides forbid a view; view() refuses") {
  Tensor x = iota(3, 4);
  Tensor t = x.transpose(0, 1);
  Tensor r = t.reshape({12});
  CHECK_FALSE(r.shares_storage(x));
  CHECK(r.to_vector<double>() == std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK_PG_ERROR(t.view({12}), "view", "[4, 3]", "without copying");

  // Splitting or merging dims that are contiguous among themselves is still a view.
  Tensor cols = x.narrow(1, 0, 2);  // [3, 2] with strides [4, 1]
  CHECK_FALSE(cols.is_contiguous());
  Tensor split = cols.view({3, 2, 1});
  CHECK(split.shares_storage(x));
  CHECK(cols.reshape({3, 1, 2}).shares_storage(x));
  CHECK_FALSE(cols.reshape({6}).shares_storage(x));
  CHECK_PG_ERROR(cols.view({6}), "view");
  Tensor t3 = iota(4, 6).reshape({2, 2, 6}).transpose(1, 2);  // [2, 6, 2]
  CHECK(t3.reshape({2, 3, 2, 2}).shares_storage(t3));         // splits the middle dim
  CHECK_FALSE(t3.reshape({2, 12}).shares_storage(t3));
}

TEST_CASE("expand has stride 0; clone has its own storage") {
  Tensor x = from_vector<double>({1, 2, 3}, {3, 1});
  Tensor e = x.expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides()[0] == 0);
  CHECK(e.strides()[2] == 0);
  CHECK(e.strides()[1] == 1);
  CHECK(e.shares_storage(x));
  CHECK_FALSE(e.is_contiguous());
  std::vector<double> v = e.to_vector<double>();
  for (int64_t i = 0; i < 24; ++i) CHECK(v[i] == 1 + (i / 4) % 3);
  x.fill_(8);
  CHECK(e.to_vector<double>() == std::vector<double>(24, 8.0));

  Tensor c = e.clone();
  CHECK_FALSE(c.shares_storage(x));
  CHECK(c.is_contiguous());
  CHECK(c.strides() == Shape{12, 4, 1});
  c.fill_(1);
  CHECK(x.to_vector<double>() == std::vector<double>{8, 8, 8});
  CHECK(expand(x, {-1, 5}).strides() == Shape{1, 0});
}

TEST_CASE("view geometry: strides and offsets") {
  Tensor x = iota(4, 6);
  Tensor s = x.slice(1, 1, 6, 2);
  CHECK(s.shape() == Shape{4, 3});
  CHECK(s.strides() == Shape{6, 2});
  CHECK(s.offset() == 1);
  Tensor p = x.reshape({2, 3, 4}).permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  Tensor sel = x.select(0, 2);
  CHECK(sel.shape() == Shape{6});
  CHECK(sel.offset() == 12);
  CHECK(x.select(1, -1).to_vector<double>() == std::vector<double>{5, 11, 17, 23});
  CHECK(x.unsqueeze(1).shape() == Shape{4, 1, 6});
  CHECK(x.unsqueeze(-1).shape() == Shape{4, 6, 1});
  CHECK(x.squeeze(0).shape() == Shape{4, 6});  // size 4: unchanged

  // Slice bounds are clamped like Python's.
  CHECK(x.slice(0, -100, 100).shape() == Shape{4, 6});
  CHECK(x.slice(1, 4, 2).shape() == Shape{4, 0});
  CHECK(x.slice(1, -2, 6).to_vector<double>()[0] == 4);
  CHECK(x.slice(1, 0, 6, 4).shape() == Shape{4, 2});
  CHECK(x.slice(1, 1, 6, 4).to_vector<double>() ==
        std::vector<double>{1, 5, 7, 11, 13, 17, 19, 23});

  // Size-1 dims do not affect contiguity whatever their stride.
  Tensor one = x.narrow(0, 2, 1);
  CHECK(one.is_contiguous());
  CHECK(one.transpose(0, 1).transpose(0, 1).is_contiguous());
  CHECK(x.select(1, 0).unsqueeze(1).shape() == Shape{4, 1});
}

TEST_CASE("views of views compose") {
  Tensor x = iota(6, 8);
  Tensor v = x.slice(0, 1, 6, 2).transpose(0, 1).slice(0, 2, 8, 3);  // [2, 3]
  CHECK(v.shape() == Shape{2, 3});
  CHECK(v.to_vector<double>() == std::vector<double>{10, 26, 42, 13, 29, 45});
  CHECK(v.shares_storage(x));
  v.fill_(-1);
  std::vector<double> xv = x.to_vector<double>();
  int changed = 0;
  for (double d : xv) changed += d == -1;
  CHECK(changed == 6);
  CHECK(xv[10] == -1);
  CHECK(xv[45] == -1);
}
