#pragma once
// Output helpers shared by qtool's subcommands: an aligned text table and a tiny JSON writer.
// Human-readable text by default, the same data as JSON with --json.
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "qk/util/json_writer.hpp"

namespace qtool {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Right-aligns every column except the first.
  void print(std::FILE* out = stdout) const {
    std::vector<size_t> w(header_.size(), 0);
    auto widen = [&](const std::vector<std::string>& r) {
      for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
    };
    widen(header_);
    for (const auto& r : rows_) widen(r);
    auto line = [&](const std::vector<std::string>& r) {
      std::string s;
      for (size_t i = 0; i < w.size(); ++i) {
        const std::string& c = i < r.size() ? r[i] : std::string();
        if (i) s += "  ";
        s += i == 0 ? fmt::format("{:<{}}", c, w[i]) : fmt::format("{:>{}}", c, w[i]);
      }
      while (!s.empty() && s.back() == ' ') s.pop_back();
      fmt::print(out, "{}\n", s);
    };
    line(header_);
    size_t total = 0;
    for (size_t x : w) total += x;
    fmt::print(out, "{}\n", std::string(total + 2 * (w.size() - 1), '-'));
    for (const auto& r : rows_) line(r);
  }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// JSON output: the library's writer.
using Json = qk::util::JsonWriter;
using qk::util::json_escape;
using qk::util::json_number;

}  // namespace qtool
