// What every training program shares: progress line, metrics file, Ctrl-C, plots.
#pragma once
#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/device.h"

namespace pg::tools {

/// A live "step/total loss throughput ETA" line on a terminal; plain periodic lines otherwise.
class ProgressLine {
 public:
  ProgressLine(int64_t first_step, int64_t total, std::string unit);
  /// Reports `step` (1-based count of finished steps) with its loss and items processed.
  void update(int64_t step, double loss, int64_t items);
  /// Ends the line.
  void finish();

 private:
  int64_t first_, total_;
  std::string unit_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t items_ = 0;
};

/// Appends one JSON object per line to DIR/metrics.jsonl.
class MetricsWriter {
 public:
  /// Opens `path`; `append` keeps earlier lines (resume), else truncates.
  MetricsWriter(const std::string& path, bool append);
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
  std::string path_;
};

/// Rewrites the metrics file `path` with only the records of steps <= `step` (through a
/// temporary file and a rename): what a run killed after its checkpoint at `step` wrote later
/// goes, and so does a line that is not a record (one cut short by the kill). No file, no change.
void keep_metrics_through(const std::string& path, int64_t step);

/// Writes `text` to `path` through a temporary file and a rename: a reader never sees half of it.
void write_text_file(const std::string& path, const std::string& text);

/// Makes the first Ctrl-C request a clean stop (checked with stop_requested()).
void install_stop_handler();
/// True once Ctrl-C was pressed.
bool stop_requested();

/// "cpu", "cuda" or "cuda:N" as a Device; anything else is a pg::Error listing these. Plain
/// "cuda" is the GPU numbered `local_rank` (under mpirun: one GPU per process of a machine).
Device parse_device(const std::string& text, int local_rank = 0);

/// Draws curves with gnuplot into `png`: each series is (title, data file, x column, y column).
/// With `band`, column y + 1 holds a spread drawn as a shaded band y ± spread. Returns false
/// (and prints why) when gnuplot is missing or fails.
struct PlotSeries {
  std::string title, file;
  int x_col, y_col;
};
bool plot_png(const std::string& png, const std::string& title, const std::string& xlabel,
              const std::string& ylabel, const std::vector<PlotSeries>& series, bool log_y = false,
              bool band = false);

}  // namespace pg::tools

namespace pg::tools {
/// Turns DIR/metrics.jsonl into DIR/train.tsv, DIR/eval.tsv and DIR/afrob.tsv.
void write_tsv(const std::string& dir);
/// Turns DIR/metrics.jsonl into DIR/train.tsv and DIR/eval.tsv and draws DIR/curves.png
/// (training and evaluation loss, and accuracy when present).
void write_curves(const std::string& dir);
}  // namespace pg::tools
