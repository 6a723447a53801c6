// .npy reader and writer. Layout facts from numpy/lib/format.py (format versions 1.0, 2.0, 3.0).
#include "qk/io/npy.hpp"

#include <cctype>
#include <optional>

#include "detail.hpp"

namespace qk::io {

namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

struct DescrEntry {
  const char* code;  // kind + size, without byte order
  DType dtype;
};
constexpr DescrEntry kDescr[] = {
    {"f4", DType::F32}, {"f2", DType::F16}, {"f8", DType::F64}, {"i1", DType::I8},  {"u1", DType::U8},
    {"i2", DType::I16}, {"u2", DType::U16}, {"i4", DType::I32}, {"u4", DType::U32}, {"i8", DType::I64},
    {"u8", DType::U64}, {"b1", DType::Bool},
};

// The subset of Python literal syntax np.save writes for the header: a dict of str keys to str, bool and
// tuple-of-int values.
class PyLiteral {
 public:
  PyLiteral(std::string_view s, const std::string& file) : s_(s), file_(file) {}

  struct Value {
    enum Kind { Str, Bool, Tuple } kind = Str;
    std::string str;
    bool b = false;
    std::vector<int64_t> ints;
  };

  std::vector<std::pair<std::string, Value>> dict() {
    std::vector<std::pair<std::string, Value>> out;
    expect('{');
    ws();
    while (peek() != '}') {
      std::string key = string();
      ws();
      expect(':');
      ws();
      out.emplace_back(std::move(key), value());
      ws();
      if (peek() == ',') {
        ++i_;
        ws();
      } else if (peek() != '}') {
        bad("expected ',' or '}'");
      }
    }
    ++i_;
    ws();
    if (i_ != s_.size()) bad("text after the header dict");
    return out;
  }

 private:
  [[noreturn]] void bad(std::string_view what) const {
    fail<FormatError>("{}: bad .npy header at character {}: {}", file_, i_, what);
  }
  char peek() const {
    if (i_ >= s_.size()) bad("unexpected end of header");
    return s_[i_];
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) bad(fmt::format("expected '{}'", c));
    ++i_;
  }
  std::string string() {
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    ++i_;
    std::string out;
    while (peek() != q) {
      if (s_[i_] == '\\') bad("escapes are not supported in header strings");
      out += s_[i_++];
    }
    ++i_;
    return out;
  }
  int64_t integer() {
    if (!std::isdigit(static_cast<unsigned char>(peek()))) bad("expected a non-negative integer");
    uint64_t v = 0;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      const uint64_t d = static_cast<uint64_t>(s_[i_] - '0');
      if (v > (static_cast<uint64_t>(INT64_MAX) - d) / 10) bad("dimension too large");
      v = v * 10 + d;
      ++i_;
    }
    if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 long suffix
    return static_cast<int64_t>(v);
  }
  Value value() {
    Value v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = Value::Str;
      v.str = string();
    } else if (s_.substr(i_, 4) == "True") {
      v.kind = Value::Bool;
      v.b = true;
      i_ += 4;
    } else if (s_.substr(i_, 5) == "False") {
      v.kind = Value::Bool;
      i_ += 5;
    } else if (c == '(') {
      v.kind = Value::Tuple;
      ++i_;
      ws();
      while (peek() != ')') {
        if (v.ints.size() >= 32) bad("more than 32 dimensions");
        v.ints.push_back(integer());
        ws();
        if (peek() == ',') {
          ++i_;
          ws();
        } else if (peek() != ')') {
          bad("expected ',' or ')' in the shape");
        }
      }
      ++i_;
    } else {
      bad("unsupported value (structured dtypes are not supported)");
    }
    return v;
  }

  std::string_view s_;
  const std::string& file_;
  size_t i_ = 0;
};

}  // namespace

std::string npy_descr(DType t) {
  for (const auto& e : kDescr)
    if (e.dtype == t) return std::string(dtype_size(t) == 1 ? "|" : "<") + e.code;
  fail<InvalidArgument>("dtype {} has no .npy equivalent", dtype_name(t));
}

namespace detail {

Parsed parse_npy(std::span<const std::byte> data, const std::string& file) {
  ByteReader r(data, file);
  if (r.view(6, "the .npy magic") != kMagic) fail<FormatError>("{}: not a .npy file (bad magic)", file);
  const auto major = r.get<uint8_t>("the .npy version");
  const auto minor = r.get<uint8_t>("the .npy version");
  uint64_t hlen;
  if (major == 1) hlen = r.get<uint16_t>("the .npy header length");
  else if (major == 2 || major == 3) hlen = r.get<uint32_t>("the .npy header length");
  else fail<FormatError>("{}: unsupported .npy version {}.{}", file, major, minor);
  const std::string_view header = r.view(hlen, "the .npy header");
  auto dict = PyLiteral(header, file).dict();

  std::optional<std::string> descr;
  std::optional<bool> fortran;
  std::optional<std::vector<int64_t>> shape;
  for (auto& [k, v] : dict) {
    if (k == "descr" && v.kind == PyLiteral::Value::Str) descr = v.str;
    else if (k == "fortran_order" && v.kind == PyLiteral::Value::Bool) fortran = v.b;
    else if (k == "shape" && v.kind == PyLiteral::Value::Tuple) shape = v.ints;
    else fail<FormatError>("{}: .npy header has an unexpected entry '{}'", file, k);
  }
  if (!descr || !fortran || !shape)
    fail<FormatError>("{}: .npy header lacks one of 'descr', 'fortran_order', 'shape'", file);
  if (*fortran)
    fail<FormatError>("{}: .npy array is in Fortran order; only C order is supported (save it with "
                      "np.ascontiguousarray)", file);
  const std::string& d = *descr;
  if (d.size() < 3) fail<FormatError>("{}: unsupported .npy dtype '{}'", file, d);
  const char order = d[0];
  const std::string code = d.substr(1);
  std::optional<DType> dt;
  for (const auto& e : kDescr)
    if (code == e.code) dt = e.dtype;
  if (!dt) fail<FormatError>("{}: unsupported .npy dtype '{}'", file, d);
  if (order == '>' && dtype_size(*dt) > 1)
    fail<FormatError>("{}: big-endian .npy dtype '{}' is not supported", file, d);
  if (order != '<' && order != '|' && order != '=' && order != '>')
    fail<FormatError>("{}: unsupported .npy dtype '{}'", file, d);
  if (order == '|' && dtype_size(*dt) > 1) fail<FormatError>("{}: unsupported .npy dtype '{}'", file, d);

  TensorInfo t;
  t.name = "array";
  t.dtype = *dt;
  t.shape = *shape;
  uint64_t n = 1;
  if (!shape_numel(t.shape, n)) fail<FormatError>("{}: .npy shape overflows", file);
  if (!mul_ok(n, dtype_size(*dt), t.nbytes) || t.nbytes > static_cast<uint64_t>(INT64_MAX))
    fail<FormatError>("{}: .npy shape overflows", file);
  t.offset = r.pos();
  if (t.nbytes != r.left())
    fail<FormatError>("{}: .npy data is {} bytes but shape {} of {} needs {}", file, r.left(),
                      fmt::join(t.shape, "x"), d, t.nbytes);
  Parsed p;
  p.tensors.push_back(std::move(t));
  return p;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------- writer

NpyWriter::NpyWriter(std::filesystem::path path, DType dtype, std::vector<int64_t> shape, const WriteOptions& opts)
    : file_(std::move(path), opts) {
  const std::string descr = npy_descr(dtype);
  uint64_t n = 1;
  if (!detail::shape_numel(shape, n))
    fail<InvalidArgument>("{}: negative or overflowing shape", file_.target().string());
  expected_ = n * dtype_size(dtype);
  std::string sh = "(";
  for (size_t i = 0; i < shape.size(); ++i) sh += fmt::format("{}{}", shape[i], shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
  sh += ")";
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, sh);
  // Version 1.0 while the header fits a u16 length; pad with spaces and '\n' so data starts at a multiple of 64.
  size_t prefix = 10;
  uint8_t major = 1;
  if (dict.size() + 1 + 10 > 65535) {
    prefix = 12;
    major = 2;
  }
  const size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  file_.write("\x93NUMPY", 6);
  const uint8_t ver[2] = {major, 0};
  file_.write(ver, 2);
  if (major == 1) {
    const auto len = static_cast<uint16_t>(dict.size());
    file_.write(&len, 2);
  } else {
    const auto len = static_cast<uint32_t>(dict.size());
    file_.write(&len, 4);
  }
  file_.write(dict.data(), dict.size());
}

void NpyWriter::append(std::span<const std::byte> bytes) {
  if (bytes.size() > expected_ - written_)
    fail<InvalidArgument>("{}: more data than the declared shape holds ({} bytes)", file_.target().string(),
                          expected_);
  file_.write(bytes);
  written_ += bytes.size();
}

void NpyWriter::commit() {
  if (written_ != expected_)
    fail<InvalidArgument>("{}: {} of {} data bytes written", file_.target().string(), written_, expected_);
  file_.commit();
}

void write_npy(const std::filesystem::path& path, DType dtype, const std::vector<int64_t>& shape,
               std::span<const std::byte> bytes, const WriteOptions& opts) {
  NpyWriter w(path, dtype, shape, opts);
  w.append(bytes);
  w.commit();
}

void write_npy(const std::filesystem::path& path, const RowMatrixXf& m, const WriteOptions& opts) {
  write_npy(path, DType::F32, {static_cast<int64_t>(m.rows()), static_cast<int64_t>(m.cols())},
            std::as_bytes(std::span<const float>(m.data(), static_cast<size_t>(m.size()))), opts);
}

}  // namespace qk::io
