#include "tools/cli/train_common.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "core/error.h"

namespace pg::tools {

namespace {
std::atomic<bool> g_stop{false};

std::string hms(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600),
                  (long long)(s / 60 % 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}
}  // namespace

ProgressLine::ProgressLine(int64_t first_step, int64_t total, std::string unit)
    : first_(first_step),
      total_(total),
      unit_(std::move(unit)),
      tty_(isatty(STDOUT_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

void ProgressLine::update(int64_t step, double loss, int64_t items) {
  items_ += items;
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double since = std::chrono::duration<double>(now - last_print_).count();
  bool last = step == total_;
  // Terminals get ~10 updates a second; logs a line every 10% of the run.
  int64_t every = std::max<int64_t>(1, total_ / 10);
  if (tty_ ? (since < 0.1 && !last) : (step % every != 0 && !last && step != first_ + 1)) return;
  last_print_ = now;
  double done = static_cast<double>(step - first_);
  double rate = elapsed > 0 ? static_cast<double>(items_) / elapsed : 0;
  double eta = done > 0 ? elapsed / done * static_cast<double>(total_ - step) : 0;
  int width = 24,
      fill = static_cast<int>(width * static_cast<double>(step) / std::max<int64_t>(total_, 1));
  std::string bar = std::string(fill, '#') + std::string(width - fill, '.');
  std::printf("%s[%s] %lld/%lld loss %.4f  %.0f %s/s  ETA %s%s", tty_ ? "\r" : "", bar.c_str(),
              (long long)step, (long long)total_, loss, rate, unit_.c_str(), hms(eta).c_str(),
              tty_ ? "\033[K" : "\n");
  std::fflush(stdout);
}

void ProgressLine::finish() {
  if (tty_) std::printf("\n");
  std::fflush(stdout);
}

MetricsWriter::MetricsWriter(const std::string& path, bool append)
    : out_(path, append ? std::ios::app : std::ios::trunc), path_(path) {
  PG_CHECK(out_.good(), path, "cannot open the metrics file for writing");
}

void MetricsWriter::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  PG_CHECK(out_.good(), path_, "write failed");
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    PG_CHECK(out.good(), tmp, "cannot open for writing");
    out << text;
    out.flush();
    PG_CHECK(out.good(), tmp, "write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  PG_CHECK(!ec, path, "cannot replace it with ", tmp, ": ", ec.message());
}

void keep_metrics_through(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in.good()) return;
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() <= step)
      kept += line + '\n';
  }
  write_text_file(path, kept);
}

void install_stop_handler() {
  g_stop = false;
  std::signal(SIGINT, [](int) {
    if (g_stop) std::_Exit(130);  // a second Ctrl-C leaves at once
    g_stop = true;
  });
}

bool stop_requested() { return g_stop; }

bool plot_png(const std::string& png, const std::string& title, const std::string& xlabel,
              const std::string& ylabel, const std::vector<PlotSeries>& series, bool log_y,
              bool band) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::printf("gnuplot not found (apt-get install gnuplot-nox): no plot %s\n", png.c_str());
    return false;
  }
  std::ostringstream gp;
  gp << "set terminal pngcairo size 900,540 noenhanced\nset output '" << png << "'\n"
     << "set title '" << title << "'\nset xlabel '" << xlabel << "'\nset ylabel '" << ylabel
     << "'\nset grid\nset key outside right\n";
  if (log_y) gp << "set logscale y\n";
  gp << "plot ";
  // gnuplot cycles through 8 colours: series 9 and on are told apart by their dashes.
  for (size_t i = 0; i < series.size(); ++i) {
    const PlotSeries& p = series[i];
    if (band) {  // y - spread, clamped above zero for log scales, to y + spread
      std::ostringstream lo;
      lo << "$" << p.y_col << "-$" << p.y_col + 1;
      gp << (i ? ", " : "") << "'" << p.file << "' using " << p.x_col << ":(" << lo.str()
         << " > 1e-9 ? " << lo.str() << " : 1e-9):($" << p.y_col << "+$" << p.y_col + 1
         << ") with filledcurves fs transparent solid 0.15 noborder lc " << i + 1 << " notitle";
    }
    gp << ((i || band) ? ", " : "") << "'" << p.file << "' using " << p.x_col << ":" << p.y_col
       << " with lines lw 2 lc " << i + 1 << " dt " << i / 8 + 1 << " title '" << p.title << "'";
  }
  gp << "\n";
  std::string script = png + ".gp";
  {
    std::ofstream f(script);
    f << gp.str();
  }
  bool ok = std::system(("gnuplot '" + script + "' 2>/dev/null").c_str()) == 0;
  if (!ok) {
    // Some gnuplot builds lack cairo; fall back to the plain png terminal.
    std::string alt = gp.str();
    alt.replace(alt.find("pngcairo"), 8, "png");
    std::ofstream(script) << alt;
    ok = std::system(("gnuplot '" + script + "'").c_str()) == 0;
  }
  std::remove(script.c_str());
  if (!ok) std::printf("gnuplot failed: no plot %s\n", png.c_str());
  return ok;
}

}  // namespace pg::tools

namespace pg::tools {

void write_tsv(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::ofstream train(dir + "/train.tsv"), eval(dir + "/eval.tsv");
  std::ofstream afrob(dir + "/afrob.tsv");
  // The loss of one batch is noisy; a moving average over ~100 steps shows the trend.
  train << "# step\tloss\tloss (exponential moving average, 100 steps)\n";
  double ema = 0;
  bool first = true;
  afrob << "# step\tmean over layers of ||A||_F/sqrt(N)\n";
  eval << "# step\teval_loss\taccuracy\n";
  bool has_acc = false;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    // A line that is not one of ours (hand-edited, cut by a crash) is skipped, not fatal.
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number())
      continue;
    if (j.contains("loss") && j["loss"].is_number()) {
      double l = j["loss"].get<double>();
      ema = first ? l : 0.99 * ema + 0.01 * l;
      first = false;
      train << j["step"] << '\t' << l << '\t' << ema << '\n';
    }
    if (j.contains("a_frob_sqrt_n") && j["a_frob_sqrt_n"].is_array() &&
        !j["a_frob_sqrt_n"].empty()) {
      double m = 0;
      for (auto& v : j["a_frob_sqrt_n"]) m += v.is_number() ? v.get<double>() : NAN;
      afrob << j["step"] << '\t' << m / static_cast<double>(j["a_frob_sqrt_n"].size()) << '\n';
    }
    for (const char* key : {"test_loss", "val_loss"})
      if (j.contains(key) && j[key].is_number()) {
        bool acc = j.contains("test_accuracy") && j["test_accuracy"].is_number();
        has_acc = has_acc || acc;
        eval << j["step"] << '\t' << j[key] << '\t'
             << (acc ? j["test_accuracy"].get<double>() : 0.0) << '\n';
      }
  }
}

void write_curves(const std::string& dir) {
  write_tsv(dir);
  bool has_acc = false;
  {
    std::ifstream e(dir + "/eval.tsv");
    std::string line;
    std::getline(e, line);
    while (std::getline(e, line)) has_acc = has_acc || line.substr(line.rfind('\t') + 1) != "0";
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::printf("gnuplot not found (apt-get install gnuplot-nox): no plot in %s\n", dir.c_str());
    return;
  }
  std::string png = dir + "/curves.png", script = dir + "/curves.gp";
  {
    std::ofstream gp(script);
    gp << "set terminal png size 1100,420\nset output '" << png << "'\n"
       << "set multiplot layout 1," << (has_acc ? 2 : 1) << "\nset grid\nset xlabel 'step'\n"
       << "set title 'loss'\nplot '" << dir << "/train.tsv' using 1:2 with lines title 'train', '"
       << dir << "/eval.tsv' using 1:2 with linespoints lw 2 title 'eval'\n";
    if (has_acc)
      gp << "set title 'test accuracy'\nset yrange [*:1]\nplot '" << dir
         << "/eval.tsv' using 1:3 with linespoints lw 2 title 'accuracy'\n";
    gp << "unset multiplot\n";
  }
  if (std::system(("gnuplot '" + script + "'").c_str()) == 0)
    std::printf("plot: %s\n", png.c_str());
  else
    std::printf("gnuplot failed: no plot in %s\n", dir.c_str());
  std::remove(script.c_str());
}

Device parse_device(const std::string& text, int local_rank) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(local_rank);
  if (text.starts_with("cuda:") && text.size() > 5 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos && text.size() < 9)
    return Device::cuda(std::stoi(text.substr(5)));
  throw Error("--device", "unknown device '" + text + "' (expected cpu, cuda or cuda:N)");
}

}  // namespace pg::tools
