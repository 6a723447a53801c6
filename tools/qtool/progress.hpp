#pragma once
// A one-line progress display on stderr for long qtool runs: "[i/N] name  done/total MiB  rate MB/s  ETA".
// Shown only when stderr is a terminal and the user did not ask for --quiet; redrawn at most ten times a second,
// and erased at the end so the summary that follows starts on a clean line.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace qtool {

inline std::string human_bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, unit[u]) : fmt::format("{:.2f} {}", b, unit[u]);
}

inline std::string human_seconds(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

class Progress {
 public:
  using Clock = std::chrono::steady_clock;
  // enabled: the caller's wish (!quiet); the display also needs stderr to be a terminal.
  Progress(int64_t items, uint64_t total_bytes, bool enabled)
      : items_(items), total_(total_bytes), on_(enabled && isatty(fileno(stderr)) != 0), start_(Clock::now()) {}
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  bool active() const { return on_; }
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  // Item i (0-based) named `name` is being processed; `done` input bytes are finished in all.
  void update(int64_t i, std::string_view name, uint64_t done, bool force = false) {
    if (!on_) return;
    const auto now = Clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double t = elapsed();
    const double rate = t > 0 ? static_cast<double>(done) / t : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - std::min(done, total_)) / rate : -1.0;
    std::string n(name);
    if (n.size() > 40) n = "..." + n.substr(n.size() - 37);
    std::string line = fmt::format("[{}/{}] {:<40} {} / {}  {:.1f} MB/s  ETA {}", i + 1, items_, n,
                                    human_bytes(static_cast<double>(done)), human_bytes(static_cast<double>(total_)),
                                    rate / 1e6, human_seconds(eta));
    const size_t width = line.size();
    if (line.size() < shown_) line.append(shown_ - line.size(), ' ');
    shown_ = width;
    fmt::print(stderr, "\r{}", line);
    std::fflush(stderr);
  }

  // Erases the line (once).
  void finish() {
    if (!on_ || shown_ == 0) return;
    fmt::print(stderr, "\r{}\r", std::string(shown_, ' '));
    std::fflush(stderr);
    shown_ = 0;
  }

 private:
  int64_t items_;
  uint64_t total_;
  bool on_;
  Clock::time_point start_, last_{};
  size_t shown_ = 0;
};

}  // namespace qtool
