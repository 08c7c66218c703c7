#include "tools/compare.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tools/train_common.h"

namespace pg::tools {

namespace {

// A directory name for a spec: "poly:p=2,scale=n^-0.5" -> "poly_p=2_scale=n^-0.5".
std::string dir_name(std::string spec) {
  for (char& c : spec)
    if (c == ':' || c == ',' || c == '/') c = '_';
  return spec;
}

}  // namespace

int run_compare(const CompareOptions& o) {
  std::filesystem::create_directories(o.train.out);
  bool vit = o.model == "vit";
  std::vector<RunSummary> results;
  for (const auto& spec : o.activations) {
    TrainOptions t = o.train;
    t.attn = spec;
    t.out = o.train.out + "/" + dir_name(spec);
    t.quiet = true;
    if (vit && t.steps == 0 && t.epochs == 0) t.epochs = 1;
    std::printf("\n=== %s ===\n", spec.c_str());
    results.push_back(vit ? train_vit(t, o.vit) : train_gpt(t, o.gpt));
    write_tsv(t.out);
  }
  std::string report = o.train.out + "/report.md";
  std::ofstream md(report);
  md << "# Attention activations compared (" << (vit ? "ViT on Fashion-MNIST" : "GPT on text")
     << ")\n\nSame seed (" << o.train.seed << "), data order and budget (" << results.front().steps
     << " steps) for every activation.\n\n";
  md << "| activation | "
     << (vit ? "final test acc | best test acc" : "final val loss | best val loss")
     << " | ms/step | ||A||_F/sqrt(N) per layer (end) |\n|---|---|---|---|---|\n";
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    char buf[160];
    if (vit)
      std::snprintf(buf, sizeof buf, "%.2f%% | %.2f%%", 100 * r.final_metric, 100 * r.best_metric);
    else
      std::snprintf(buf, sizeof buf, "%.4f | %.4f", r.final_metric, r.best_metric);
    md << "| `" << o.activations[i] << "` | " << buf << " | ";
    std::snprintf(buf, sizeof buf, "%.1f", r.ms_per_step);
    md << buf << " | ";
    for (size_t l = 0; l < r.a_frob_sqrt_n.size(); ++l) {
      std::snprintf(buf, sizeof buf, "%s%.3f", l ? ", " : "", r.a_frob_sqrt_n[l]);
      md << buf;
    }
    md << " |\n";
  }
  md << "\n![loss](loss.png)\n\n![||A||_F/sqrt(N)](afrob.png)\n";
  md.close();
  std::vector<PlotSeries> loss, afrob;
  for (const auto& spec : o.activations) {
    std::string d = o.train.out + "/" + dir_name(spec);
    loss.push_back({spec, d + "/train.tsv", 1, 3});
    afrob.push_back({spec, d + "/afrob.tsv", 1, 2});
  }
  plot_png(o.train.out + "/loss.png", "training loss (moving average over ~100 steps)", "step",
           "loss", loss, true);
  plot_png(o.train.out + "/afrob.png", "||A||_F / sqrt(N), mean over layers", "step", "", afrob,
           true);
  std::printf("\nreport: %s\n", report.c_str());
  std::ifstream in(report);
  std::printf("%s", std::string(std::istreambuf_iterator<char>(in), {}).c_str());
  return 0;
}

}  // namespace pg::tools
