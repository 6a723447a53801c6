// quantize_config.json of Hugging Face GPTQ checkpoints: writing, and a small JSON reader for the keys we use.
#include "qk/formats/gptq_hf.hpp"

#include <cctype>
#include <charconv>
#include <map>
#include <optional>

namespace qk::gptq_hf {

std::string to_json(const QuantizeConfig& c) {
  c.validate();
  return fmt::format(
      "{{\n  \"bits\": {},\n  \"group_size\": {},\n  \"damp_percent\": {},\n  \"desc_act\": {},\n"
      "  \"static_groups\": {},\n  \"sym\": {},\n  \"true_sequential\": {},\n  \"quant_method\": \"{}\",\n"
      "  \"checkpoint_format\": \"{}\"\n}}\n",
      c.bits, c.group_size, c.damp_percent, c.desc_act, c.static_groups, c.sym, c.true_sequential, c.quant_method,
      c.checkpoint_format);
}

namespace {

// A scalar JSON value of the top-level object (objects and arrays are skipped, kept as "nested").
struct Scalar {
  enum Kind { Number, String, Bool, Null, Nested } kind = Null;
  double number = 0;
  std::string text;
  bool flag = false;
};

class Reader {
 public:
  Reader(std::string_view s, std::string_view what) : s_(s), what_(what) {}

  [[noreturn]] void error(std::string_view msg) const {
    fail<FormatError>("{}: invalid JSON at byte {}: {}", what_, i_, msg);
  }
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) error(fmt::format("expected '{}'", c));
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) error("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (c == '\\') {
        if (i_ >= s_.size()) error("unterminated escape");
        char e = s_[i_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u':
            if (i_ + 4 > s_.size()) error("short \\u escape");
            i_ += 4;
            out += '?';
            break;
          default: out += e;
        }
      } else {
        out += c;
      }
    }
  }
  Scalar value(int depth = 0) {
    if (depth > 64) error("nesting too deep");
    ws();
    if (i_ >= s_.size()) error("unexpected end");
    Scalar v;
    const char c = s_[i_];
    if (c == '"') {
      v.kind = Scalar::String;
      v.text = string();
    } else if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++i_;
      v.kind = Scalar::Nested;
      if (eat(close)) return v;
      do {
        if (close == '}') {
          ws();
          string();
          expect(':');
        }
        value(depth + 1);
      } while (eat(','));
      expect(close);
    } else if (s_.substr(i_, 4) == "true") {
      v.kind = Scalar::Bool;
      v.flag = true;
      i_ += 4;
    } else if (s_.substr(i_, 5) == "false") {
      v.kind = Scalar::Bool;
      i_ += 5;
    } else if (s_.substr(i_, 4) == "null") {
      i_ += 4;
    } else {
      size_t j = i_;
      while (j < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[j])) || s_[j] == '-' || s_[j] == '+' ||
                               s_[j] == '.' || s_[j] == 'e' || s_[j] == 'E'))
        ++j;
      if (j == i_) error("unexpected character");
      auto r = std::from_chars(s_.data() + i_, s_.data() + j, v.number);
      if (r.ec != std::errc() || r.ptr != s_.data() + j) error("bad number");
      v.kind = Scalar::Number;
      i_ = j;
    }
    return v;
  }
  // The members of the top-level object; members of `inner` (e.g. "quantization_config") when it is present.
  std::map<std::string, Scalar> object(std::string_view inner) {
    std::map<std::string, Scalar> out;
    expect('{');
    if (eat('}')) return out;
    do {
      ws();
      std::string key = string();
      expect(':');
      ws();
      if (!inner.empty() && key == inner && i_ < s_.size() && s_[i_] == '{') {
        auto sub = object({});
        sub["__inner__"] = Scalar{Scalar::Bool, 0, {}, true};
        inner_ = std::move(sub);
      } else {
        out[key] = value();
      }
    } while (eat(','));
    expect('}');
    return out;
  }
  std::optional<std::map<std::string, Scalar>> inner_;

 private:
  std::string_view s_;
  std::string_view what_;
  size_t i_ = 0;
};

}  // namespace

QuantizeConfig config_from_json(std::string_view json, std::string_view what) {
  Reader r(json, what);
  auto top = r.object("quantization_config");
  const auto& m = r.inner_ ? *r.inner_ : top;
  QuantizeConfig c;
  auto number = [&](const char* key, bool required) -> std::optional<double> {
    auto it = m.find(key);
    if (it == m.end()) {
      if (required) fail<FormatError>("{}: no \"{}\"", what, key);
      return std::nullopt;
    }
    if (it->second.kind != Scalar::Number) fail<FormatError>("{}: \"{}\" is not a number", what, key);
    return it->second.number;
  };
  auto boolean = [&](const char* key, bool& out) {
    auto it = m.find(key);
    if (it == m.end() || it->second.kind == Scalar::Null) return;
    if (it->second.kind != Scalar::Bool) fail<FormatError>("{}: \"{}\" is not true or false", what, key);
    out = it->second.flag;
  };
  auto text = [&](const char* key, std::string& out) {
    auto it = m.find(key);
    if (it == m.end() || it->second.kind == Scalar::Null) return;
    if (it->second.kind != Scalar::String) fail<FormatError>("{}: \"{}\" is not a string", what, key);
    out = it->second.text;
  };
  const double bits = *number("bits", true);
  const double group = *number("group_size", true);
  if (bits != static_cast<int>(bits) || group != static_cast<int64_t>(group))
    fail<FormatError>("{}: bits and group_size must be integers", what);
  c.bits = static_cast<int>(bits);
  c.group_size = static_cast<int64_t>(group);
  if (auto d = number("damp_percent", false)) c.damp_percent = *d;
  boolean("desc_act", c.desc_act);
  boolean("sym", c.sym);
  boolean("static_groups", c.static_groups);
  boolean("true_sequential", c.true_sequential);
  text("quant_method", c.quant_method);
  text("checkpoint_format", c.checkpoint_format);
  try {
    c.validate();
  } catch (const FormatError& e) {
    fail<FormatError>("{}: {}", what, e.what());
  }
  return c;
}

}  // namespace qk::gptq_hf
