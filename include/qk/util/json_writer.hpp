#pragma once
// A small streaming JSON writer, for reports and plans (the reader, strict RFC 8259, is private to src/util).
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace qk::util {

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

// Streaming JSON writer (RFC 8259): obj()/arr() open, end() closes, key() names the next value; kv() both.
class JsonWriter {
 public:
  JsonWriter& obj() { sep(); s_ += '{'; first_.push_back(true); closer_.push_back('}'); return *this; }
  JsonWriter& arr() { sep(); s_ += '['; first_.push_back(true); closer_.push_back(']'); return *this; }
  JsonWriter& end() {
    s_ += closer_.back();
    closer_.pop_back();
    first_.pop_back();
    return *this;
  }
  JsonWriter& key(std::string_view k) { sep(); s_ += json_escape(k); s_ += ':'; after_key_ = true; return *this; }
  JsonWriter& val(std::string_view v) { sep(); s_ += json_escape(v); return *this; }
  JsonWriter& val(const char* v) { return val(std::string_view(v)); }
  JsonWriter& val(double v) { sep(); s_ += json_number(v); return *this; }
  JsonWriter& val(long long v) { sep(); s_ += std::to_string(v); return *this; }
  JsonWriter& val(long v) { return val(static_cast<long long>(v)); }
  JsonWriter& val(int v) { return val(static_cast<long long>(v)); }
  JsonWriter& val(size_t v) { sep(); s_ += std::to_string(v); return *this; }
  JsonWriter& val(bool v) { sep(); s_ += v ? "true" : "false"; return *this; }
  JsonWriter& null() { sep(); s_ += "null"; return *this; }
  template <typename T>
  JsonWriter& kv(std::string_view k, const T& v) { key(k); return val(v); }
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

}  // namespace qk::util
