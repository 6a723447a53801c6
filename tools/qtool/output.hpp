#pragma once
// Output helpers shared by qtool's subcommands: an aligned text table and a tiny JSON writer.
// Human-readable text by default, the same data as JSON with --json.
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

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

inline std::string json_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size() + 2);
  o += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) o += fmt::format("\\u{:04x}", c);
        else o += static_cast<char>(c);
    }
  }
  o += '"';
  return o;
}

// JSON number; non-finite values become null (JSON has no NaN/Inf).
inline std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt::format("{:.9g}", v);
}

// Streaming JSON writer: obj()/arr() open, end() closes, key() names the next value.
class Json {
 public:
  Json& obj() { sep(); s_ += '{'; first_.push_back(true); closer_.push_back('}'); return *this; }
  Json& arr() { sep(); s_ += '['; first_.push_back(true); closer_.push_back(']'); return *this; }
  Json& end() {
    s_ += closer_.back();
    closer_.pop_back();
    first_.pop_back();
    return *this;
  }
  Json& key(std::string_view k) { sep(); s_ += json_escape(k); s_ += ':'; after_key_ = true; return *this; }
  Json& val(std::string_view v) { sep(); s_ += json_escape(v); return *this; }
  Json& val(const char* v) { return val(std::string_view(v)); }
  Json& val(double v) { sep(); s_ += json_number(v); return *this; }
  Json& val(long long v) { sep(); s_ += std::to_string(v); return *this; }
  Json& val(int v) { return val(static_cast<long long>(v)); }
  Json& val(size_t v) { sep(); s_ += std::to_string(v); return *this; }
  Json& val(bool v) { sep(); s_ += v ? "true" : "false"; return *this; }
  Json& null() { sep(); s_ += "null"; return *this; }
  template <typename T>
  Json& kv(std::string_view k, const T& v) { key(k); return val(v); }
  const std::string& str() const { return s_; }

 private:
  void sep() {
    if (after_key_) { after_key_ = false; return; }
    if (!first_.empty()) {
      if (!first_.back()) s_ += ',';
      first_.back() = false;
    }
  }
  std::string s_;
  std::vector<bool> first_;
  std::string closer_;
  bool after_key_ = false;
};

}  // namespace qtool
