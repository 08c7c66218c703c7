// The CUDA backend against the CPU backend, beyond the per-op checks that the op suites run on
// every device: transfers, the caching allocator, optimizers, dropout masks, large GEMMs and
// reductions, and whole models (forward, backward and a training step). Without a GPU only the
// error paths run, and the suite ends with one line counting the skipped checks.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "device_check.h"
#include "helpers.h"
#include "models/gpt.h"
#include "models/vit.h"
#include "nn/optim.h"

using namespace pg;

namespace {

const Device kGpu = Device::cuda(0);

}  // namespace

TEST_CASE("without a usable device, CUDA tensors are a clear pg::Error") {
  CHECK_PG_ERROR(zeros({2}, {DType::F32, Device::cuda(1)}), "cuda:1");  // cuda:0 only
  if (cuda::is_available()) {
    CHECK_THROWS_AS(zeros({2}, {DType::F32, Device::cuda(cuda::device_count())}), Error);
    return;
  }
  CHECK_PG_ERROR(zeros({2}, {DType::F32, kGpu}), "not available");
  CHECK_PG_ERROR(ones({3}).to(kGpu), "not available");
  CHECK(cuda::device_count() == 0);
}

TEST_CASE("host <-> device copies keep values, dtypes and views") {
  if (!pgt::have_cuda()) return;
  Generator gen(1);
  for (DType dt : {DType::F32, DType::F64, DType::I64, DType::I32}) {
    CAPTURE(dtype_name(dt));
    Tensor x = randint(-50, 50, {3, 5, 4}, {DType::I64}, &gen).to(dt);
    Tensor g = x.to(kGpu);
    CHECK(g.device() == kGpu);
    CHECK(pgt::values(g.to(Device::cpu())) == pgt::values(x));
    // Non-contiguous views, dtype conversion and fill on the device.
    Tensor t = g.transpose(0, 2).contiguous();
    CHECK(pgt::values(t.to(Device::cpu())) == pgt::values(x.transpose(0, 2).contiguous()));
    CHECK(pgt::values(g.to(DType::F64).to(Device::cpu())) == pgt::values(x.to(DType::F64)));
    Tensor f = zeros({4, 6}, {dt, kGpu});
    f.slice(1, 1, 6, 2).fill_(7);
    Tensor fc = zeros({4, 6}, {dt});
    fc.slice(1, 1, 6, 2).fill_(7);
    CHECK(pgt::values(f.to(Device::cpu())) == pgt::values(fc));
  }
  CHECK(pgt::values(arange(10, {DType::I64, kGpu}).to(Device::cpu())) ==
        pgt::values(arange(10, {DType::I64})));
}

TEST_CASE("the CUDA caching allocator reuses blocks and reports its counters") {
  if (!pgt::have_cuda()) return;
  Allocator& a = cuda::allocator();
  { Tensor warm = empty({1 << 20}, {DType::F32, kGpu}); }
  AllocatorStats before = a.stats();
  for (int i = 0; i < 10; ++i) Tensor t = empty({1 << 20}, {DType::F32, kGpu});
  AllocatorStats after = a.stats();
  CHECK(after.system_allocs == before.system_allocs);  // served from the cache
  CHECK(after.cache_hits >= before.cache_hits + 10);
  CHECK(after.allocated == before.allocated);
  CHECK(after.peak_allocated >= (size_t{1} << 22));
  a.empty_cache();
  CHECK(a.stats().reserved <= after.reserved - (size_t{1} << 22));
}

TEST_CASE("large GEMMs and reductions on the GPU match the CPU") {
  if (!pgt::have_cuda()) return;
  Generator gen(2);
  Tensor a = randn({3, 200, 300}, {}, &gen), b = randn({300, 170}, {}, &gen);
  CHECK(pgt::max_rel_diff_strict(matmul(a.to(kGpu), b.to(kGpu)), matmul(a, b)) < 1e-5);
  Tensor at = randn({170, 300}, {}, &gen);
  CHECK(pgt::max_rel_diff_strict(matmul(a.to(kGpu), at.to(kGpu).transpose(0, 1)),
                                 matmul(a, at.transpose(0, 1))) < 1e-5);
  Tensor big = randn({1000, 1001}, {DType::F64}, &gen);
  Tensor bg = big.to(kGpu);
  CHECK(pgt::max_rel_diff_strict(sum(bg), sum(big)) < 1e-12);
  CHECK(pgt::max_rel_diff_strict(sum(bg, {0}), sum(big, {0})) < 1e-12);
  CHECK(pgt::max_rel_diff_strict(sum(bg.transpose(0, 1), {1}), sum(big, {0})) < 1e-12);
  // Long sums into few outputs take the split path: chunks per output, then their total.
  Tensor rows = randn({3, 70001}, {}, &gen);
  CHECK(pgt::max_rel_diff_strict(sum(rows.to(kGpu), {1}), sum(rows, {1})) < 1e-6);
  CHECK(pgt::max_rel_diff_strict(sum(rows.to(kGpu).transpose(0, 1), {0}), sum(rows, {1})) < 1e-6);
  Tensor counts = randint(-50, 50, {2, 40000}, {DType::I64}, &gen);
  CHECK(pgt::values(sum(counts.to(kGpu), {1}).to(Device::cpu())) == pgt::values(sum(counts, {1})));
  CHECK(pgt::max_rel_diff_strict(max(bg, 1), max(big, 1)) == 0);
  CHECK(pgt::values(argmax(bg, 1).to(Device::cpu())) == pgt::values(argmax(big, 1)));
}

TEST_CASE("bad indices on the GPU raise the CPU's errors") {
  if (!pgt::have_cuda()) return;
  Tensor w = zeros({5, 2}, {DType::F32, kGpu});
  CHECK_PG_ERROR(embedding(w, from_vector<int64_t>({0, 7, 1}, {3}).to(kGpu)), "embedding",
                 "index 7", "position 1", "5 rows");
  CHECK_PG_ERROR(embedding(w, from_vector<int32_t>({-1}, {1}).to(kGpu)), "embedding", "index -1");
  int64_t lowest = std::numeric_limits<int64_t>::min();
  std::string lowest_text = "index " + std::to_string(lowest);
  CHECK_PG_ERROR(embedding(w, from_vector<int64_t>({lowest}, {1}).to(kGpu)), "embedding",
                 lowest_text.c_str());
  Tensor logits = zeros({3, 4}, {DType::F32, kGpu});
  CHECK_PG_ERROR(cross_entropy(logits, from_vector<int64_t>({0, 4, 1}, {3}).to(kGpu)),
                 "cross_entropy", "target 4", "position 1", "4 classes", "ignore_index -100");
  // The device is still usable after the errors.
  CHECK(sum(w).item() == 0.0);
}

TEST_CASE("row kernels on rows wider than a block match the CPU, values and gradients") {
  // The op suites' rows fit in one warp; these span every warp of a 256-thread block and loop
  // past it, so the cross-warp steps of the block reductions are checked too.
  if (!pgt::have_cuda()) return;
  Generator gen(12);
  for (int64_t cols : {300, 1000}) {
    CAPTURE(cols);
    Tensor x = randn({5, cols}, {}, &gen).requires_grad_();
    Tensor w = randn({cols}, {}, &gen).requires_grad_();
    Tensor b = randn({cols}, {}, &gen).requires_grad_();
    Tensor target = randint(0, cols, {5}, {DType::I64}, &gen);
    pgt::check_on_devices([](const TensorList& t) { return softmax(t[0], -1); }, {x}, "softmax");
    pgt::check_on_devices([](const TensorList& t) { return log_softmax(t[0], -1); }, {x},
                          "log_softmax");
    pgt::check_on_devices([](const TensorList& t) { return layer_norm(t[0], t[1], t[2]); },
                          {x, w, b}, "layer_norm");
    pgt::check_on_devices([](const TensorList& t) { return cross_entropy(t[0], t[1]); },
                          {x, target}, "cross_entropy");
  }
}

TEST_CASE("dropout draws the same mask on the CPU and the GPU") {
  if (!pgt::have_cuda()) return;
  Generator gc(42), gg(42);
  Tensor x = ones({300, 70});
  Tensor yc = dropout(x, 0.3, true, &gc), yg = dropout(x.to(kGpu), 0.3, true, &gg);
  CHECK(pgt::values(yg.to(Device::cpu())) == pgt::values(yc));
}

TEST_CASE("optimizer steps on the GPU match the CPU") {
  if (!pgt::have_cuda()) return;
  Generator gen(3);
  for (int kind = 0; kind < 3; ++kind) {
    CAPTURE(kind);
    Tensor pc = randn({50, 33}, {}, &gen).requires_grad_();
    Tensor pg_ = pc.detach().to(kGpu).requires_grad_();
    std::unique_ptr<Optimizer> oc, og;
    if (kind == 0) {
      oc = std::make_unique<AdamW>(std::vector<ParamGroup>{{{pc}, 1e-2, 0.1}});
      og = std::make_unique<AdamW>(std::vector<ParamGroup>{{{pg_}, 1e-2, 0.1}});
    } else {
      oc = std::make_unique<SGD>(std::vector<ParamGroup>{{{pc}, 1e-2, 0.01}}, 0.9, kind == 2);
      og = std::make_unique<SGD>(std::vector<ParamGroup>{{{pg_}, 1e-2, 0.01}}, 0.9, kind == 2);
    }
    for (int step = 0; step < 5; ++step) {
      Tensor w = randn({50, 33}, {}, &gen);
      oc->zero_grad();
      og->zero_grad();
      backward(sum(mul(mul(pc, pc), w)));
      backward(sum(mul(mul(pg_, pg_), w.to(kGpu))));
      oc->step();
      og->step();
    }
    CHECK(pgt::max_rel_diff_strict(pg_, pc) < 1e-5);
  }
}

TEST_CASE("batched optimizer steps and clipping over many parameters match per-parameter steps") {
  if (!pgt::have_cuda()) return;
  // 40 parameters (30 f32, 10 f64: more than one launch's 24 of a dtype), sizes around the
  // 2,048-element block chunk, an empty one, two groups, and gradients missing on some steps.
  const std::vector<int64_t> sizes = {1, 2047, 2048, 2049, 0, 5000, 3, 6150, 64, 4096};
  auto make_params = [&](Device device) {
    Generator gen(11);
    std::vector<Tensor> ps;
    for (int k = 0; k < 40; ++k) {
      DType dt = k % 4 == 3 ? DType::F64 : DType::F32;
      ps.push_back(randn({sizes[k % sizes.size()]}, {dt}, &gen).to(device).requires_grad_());
    }
    return ps;
  };
  auto groups_of = [](const std::vector<Tensor>& ps, size_t begin, size_t end) {
    ParamGroup a{{}, 1e-2, 0.1}, b{{}, 3e-3, 0.0};
    for (size_t k = begin; k < end; ++k) (k % 3 == 0 ? b : a).params.push_back(ps[k]);
    std::vector<ParamGroup> groups;
    for (ParamGroup* g : {&a, &b})
      if (!g->params.empty()) groups.push_back(*g);
    return groups;
  };
  auto make_opt = [](int kind, std::vector<ParamGroup> groups) -> std::unique_ptr<Optimizer> {
    if (kind == 0) return std::make_unique<AdamW>(std::move(groups));
    if (kind == 1) return std::make_unique<Adam>(std::move(groups));
    return std::make_unique<SGD>(std::move(groups), kind == 2 ? 0.0 : 0.9, kind == 4);
  };
  for (int kind = 0; kind < 5; ++kind) {
    CAPTURE(kind);
    std::vector<Tensor> cpu = make_params(Device::cpu()), batched = make_params(kGpu),
                        single = make_params(kGpu);
    auto opt_cpu = make_opt(kind, groups_of(cpu, 0, cpu.size()));
    auto opt_batched = make_opt(kind, groups_of(batched, 0, batched.size()));
    std::vector<std::unique_ptr<Optimizer>> opt_single;
    for (size_t k = 0; k < single.size(); ++k)
      opt_single.push_back(make_opt(kind, groups_of(single, k, k + 1)));
    Generator gen(12);
    for (int step = 0; step < 3; ++step) {
      for (size_t k = 0; k < cpu.size(); ++k) {
        Tensor g = randn(cpu[k].shape(), {cpu[k].dtype()}, &gen);
        bool skip = (k + static_cast<size_t>(step)) % 7 == 0;
        cpu[k].set_grad(skip ? Tensor() : g);
        batched[k].set_grad(skip ? Tensor() : g.to(kGpu));
        single[k].set_grad(skip ? Tensor() : g.to(kGpu));
      }
      // Clipping always scales here (the gradients' norm is about 290).
      double nc = clip_grad_norm(cpu, 5.0), nb = clip_grad_norm(batched, 5.0),
             ns = clip_grad_norm(single, 5.0);
      CHECK(nb == ns);
      CHECK(nb == doctest::Approx(nc).epsilon(1e-12));
      CHECK(nc > 5.0);
      opt_cpu->step();
      opt_batched->step();
      for (auto& o : opt_single) o->step();
    }
    for (size_t k = 0; k < cpu.size(); ++k) {
      CAPTURE(k);
      CHECK(pgt::values(batched[k].to(Device::cpu())) == pgt::values(single[k].to(Device::cpu())));
      CHECK(pgt::max_rel_diff_strict(batched[k], cpu[k]) < 1e-5);
    }
  }
}

TEST_CASE("clipping and an AdamW step over a GPT's 77 parameters take 13 launches, not 77+") {
  if (!pgt::have_cuda()) return;
  GptConfig cfg;
  cfg.vocab_size = 11;
  cfg.context = 8;
  cfg.dim = 16;
  cfg.layers = 6;
  cfg.heads = 2;
  manual_seed(2);
  Gpt model(cfg);
  model.to(kGpu);
  REQUIRE(model.parameters().size() == 77);
  AdamW opt(std::vector<ParamGroup>{{model.parameters(), 1e-3, 0.1}});
  Generator gen(3);
  Tensor x = randint(0, 11, {2, 8}, {DType::I64}, &gen).to(kGpu);
  backward(cross_entropy(model(x), x));
  opt.step();  // the first step also zero-fills the moments
  opt.zero_grad();
  backward(cross_entropy(model(x), x));
  const uint64_t before = cuda::kernel_launches();
  CHECK(clip_grad_norm(model.parameters(), 1e-3) > 1e-3);  // so that it scales
  opt.step();
  // 77 f32 tensors are 4 batches of at most 24: 4 + 1 to sum squares, 4 to scale, 4 to step.
  CHECK(cuda::kernel_launches() - before == 13);
}

TEST_CASE("clip_grad_norm and AdamW over parameters on the CPU and the GPU together") {
  if (!pgt::have_cuda()) return;
  Tensor a = ones({3}).requires_grad_(), b = ones({4}, {DType::F64, kGpu}).requires_grad_();
  a.set_grad(full({3}, 2.0));                      // |g|^2 = 12
  b.set_grad(full({4}, 3.0, {DType::F64, kGpu}));  // |g|^2 = 36
  CHECK(clip_grad_norm({a, b}, 1.0) == doctest::Approx(std::sqrt(48.0)).epsilon(1e-15));
  const double scale = 1.0 / (std::sqrt(48.0) + 1e-6);
  CHECK(a.grad().device() == Device::cpu());
  CHECK(b.grad().device() == kGpu);
  CHECK(pgt::values(a.grad()) ==
        std::vector<double>(3, static_cast<double>(2.0f * static_cast<float>(scale))));
  CHECK(pgt::values(b.grad().to(Device::cpu())) == std::vector<double>(4, 3.0 * scale));

  // One optimizer over both devices: each device's batch gets its own update.
  Tensor a2 = a.detach().clone().requires_grad_(),
         b2 = b.detach().to(Device::cpu()).requires_grad_();
  a2.set_grad(a.grad());
  b2.set_grad(b.grad().to(Device::cpu()));
  AdamW both(std::vector<ParamGroup>{{{a, b}, 1e-2, 0.1}});
  AdamW cpu_only(std::vector<ParamGroup>{{{a2, b2}, 1e-2, 0.1}});
  both.step();
  cpu_only.step();
  CHECK(pgt::values(a) == pgt::values(a2));
  CHECK(pgt::max_rel_diff_strict(b, b2) < 1e-15);
  CHECK(pgt::values(a) != std::vector<double>(3, 1.0));
  CHECK(pgt::values(b) != std::vector<double>(4, 1.0));
}

TEST_CASE("a tiny GPT and a tiny ViT give the same logits, gradients and step on the GPU") {
  if (!pgt::have_cuda()) return;
  for (const char* spec : {"softmax", "poly:3", "relu", "sigmoid"}) {
    CAPTURE(spec);
    GptConfig gc;
    gc.vocab_size = 17;
    gc.context = 24;
    gc.dim = 32;
    gc.layers = 2;
    gc.heads = 4;
    gc.attn = spec;
    manual_seed(5);
    Gpt cpu(gc);
    manual_seed(5);
    Gpt gpu(gc);
    gpu.to(kGpu);
    Generator gen(9);
    Tensor tokens = randint(0, 17, {3, 24}, {DType::I64}, &gen);
    Tensor targets = randint(0, 17, {3, 24}, {DType::I64}, &gen);
    Tensor lc = cross_entropy(cpu(tokens), targets);
    Tensor lg = cross_entropy(gpu(tokens.to(kGpu)), targets.to(kGpu));
    CHECK(lg.item() == doctest::Approx(lc.item()).epsilon(1e-5));
    backward(lc);
    backward(lg);
    auto pc = cpu.named_parameters(), pgp = gpu.named_parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      CAPTURE(pc[i].first);
      CHECK(pgt::max_rel_diff_strict(pgp[i].second.grad(), pc[i].second.grad()) < 1e-4);
    }

    VitConfig vc;
    vc.image_size = 12;
    vc.patch = 4;
    vc.dim = 32;
    vc.layers = 2;
    vc.attn = spec;
    manual_seed(6);
    Vit vcpu(vc);
    manual_seed(6);
    Vit vgpu(vc);
    vgpu.to(kGpu);
    Tensor images = rand({5, 1, 12, 12}, {}, &gen);
    Tensor labels = randint(0, 10, {5}, {DType::I64}, &gen);
    AdamW oc(std::vector<ParamGroup>{{vcpu.parameters(), 1e-3, 0.05}});
    AdamW og(std::vector<ParamGroup>{{vgpu.parameters(), 1e-3, 0.05}});
    for (int step = 0; step < 3; ++step) {
      oc.zero_grad();
      og.zero_grad();
      Tensor a = cross_entropy(vcpu(images), labels),
             b = cross_entropy(vgpu(images.to(kGpu)), labels.to(kGpu));
      CHECK(b.item() == doctest::Approx(a.item()).epsilon(1e-4));
      backward(a);
      backward(b);
      oc.step();
      og.step();
    }
  }
}
