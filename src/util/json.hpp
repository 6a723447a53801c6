#pragma once
// Private to src/: the JSON parser shared by the readers of model files.
#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "qk/core/error.hpp"

namespace qk::util {

// A small strict JSON parser (RFC 8259) for the JSON inside model files: the safetensors header, GPTQ's
// quantize_config.json, the bitsandbytes quant state. Objects keep their key order, numbers keep their text.
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double number = 0;                // Number: the value (nearest double)
  std::string text;                 // String: decoded UTF-8; Number: the literal
  std::vector<Json> items;          // Array elements; Object member values
  std::vector<std::string> keys;    // Object member names, parallel to items

  // The member named `key` of an object (the last one when the name repeats), or nullptr.
  const Json* find(std::string_view key) const {
    for (size_t m = keys.size(); m-- > 0;)
      if (keys[m] == key) return &items[m];
    return nullptr;
  }
};

class JsonParser {
 public:
  // Errors read "<file>: bad <label> at byte N: <problem>".
  JsonParser(std::string_view s, const std::string& file, std::string_view label = "JSON")
      : s_(s), file_(file), label_(label) {}
  Json document() {
    ws();
    Json v = value(0);
    ws();
    if (i_ != s_.size()) bad("text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void bad(std::string_view what) const {
    fail<FormatError>("{}: bad {} at byte {}: {}", file_, label_, i_, what);
  }
  bool eof() const { return i_ >= s_.size(); }
  char peek() const {
    if (eof()) bad("unexpected end of the header");
    return s_[i_];
  }
  void ws() {
    while (!eof() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) bad(fmt::format("expected '{}'", c));
    ++i_;
  }
  void literal(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) bad("unknown literal");
    i_ += w.size();
  }
  Json value(int depth) {
    if (depth > 64) bad("nested more than 64 deep");
    Json v;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::Object;
      ++i_;
      ws();
      if (peek() == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        ws();
        std::string k = string();
        ws();
        expect(':');
        ws();
        v.keys.push_back(std::move(k));
        v.items.push_back(value(depth + 1));
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Json::Array;
      ++i_;
      ws();
      if (peek() == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        ws();
        v.items.push_back(value(depth + 1));
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.kind = Json::String;
      v.text = string();
      return v;
    }
    if (c == 't') {
      literal("true");
      v.kind = Json::Bool;
      v.b = true;
      return v;
    }
    if (c == 'f') {
      literal("false");
      v.kind = Json::Bool;
      return v;
    }
    if (c == 'n') {
      literal("null");
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Number;
      v.text = number();
      const auto r = std::from_chars(v.text.data(), v.text.data() + v.text.size(), v.number);
      if (r.ec == std::errc::result_out_of_range) v.number = v.text[0] == '-' ? -HUGE_VAL : HUGE_VAL;
      return v;
    }
    bad(fmt::format("unexpected character 0x{:02x}", static_cast<unsigned char>(c)));
  }
  std::string number() {
    const size_t start = i_;
    auto digits = [&] {
      const size_t d0 = i_;
      while (!eof() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      if (i_ == d0) bad("malformed number");
    };
    if (peek() == '-') ++i_;
    if (peek() == '0') ++i_;
    else digits();
    if (!eof() && s_[i_] == '.') {
      ++i_;
      digits();
    }
    if (!eof() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!eof() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      digits();
    }
    return std::string(s_.substr(start, i_ - start));
  }
  unsigned hex4() {
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = peek();
      ++i_;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else bad("bad \\u escape");
    }
    return v;
  }
  static void put_utf8(std::string& o, unsigned cp) {
    if (cp < 0x80) {
      o += static_cast<char>(cp);
    } else if (cp < 0x800) {
      o += static_cast<char>(0xC0 | (cp >> 6));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      o += static_cast<char>(0xE0 | (cp >> 12));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      o += static_cast<char>(0xF0 | (cp >> 18));
      o += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string string() {
    expect('"');
    std::string o;
    for (;;) {
      const char c = peek();
      ++i_;
      if (c == '"') return o;
      if (static_cast<unsigned char>(c) < 0x20) bad("control character in a string");
      if (c != '\\') {
        o += c;
        continue;
      }
      const char e = peek();
      ++i_;
      switch (e) {
        case '"': o += '"'; break;
        case '\\': o += '\\'; break;
        case '/': o += '/'; break;
        case 'b': o += '\b'; break;
        case 'f': o += '\f'; break;
        case 'n': o += '\n'; break;
        case 'r': o += '\r'; break;
        case 't': o += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (s_.substr(i_, 2) != "\\u") bad("lone surrogate");
            i_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) bad("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            bad("lone surrogate");
          }
          put_utf8(o, cp);
          break;
        }
        default: bad("unknown escape");
      }
    }
  }

  std::string_view s_;
  const std::string& file_;
  std::string_view label_;
  size_t i_ = 0;
};

}  // namespace qk::util
