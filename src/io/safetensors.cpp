// safetensors reader and writer. Rules from huggingface/safetensors README.md ("Format") and its validation in
// safetensors/src/tensor.rs: header length <= 100,000,000; JSON object; entries {dtype, shape, data_offsets};
// optional "__metadata__" string map; offsets relative to the byte buffer after the header, tensors tiling the
// buffer exactly; byte size = elements x dtype size; no duplicate names.
#include "qk/io/safetensors.hpp"

#include <algorithm>
#include <charconv>
#include <memory>

#include "detail.hpp"
#include "util/json.hpp"

namespace qk::io {

namespace {

constexpr uint64_t kMaxHeader = 100'000'000;

struct StDtype {
  const char* name;
  DType dtype;
};
constexpr StDtype kDtypes[] = {
    {"BOOL", DType::Bool}, {"U8", DType::U8},   {"I8", DType::I8},     {"F8_E5M2", DType::F8_E5M2},
    {"F8_E4M3", DType::F8_E4M3}, {"I16", DType::I16}, {"U16", DType::U16}, {"F16", DType::F16},
    {"BF16", DType::BF16}, {"I32", DType::I32}, {"U32", DType::U32}, {"F32", DType::F32},
    {"F64", DType::F64},   {"I64", DType::I64}, {"U64", DType::U64},
};

using util::Json;
using util::JsonParser;

bool to_u64(const Json& j, uint64_t& out) {
  if (j.kind != Json::Number || j.text.empty() || j.text[0] == '-') return false;
  const char* b = j.text.data();
  const char* e = b + j.text.size();
  auto [p, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && p == e;
}

std::string json_quote(std::string_view s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"') o += "\\\"";
    else if (c == '\\') o += "\\\\";
    else if (c < 0x20) o += fmt::format("\\u{:04x}", c);
    else o += static_cast<char>(c);
  }
  return o + '"';
}

}  // namespace

bool safetensors_dtype(std::string_view name, DType& out) {
  for (const auto& d : kDtypes)
    if (name == d.name) {
      out = d.dtype;
      return true;
    }
  return false;
}

namespace detail {

Parsed parse_safetensors(std::span<const std::byte> data, const std::string& file) {
  ByteReader r(data, file);
  const uint64_t n = r.get<uint64_t>("the safetensors header length");
  if (n > kMaxHeader) fail<FormatError>("{}: safetensors header length {} exceeds 100 MB", file, n);
  if (n > r.left())
    fail<FormatError>("{}: safetensors header length {} runs past the end of the file ({} bytes)", file, n,
                      data.size());
  const std::string_view text = r.view(n, "the safetensors header");
  const uint64_t buf_start = 8 + n;
  const uint64_t buf_size = data.size() - buf_start;
  if (text.empty() || text[0] != '{') fail<FormatError>("{}: safetensors header does not start with '{{'", file);
  Json root = JsonParser(text, file, "safetensors header JSON").document();
  if (root.kind != Json::Object) fail<FormatError>("{}: safetensors header is not a JSON object", file);

  Parsed p;
  struct Span {
    uint64_t b, e;
    size_t idx;
  };
  std::vector<Span> spans;
  std::vector<std::string_view> names;
  bool seen_meta = false;
  for (size_t m = 0; m < root.keys.size(); ++m) {
    const std::string& key = root.keys[m];
    const Json& v = root.items[m];
    if (key == "__metadata__") {
      if (seen_meta) fail<FormatError>("{}: duplicate __metadata__", file);
      seen_meta = true;
      if (v.kind != Json::Object) fail<FormatError>("{}: __metadata__ is not an object", file);
      for (size_t k = 0; k < v.keys.size(); ++k) {
        const std::string& mk = v.keys[k];
        const Json& mv = v.items[k];
        if (mv.kind != Json::String)
          fail<FormatError>("{}: __metadata__ entry '{}' is not a string", file, mk);
        p.metadata.push_back({mk, MetaValue(mv.text)});
      }
      std::vector<const std::string*> keys;
      for (const auto& e : p.metadata) keys.push_back(&e.key);
      std::sort(keys.begin(), keys.end(), [](auto* a, auto* b) { return *a < *b; });
      for (size_t k = 1; k < keys.size(); ++k)
        if (*keys[k] == *keys[k - 1]) fail<FormatError>("{}: duplicate __metadata__ key '{}'", file, *keys[k]);
      continue;
    }
    if (v.kind != Json::Object) fail<FormatError>("{}: tensor '{}': entry is not an object", file, key);
    const Json *dtype = nullptr, *shape = nullptr, *offs = nullptr;
    for (size_t k = 0; k < v.keys.size(); ++k) {
      const std::string& fk = v.keys[k];
      const Json& fv = v.items[k];
      const Json** slot = fk == "dtype" ? &dtype : fk == "shape" ? &shape : fk == "data_offsets" ? &offs : nullptr;
      if (!slot) fail<FormatError>("{}: tensor '{}': unknown field '{}'", file, key, fk);
      if (*slot) fail<FormatError>("{}: tensor '{}': duplicate field '{}'", file, key, fk);
      *slot = &fv;
    }
    if (!dtype || !shape || !offs)
      fail<FormatError>("{}: tensor '{}': needs dtype, shape and data_offsets", file, key);
    TensorInfo t;
    t.name = key;
    if (dtype->kind != Json::String || !safetensors_dtype(dtype->text, t.dtype))
      fail<FormatError>("{}: tensor '{}': unknown dtype {}", file, key,
                        dtype->kind == Json::String ? dtype->text : std::string("(not a string)"));
    if (shape->kind != Json::Array) fail<FormatError>("{}: tensor '{}': shape is not an array", file, key);
    uint64_t numel = 1;
    for (const Json& d : shape->items) {
      uint64_t x;
      if (!to_u64(d, x) || x > static_cast<uint64_t>(INT64_MAX))
        fail<FormatError>("{}: tensor '{}': shape entry is not a non-negative integer", file, key);
      t.shape.push_back(static_cast<int64_t>(x));
    }
    if (!shape_numel(t.shape, numel)) fail<FormatError>("{}: tensor '{}': shape overflows", file, key);
    uint64_t nbytes;
    if (!mul_ok(numel, dtype_size(t.dtype), nbytes))
      fail<FormatError>("{}: tensor '{}': byte size overflows", file, key);
    if (offs->kind != Json::Array || offs->items.size() != 2)
      fail<FormatError>("{}: tensor '{}': data_offsets is not [begin, end]", file, key);
    uint64_t b, e;
    if (!to_u64(offs->items[0], b) || !to_u64(offs->items[1], e))
      fail<FormatError>("{}: tensor '{}': data_offsets are not non-negative integers", file, key);
    if (e < b) fail<FormatError>("{}: tensor '{}': data_offsets end {} < begin {}", file, key, e, b);
    if (e > buf_size)
      fail<FormatError>("{}: tensor '{}': data_offsets [{}, {}) run past the data buffer ({} bytes)", file, key, b,
                        e, buf_size);
    if (e - b != nbytes)
      fail<FormatError>("{}: tensor '{}': {} bytes at data_offsets but shape [{}] of {} needs {}", file, key, e - b,
                        fmt::join(t.shape, ", "), dtype->text, nbytes);
    t.offset = buf_start + b;
    t.nbytes = nbytes;
    spans.push_back({b, e, p.tensors.size()});
    p.tensors.push_back(std::move(t));
  }
  // Unique names (JSON object keys may repeat textually).
  {
    std::vector<const std::string*> sorted;
    for (const auto& t : p.tensors) sorted.push_back(&t.name);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return *a < *b; });
    for (size_t i = 1; i < sorted.size(); ++i)
      if (*sorted[i] == *sorted[i - 1]) fail<FormatError>("{}: tensor '{}': duplicate name", file, *sorted[i]);
  }
  // Tiling: sorted by offset, each begins where the previous ended, the last ends at the end of the file.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.b != b.b ? a.b < b.b : a.e < b.e; });
  uint64_t at = 0;
  for (const Span& s : spans) {
    const std::string& name = p.tensors[s.idx].name;
    if (s.b < at) fail<FormatError>("{}: tensor '{}': data [{}, {}) overlaps the previous tensor", file, name, s.b, s.e);
    if (s.b > at) fail<FormatError>("{}: tensor '{}': hole of {} bytes before its data", file, name, s.b - at);
    at = s.e;
  }
  if (at != buf_size)
    fail<FormatError>("{}: tensors cover {} bytes of the {}-byte data buffer", file, at, buf_size);
  return p;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------- writer

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, const WriteOptions& opts)
    : file_(std::move(path), opts) {}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  if (header_written_) fail<InvalidArgument>("{}: metadata set after the header was written", file_.target().string());
  for (auto& [k, v] : meta_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  meta_.emplace_back(std::move(key), std::move(value));
}

void SafetensorsWriter::add_tensor(std::string name, DType dtype, std::vector<int64_t> shape) {
  const std::string& f = file_.target().string();
  if (header_written_) fail<InvalidArgument>("{}: tensor '{}' declared after data was written", f, name);
  if (dtype == DType::Ggml) fail<InvalidArgument>("{}: tensor '{}': safetensors cannot hold ggml block types", f, name);
  if (name == "__metadata__" || name.empty()) fail<InvalidArgument>("{}: invalid tensor name '{}'", f, name);
  for (const auto& d : decls_)
    if (d.name == name) fail<InvalidArgument>("{}: tensor '{}' declared twice", f, name);
  uint64_t n = 1;
  if (!detail::shape_numel(shape, n)) fail<InvalidArgument>("{}: tensor '{}': negative or overflowing shape", f, name);
  decls_.push_back({std::move(name), dtype, std::move(shape), n * dtype_size(dtype)});
}

void SafetensorsWriter::write_header() {
  std::string h = "{";
  if (!meta_.empty()) {
    h += "\"__metadata__\":{";
    for (size_t i = 0; i < meta_.size(); ++i)
      h += fmt::format("{}{}:{}", i ? "," : "", json_quote(meta_[i].first), json_quote(meta_[i].second));
    h += "}";
  }
  uint64_t off = 0;
  for (size_t i = 0; i < decls_.size(); ++i) {
    const Decl& d = decls_[i];
    h += fmt::format("{}{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                     (i || !meta_.empty()) ? "," : "", json_quote(d.name), dtype_name(d.dtype),
                     fmt::join(d.shape, ","), off, off + d.nbytes);
    off += d.nbytes;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts at a multiple of 8
  const uint64_t n = h.size();
  file_.write(&n, 8);
  file_.write(h.data(), h.size());
  header_written_ = true;
}

void SafetensorsWriter::write_tensor(std::span<const std::byte> bytes) {
  if (!header_written_) write_header();
  detail::next_declared(decls_, next_, bytes.size(), file_.target().string());
  file_.write(bytes);
  ++next_;
}

void SafetensorsWriter::write_tensor(std::string_view name, std::span<const std::byte> bytes) {
  detail::check_next_name(decls_, next_, name, file_.target().string());
  write_tensor(bytes);
}

void SafetensorsWriter::commit() {
  if (!header_written_) write_header();
  detail::check_all_written(next_, decls_.size(), file_.target().string());
  file_.commit();
}

}  // namespace qk::io
