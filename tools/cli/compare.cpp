#include "tools/cli/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "nn/checkpoint.h"
#include "nn/text.h"
#include "tools/cli/attention_rows.h"
#include "tools/cli/checkpoint_fields.h"
#include "tools/cli/run_lock.h"
#include "tools/cli/seed_stats.h"
#include "tools/cli/train_common.h"

namespace fs = std::filesystem;

namespace pg::tools {

namespace {

// A directory name for a spec: "poly:p=2,scale=n^-0.5" -> "poly_p=2_scale=n^-0.5".
std::string dir_name(std::string spec) {
  for (char& c : spec)
    if (c == ':' || c == ',' || c == '/') c = '_';
  return spec;
}

std::string run_dir(const CompareOptions& o, const std::string& spec, uint64_t seed) {
  return o.train.out + "/" + dir_name(spec) + "/seed-" + std::to_string(seed);
}

// The flags that decide what a run computes: a comparison continued in the same OUT must use
// the same ones (threads, device and OUT itself may change).
nlohmann::json comparison_flags(const CompareOptions& o) {
  const TrainOptions& t = o.train;
  nlohmann::json flags = {{"model", o.model},
                          {"steps", t.steps},
                          {"epochs", t.epochs},
                          {"batch", t.batch},
                          {"lr", t.lr},
                          {"warmup", t.warmup},
                          {"weight_decay", t.weight_decay},
                          {"grad_clip", t.grad_clip},
                          {"label_smoothing", t.label_smoothing},
                          {"flip", t.flip},
                          {"shift", t.shift},
                          {"normalize", t.normalize},
                          {"precision", t.precision},
                          {"data", t.data},
                          {"config", o.model == "vit" ? o.vit.to_json() : o.gpt.to_json()}};
  // Only where they apply, so that comparisons written before these flags existed continue.
  if (!t.glob.empty()) flags["glob"] = t.glob;
  if (o.model == "recall") flags["task"] = o.recall.to_json();
  return flags;
}

// Writes OUT/compare.json on the first run; later runs must match it.
void check_same_comparison(const CompareOptions& o) {
  const std::string path = o.train.out + "/compare.json";
  const nlohmann::json flags = comparison_flags(o);
  if (!fs::exists(path)) {
    std::ofstream(path) << flags.dump(2) << "\n";
    return;
  }
  std::ifstream in(path);
  nlohmann::json old = nlohmann::json::parse(in, nullptr, false);
  PG_CHECK(!old.is_discarded() && old.is_object(), path, "is not the JSON object compare writes");
  for (const auto& [key, value] : flags.items())
    PG_CHECK(old.contains(key) && old[key] == value, path,
             "this folder holds a comparison made with ", key, " = ",
             old.contains(key) ? old[key].dump() : "(absent)", ", not ", value.dump(),
             "; use another --out, or the same flags to continue it");
  for (const auto& [key, value] : old.items())
    PG_CHECK(flags.contains(key), path, "this folder holds a comparison made with ", key, " = ",
             value.dump(), ", not without it; use another --out, or the same flags to continue it");
}

// Column `col` (1-based, tab-separated, '#' lines skipped) of a tsv file, keyed by step.
std::vector<std::pair<double, double>> read_column(const std::string& file, int col) {
  std::ifstream in(file);
  std::vector<std::pair<double, double>> out;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<double> cells;
    size_t at = 0;
    while (at <= line.size()) {
      size_t tab = line.find('\t', at);
      cells.push_back(std::atof(line.substr(at, tab - at).c_str()));
      if (tab == std::string::npos) break;
      at = tab + 1;
    }
    if (static_cast<int>(cells.size()) >= col) out.emplace_back(cells[0], cells[col - 1]);
  }
  return out;
}

// The mean and standard deviation over seeds of one column of each seed's tsv, per step (the
// steps all seeds have), as OUT/<activation>/<name>: "step mean std".
std::string write_band(const std::vector<std::string>& dirs, const std::string& file, int col,
                       const std::string& out) {
  std::vector<std::vector<std::pair<double, double>>> runs;
  for (const auto& d : dirs) runs.push_back(read_column(d + "/" + file, col));
  size_t n = runs.front().size();
  for (const auto& r : runs) n = std::min(n, r.size());
  std::ofstream o(out);
  o << "# step\tmean over seeds\tstandard deviation\n";
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r[i].second);
    o << runs.front()[i].first << '\t' << mean(v) << '\t' << sample_std(v) << '\n';
  }
  return out;
}

// Rows 0, 1, 3, 7, ... (powers of two minus one) and the last one.
std::vector<size_t> sampled_rows(size_t count) {
  std::vector<size_t> rows;
  for (size_t r = 1; r <= count; r *= 2) rows.push_back(r - 1);
  if (rows.back() != count - 1) rows.push_back(count - 1);
  return rows;
}

// The per-row diagnostic of each activation's first-seed GPT: OUT/<activation>/rows.tsv and a
// report section.
void write_rows(const CompareOptions& o, std::ostream& md) {
  TextCorpus corpus = load_corpus(o.train.data, o.train.glob);
  md << "\n## Attention per row position\n\nRow i of causal attention sees i + 1 keys. Per "
        "query position, the RMS over batch, heads and layers of ||A_i||_2 (whose RMS over rows "
        "is ||A||_F/sqrt(N)), and in brackets the row's mass sum_j A_ij (1 for softmax), on the "
        "validation windows, for the final model of seed "
     << o.train.seed << ".\n\n| activation |";
  std::vector<std::string> lines;
  std::vector<size_t> shown;
  std::vector<PlotSeries> norm_plot, mass_plot;
  for (const auto& spec : o.activations) {
    const std::string dir = run_dir(o, spec, o.train.seed);
    Checkpoint ck = load_checkpoint(dir + "/checkpoint.safetensors");
    GptConfig cfg = gpt_config(ck);
    Gpt model(cfg);
    restore_checkpoint(ck, model, nullptr);
    AttentionRows rows = attention_rows(model, corpus.val, 32, 8);
    const size_t T = rows.norm.front().size(), L = rows.norm.size();
    std::ofstream tsv(o.train.out + "/" + dir_name(spec) + "/rows.tsv");
    tsv << "# row\tRMS over layers of ||A_i||_2\tmean over layers of sum_j A_ij\n";
    std::vector<double> norm(T), mass(T);
    for (size_t r = 0; r < T; ++r) {
      for (size_t l = 0; l < L; ++l) {
        norm[r] += rows.norm[l][r] * rows.norm[l][r] / static_cast<double>(L);
        mass[r] += rows.mass[l][r] / static_cast<double>(L);
      }
      norm[r] = std::sqrt(norm[r]);
      tsv << r << '\t' << norm[r] << '\t' << mass[r] << '\n';
    }
    if (shown.empty()) shown = sampled_rows(T);
    std::string line = "| `" + spec + "` |";
    for (size_t r : shown) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " %.3f (%.3g) |", norm[r], mass[r]);
      line += buf;
    }
    lines.push_back(line);
    const std::string file = o.train.out + "/" + dir_name(spec) + "/rows.tsv";
    norm_plot.push_back({spec, file, 1, 2});
    mass_plot.push_back({spec, file, 1, 3});
  }
  for (size_t r : shown) md << " i = " << r << " |";
  md << "\n|---|";
  for (size_t i = 0; i < shown.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& l : lines) md << l << "\n";
  md << "\n![||A_i|| per row](rows.png)\n\n![row mass](row_mass.png)\n";
  plot_png(o.train.out + "/rows.png", "RMS of ||A_i||_2 per query position (final models)",
           "query position i", "", norm_plot, true);
  // The odd powers' mass is signed: a linear axis.
  plot_png(o.train.out + "/row_mass.png", "row mass sum_j A_ij per query position",
           "query position i", "", mass_plot, false);
}

}  // namespace

RunSummary summarize_run(const std::string& dir, bool accuracy) {
  const bool vit = accuracy;  // the ViT's and recall's metric: test accuracy, higher is better
  std::ifstream in(dir + "/metrics.jsonl");
  PG_CHECK(in.good(), dir, "has no metrics.jsonl");
  RunSummary r;
  r.best_metric = vit ? 0 : INFINITY;
  // Each invocation of a resumed run restarts its clocks: the segments add up.
  double seconds = 0, segment = 0;
  bool evaluated = false;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step")) continue;
    const char* key = vit ? "test_accuracy" : "val_loss";
    if (j.contains(key) && j[key].is_number()) {
      r.final_metric = j[key].get<double>();
      r.best_metric =
          vit ? std::max(r.best_metric, r.final_metric) : std::min(r.best_metric, r.final_metric);
      evaluated = true;
      if (j.contains("eval_s") && j["eval_s"].is_number())
        r.eval_seconds += j["eval_s"].get<double>();
    }
    if (j.contains("loss")) {
      r.steps = j["step"].get<int64_t>();
      // Training time alone; runs written before "train_s" existed have only the wall clock.
      const char* clock = j.contains("train_s") ? "train_s" : "time_s";
      if (j.contains(clock) && j[clock].is_number()) {
        const double t = j[clock].get<double>();
        if (t < segment) seconds += segment;
        segment = t;
      }
      if (j.contains("a_frob_sqrt_n") && j["a_frob_sqrt_n"].is_array()) {
        // null where the linear path ran (it never forms A): NaN, "unavailable".
        r.a_frob_sqrt_n.clear();
        for (const auto& v : j["a_frob_sqrt_n"])
          r.a_frob_sqrt_n.push_back(v.is_number() ? v.get<double>()
                                                  : std::numeric_limits<double>::quiet_NaN());
      }
    }
  }
  PG_CHECK(evaluated, dir, "/metrics.jsonl has no evaluation: the run did not finish");
  r.ms_per_step = 1e3 * (seconds + segment) / static_cast<double>(std::max<int64_t>(r.steps, 1));
  return r;
}

int run_compare(const CompareOptions& o) {
  PG_CHECK(o.seeds >= 1, "--seeds", "expected 1 or more, got ", o.seeds);
  fs::create_directories(o.train.out);
  RunLock lock(o.train.out);  // the report and compare.json are this comparison's alone
  check_same_comparison(o);
  const bool vit = o.model == "vit";
  const bool accuracy = o.model != "gpt";  // ViT and recall: test accuracy, higher is better
  // results[a][k]: activation a, seed seed + k.
  std::vector<std::vector<RunSummary>> results;
  for (const auto& spec : o.activations) {
    results.emplace_back();
    for (int64_t k = 0; k < o.seeds; ++k) {
      TrainOptions t = o.train;
      t.attn = spec;
      t.seed = o.train.seed + static_cast<uint64_t>(k);
      t.out = run_dir(o, spec, t.seed);
      t.quiet = true;
      if (vit && t.steps == 0 && t.epochs == 0) t.epochs = 1;
      // A run that exists continues (or, finished, only evaluates again): a long comparison
      // can be stopped and started again.
      t.resume = fs::exists(t.out + "/checkpoint.safetensors");
      const std::string note = t.resume ? " (continuing the run in " + t.out + ")" : "";
      std::printf("\n=== %s, seed %llu%s ===\n", spec.c_str(), (unsigned long long)t.seed,
                  note.c_str());
      if (vit)
        train_vit(t, o.vit);
      else if (o.model == "recall")
        train_recall(t, o.gpt, o.recall);
      else
        train_gpt(t, o.gpt);
      write_tsv(t.out);
      results.back().push_back(summarize_run(t.out, accuracy));
    }
  }

  const std::string report = o.train.out + "/report.md";
  std::ofstream md(report);
  const std::string metric = accuracy ? "test accuracy" : "val loss";
  md << "# Attention activations compared ("
     << (vit        ? "ViT on Fashion-MNIST"
         : accuracy ? "associative recall " + o.recall.to_json()
                    : "GPT on text")
     << ")\n\n"
     << o.seeds << (o.seeds == 1 ? " seed (" : " seeds (") << o.train.seed;
  if (o.seeds > 1) md << " to " << o.train.seed + static_cast<uint64_t>(o.seeds - 1);
  md << "), the same data order per seed and the same budget (" << results.front().front().steps
     << " steps) for every activation; mean ± standard deviation over the seeds. The paired "
        "difference is each seed's final "
     << metric << " minus that of `" << o.activations.front()
     << "` with the same seed. Training ms/step leaves out the evaluations, whose seconds "
        "(in all, per run) are the next column.\n\n";
  md << "| activation | final " << metric << " | best " << metric << " | paired difference to `"
     << o.activations.front()
     << "` | training ms/step | evaluation s | ||A||_F/sqrt(N) per layer (end, mean) |\n"
     << "|---|---|---|---|---|---|---|\n";
  auto final_metrics = [&](size_t a) {
    std::vector<double> v;
    for (const RunSummary& r : results[a]) v.push_back(r.final_metric);
    return v;
  };
  for (size_t a = 0; a < results.size(); ++a) {
    std::vector<double> best_m, ms, eval_s;
    std::vector<double> afrob(results[a].front().a_frob_sqrt_n.size(), 0.0);
    for (const RunSummary& r : results[a]) {
      best_m.push_back(r.best_metric);
      ms.push_back(r.ms_per_step);
      eval_s.push_back(r.eval_seconds);
      for (size_t l = 0; l < afrob.size() && l < r.a_frob_sqrt_n.size(); ++l)
        afrob[l] += r.a_frob_sqrt_n[l] / static_cast<double>(results[a].size());
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f | %.1f", mean(ms), mean(eval_s));
    md << "| `" << o.activations[a] << "` | " << mean_std(final_metrics(a), accuracy) << " | "
       << mean_std(best_m, accuracy) << " | "
       << (a == 0
               ? "–"
               : mean_std(paired_differences(final_metrics(a), final_metrics(0)), accuracy, true))
       << " | " << buf << " | ";
    for (size_t l = 0; l < afrob.size(); ++l) {
      std::snprintf(buf, sizeof buf, "%s%.3f", l ? ", " : "", afrob[l]);
      md << buf;
    }
    md << " |\n";
  }
  if (o.seeds > 1) {
    md << "\n## Per seed (final " << metric << ")\n\n| activation |";
    for (int64_t k = 0; k < o.seeds; ++k) md << " seed " << o.train.seed + uint64_t(k) << " |";
    md << "\n|---|";
    for (int64_t k = 0; k < o.seeds; ++k) md << "---|";
    md << "\n";
    for (size_t a = 0; a < results.size(); ++a) {
      md << "| `" << o.activations[a] << "` |";
      for (const RunSummary& r : results[a])
        md << " " << format_value(r.final_metric, accuracy) << " |";
      md << "\n";
    }
  }
  md << "\n![loss](loss.png)\n\n![||A||_F/sqrt(N)](afrob.png)\n";
  std::vector<PlotSeries> loss, afrob;
  for (const auto& spec : o.activations) {
    std::vector<std::string> dirs;
    for (int64_t k = 0; k < o.seeds; ++k)
      dirs.push_back(run_dir(o, spec, o.train.seed + static_cast<uint64_t>(k)));
    const std::string base = o.train.out + "/" + dir_name(spec);
    loss.push_back({spec, write_band(dirs, "train.tsv", 3, base + "/loss_band.tsv"), 1, 2});
    afrob.push_back({spec, write_band(dirs, "afrob.tsv", 2, base + "/afrob_band.tsv"), 1, 2});
  }
  if (o.model == "gpt") write_rows(o, md);
  md.close();
  const char* band = o.seeds > 1 ? " (band: +-1 std over seeds)" : "";
  // A character model's loss spans less than a decade: a linear axis separates the curves.
  plot_png(o.train.out + "/loss.png", std::string("training loss, ~100-step moving average") + band,
           "step", "loss", loss, accuracy, o.seeds > 1);
  plot_png(o.train.out + "/afrob.png", std::string("||A||_F / sqrt(N), mean over layers") + band,
           "step", "", afrob, true, o.seeds > 1);
  std::printf("\nreport: %s\n", report.c_str());
  std::ifstream in(report);
  std::printf("%s", std::string(std::istreambuf_iterator<char>(in), {}).c_str());
  return 0;
}

}  // namespace pg::tools
