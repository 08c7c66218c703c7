// pg::dist's collectives under `mpirun -np 2` (and as a world of one): sums exact on
// integer-valued floats at odd sizes, identical bytes on every rank, errors that name the op.
#include <doctest/doctest.h>

#include <map>

#include "distributed/dist.h"
#include "polygrad.h"

using namespace pg;

namespace {
// Element i of rank r: an integer-valued float, so every sum is exact in f32.
Tensor pattern(int64_t n, DType dtype, int r) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>((i * 7 + r * 13) % 1001) - 500;
  return from_vector(v, {n}).to(dtype);
}
}  // namespace

TEST_CASE("all_reduce sums odd sizes exactly, identical on every rank") {
  const int world = dist::world_size();
  // 1, 7, 2^20 + 3, and 5 * 2^20 + 1 (20 MiB: larger than a gradient bucket)
  for (int64_t n : {int64_t(1), int64_t(7), (int64_t(1) << 20) + 3, 5 * (int64_t(1) << 20) + 1}) {
    for (DType dtype : {DType::F32, DType::F64, DType::I64, DType::I32}) {
      CAPTURE(n);
      CAPTURE(dtype_name(dtype));
      Tensor t = pattern(n, dtype, dist::rank());
      dist::all_reduce({t});
      Tensor expected = zeros({n}, {DType::F64});
      for (int r = 0; r < world; ++r) expected = add(expected, pattern(n, DType::F64, r));
      CHECK(dist::fingerprint({t}) == dist::fingerprint({expected.to(dtype)}));
      CHECK_NOTHROW(dist::check_replicas({t}, "the sum"));
    }
  }
}

TEST_CASE("Max, Min and Mean") {
  const int world = dist::world_size(), rank = dist::rank();
  Tensor hi = full({3}, rank), lo = full({3}, rank), mean = full({3}, 2.0 * rank);
  dist::all_reduce({hi}, dist::ReduceOp::Max);
  dist::all_reduce({lo}, dist::ReduceOp::Min);
  dist::all_reduce({mean}, dist::ReduceOp::Mean);
  CHECK(hi.to_vector<float>()[2] == world - 1);
  CHECK(lo.to_vector<float>()[2] == 0);
  CHECK(mean.to_vector<float>()[1] == doctest::Approx(world - 1));
  std::vector<double> values{1.5, double(rank)};
  dist::all_reduce(values);
  CHECK(values[0] == 1.5 * world);
  CHECK(values[1] == world * (world - 1) / 2);
}

TEST_CASE("broadcast, all_gather and the same-value check") {
  const int world = dist::world_size(), rank = dist::rank();
  Tensor t = full({5}, 10.0 + rank);
  dist::broadcast({t}, world - 1);
  CHECK(t.to_vector<float>()[4] == 10.0f + world - 1);
  std::vector<std::string> names = dist::all_gather("rank" + std::to_string(rank));
  REQUIRE(names.size() == size_t(world));
  CHECK(names.back() == "rank" + std::to_string(world - 1));
  CHECK_NOTHROW(dist::check_same_on_all_ranks("a value", "same\neverywhere"));
  if (world > 1) {
    // Every rank throws, and the message names the first differing line of both.
    CHECK_THROWS_WITH_AS(
        dist::check_same_on_all_ranks("the flags", "--steps 10\n--attn " + std::to_string(rank)),
        "dist: the flags differs between ranks: rank 0 has '--attn 0' where rank 1 has '--attn "
        "1' (every rank must run the same program)",
        pg::Error);
    Tensor mine = full({2}, rank);
    CHECK_THROWS_WITH_AS(dist::check_replicas({mine}, "the weights"),
                         doctest::Contains("the weights of rank 1 differ from rank 0's"),
                         pg::Error);
  }
  dist::barrier();
}

TEST_CASE("reduce_scatter and all_gather: uneven pieces, empty ones, exact sums") {
  const int world = dist::world_size(), rank = dist::rank();
  for (DType dtype : {DType::F32, DType::F64}) {
    CAPTURE(dtype_name(dtype));
    // Rank r's piece: 4097 + 3r elements, and one empty piece (rank 0's) where several run.
    std::vector<int64_t> counts;
    for (int r = 0; r < world; ++r) counts.push_back(world > 1 && r == 0 ? 0 : 4097 + 3 * r);
    int64_t n = 0, first = 0;
    for (int r = 0; r < world; ++r) {
      if (r == rank) first = n;
      n += counts[static_cast<size_t>(r)];
    }
    Tensor mine = empty({counts[static_cast<size_t>(rank)]}, {dtype});
    dist::reduce_scatter(pattern(n, dtype, rank), mine, counts);
    Tensor sum = zeros({n}, {DType::F64});
    for (int r = 0; r < world; ++r) sum = add(sum, pattern(n, DType::F64, r));
    CHECK(dist::fingerprint({mine}) ==
          dist::fingerprint({sum.narrow(0, first, mine.numel()).contiguous().to(dtype)}));
    // Each rank writes its piece of the sum into a buffer of garbage; all_gather completes it.
    Tensor buffer = full({n}, -7.0 - rank, {dtype});
    buffer.narrow(0, first, mine.numel()).copy_(mine);
    dist::all_gather(buffer, counts);
    CHECK(dist::fingerprint({buffer}) == dist::fingerprint({sum.to(dtype)}));
  }
  Tensor t = zeros({6});
  CHECK_THROWS_WITH_AS(dist::all_gather(t, std::vector<int64_t>(world, 1)),
                       doctest::Contains("the counts add up to"), pg::Error);
  CHECK_THROWS_WITH_AS(dist::all_gather(t, {6, 0, 0}), doctest::Contains("one count per rank"),
                       pg::Error);
  std::vector<int64_t> split(world, 0);
  split[0] = 6;
  CHECK_THROWS_WITH_AS(dist::reduce_scatter(t, t, split),
                       doctest::Contains(rank == 0 ? "must not share memory" : "output must be"),
                       pg::Error);
}

TEST_CASE("bad tensors are refused on every rank before anything is sent") {
  Tensor m = zeros({4, 3});
  CHECK_THROWS_WITH_AS(
      dist::all_reduce({m.transpose(0, 1)}),
      doctest::Contains("all_reduce: expected contiguous tensors, got shape [3, 4]"), pg::Error);
  CHECK_THROWS_WITH_AS(dist::all_reduce({zeros({2}, {DType::I64})}, dist::ReduceOp::Mean),
                       doctest::Contains("Mean needs floating tensors, got i64"), pg::Error);
  CHECK_THROWS_AS(dist::broadcast({m}, dist::world_size()), pg::Error);
  CHECK_THROWS_AS(dist::set_timeout(-1), pg::Error);
  if (dist::world_size() > 1)
    CHECK_THROWS_WITH_AS(dist::all_reduce({zeros({2}, {DType::BF16})}),
                         doctest::Contains("cannot send bf16 tensors"), pg::Error);
}

TEST_CASE("launchers: each one's variables give its name and world size") {
  using Env = std::map<std::string, std::string>;
  auto detect = [](const Env& env) {
    return dist::detect_launch([&](const char* var) -> const char* {
      auto it = env.find(var);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  CHECK(detect({}).launcher.empty());
  CHECK(detect({}).world == 1);
  CHECK(detect({{"OMPI_COMM_WORLD_SIZE", "4"}}).world == 4);
  CHECK(detect({{"OMPI_COMM_WORLD_SIZE", "4"}}).launcher == "mpirun (Open MPI)");
  CHECK(detect({{"PMI_SIZE", "3"}}).world == 3);
  CHECK(detect({{"MV2_COMM_WORLD_SIZE", "2"}}).world == 2);
  // Slurm's srun with PMIx: the step's task count, not the allocation's.
  const dist::Launch srun =
      detect({{"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_NTASKS", "16"}, {"PMIX_RANK", "3"}});
  CHECK(srun.launcher == "srun (Slurm)");
  CHECK(srun.world == 8);
  // A batch script's own process (no srun step): the allocation alone starts nothing.
  CHECK(detect({{"SLURM_NTASKS", "16"}, {"SLURM_JOB_ID", "7"}}).launcher.empty());
  // PMIx without a size: MPI tells.
  CHECK(detect({{"PMIX_RANK", "0"}}).world == 0);
  CHECK(detect({{"PMIX_RANK", "0"}}).launcher == "a PMIx launcher");
}
