#include "nn/recall.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"
#include "core/tensor.h"

namespace pg {

void RecallTask::check(const std::string& who) const {
  PG_CHECK(vocab >= 4 && vocab <= (int64_t{1} << 24), who, "vocab is ", vocab,
           " (expected 4 to 16777216: keys and values take half each)");
  PG_CHECK(pairs >= 1, who, "pairs is ", pairs, " (expected 1 or more)");
  PG_CHECK(pairs <= vocab / 2 - 1, who, pairs, " pairs need as many distinct keys, but a vocab of ",
           vocab, " has only ", vocab / 2 - 1, " (keys are 1 to vocab/2 - 1)");
  PG_CHECK(context >= 4 * pairs && context <= (int64_t{1} << 20), who, "context is ", context,
           ", but ", pairs, " pairs need at least 4 * pairs = ", 4 * pairs,
           " tokens (the pairs, then a query slot of two tokens per pair)");
  PG_CHECK(power > 0 && power <= 1, who, "power is ", power, " (expected (0, 1])");
}

std::string RecallTask::to_json() const {
  return nlohmann::json{{"vocab", vocab}, {"context", context}, {"pairs", pairs}, {"power", power}}
      .dump();
}

RecallTask RecallTask::from_json(const std::string& text, const std::string& who) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  PG_CHECK(!j.is_discarded() && j.is_object(), who, "is not a JSON object: '", text.substr(0, 60),
           "'");
  RecallTask t;
  auto field = [&](const char* name, auto& value) {
    PG_CHECK(j.contains(name) && j[name].is_number(), who, "field '", name,
             "' is missing or not a number");
    value = j[name].get<std::decay_t<decltype(value)>>();
  };
  field("vocab", t.vocab);
  field("context", t.context);
  field("pairs", t.pairs);
  field("power", t.power);
  t.check(who);
  return t;
}

namespace {

// `count` distinct values from [low, high), in random order.
std::vector<int64_t> distinct(Generator& g, int64_t low, int64_t high, int64_t count) {
  std::vector<int64_t> out;
  out.reserve(count);
  if (count * 4 > high - low) {  // dense: a partial shuffle of the whole range
    std::vector<int64_t> all(high - low);
    std::iota(all.begin(), all.end(), low);
    for (int64_t i = 0; i < count; ++i)
      std::swap(all[i], all[g.randint(i, static_cast<int64_t>(all.size()))]);
    return {all.begin(), all.begin() + count};
  }
  while (static_cast<int64_t>(out.size()) < count) {  // sparse: draw again on a repeat
    const int64_t v = g.randint(low, high);
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

}  // namespace

Batch recall_batch(const RecallTask& task, uint64_t seed, int64_t first, int64_t count) {
  task.check("recall_batch");
  PG_CHECK(first >= 0 && count >= 1, "recall_batch", "expected first >= 0 and count >= 1, got ",
           first, " and ", count);
  const int64_t T = task.context, kv = task.pairs, half = task.vocab / 2;
  const int64_t slots = (T - 2 * kv) / 2;  // query slots: positions 2kv, 2kv + 2, ...
  Tensor x = empty({count, T}, {DType::I64}), y = empty({count, T}, {DType::I64});
  for (int64_t s = 0; s < count; ++s) {
    Generator g(seed * 0x9e3779b97f4a7c15ULL ^ (static_cast<uint64_t>(first + s) + 0x7ec411ULL));
    int64_t* in = x.data<int64_t>() + s * T;
    int64_t* target = y.data<int64_t>() + s * T;
    for (int64_t t = 0; t < T; ++t) {
      in[t] = g.randint(0, task.vocab);
      target[t] = kRecallNoTarget;
    }
    const std::vector<int64_t> keys = distinct(g, 1, half, kv);
    const std::vector<int64_t> values = distinct(g, half, task.vocab, kv);
    for (int64_t i = 0; i < kv; ++i) {
      in[2 * i] = keys[i];
      in[2 * i + 1] = values[i];
    }
    // kv distinct slots, slot j with weight w_j = (j+1)^(power-1): the kv largest of
    // log(u_j) / w_j (Efraimidis and Spirakis' weighted sampling without replacement).
    std::vector<std::pair<double, int64_t>> ranked(slots);
    for (int64_t j = 0; j < slots; ++j) {
      const double w = std::pow(static_cast<double>(j + 1), task.power - 1);
      ranked[j] = {std::log(1.0 - g.uniform()) / w, j};
    }
    std::partial_sort(ranked.begin(), ranked.begin() + kv, ranked.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first; });
    for (int64_t i = 0; i < kv; ++i) {
      const int64_t pos = 2 * kv + 2 * ranked[i].second;
      in[pos] = keys[i];
      target[pos] = values[i];
    }
  }
  return {x, y};
}

}  // namespace pg
