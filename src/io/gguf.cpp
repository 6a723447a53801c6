// GGUF v3 reader and writer. Layout from ggml docs/gguf.md and ggml/src/gguf.cpp (gguf_init_from_file_impl,
// gguf_write_to_buf); type sizes from ggml/src/ggml.c type_traits and ggml-common.h block structs.
#include "qk/io/gguf.hpp"

#include <algorithm>
#include <cctype>

#include "detail.hpp"

namespace qk::io {

namespace {

constexpr uint32_t kDefaultAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT
constexpr size_t kMaxName = 64;             // GGML_MAX_NAME: names are shorter than this
constexpr uint32_t kMaxDims = 4;            // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 16;

// The ggml type table, the only one in qk (formats/ggml.hpp builds its encoder table from it): {id, name, ggml's
// spelling, elements per block, bytes per block} from ggml/src/ggml.c type_traits. Ids 4, 5 (Q4_2, Q4_3) and
// 31-33, 36-38 (repacked Q4_0_x_x / IQ4_NL_x_x) were removed from ggml and are not accepted.
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", "f32", 1, 4}, {1, "F16", "f16", 1, 2}, {2, "Q4_0", "q4_0", 32, 18},
    {3, "Q4_1", "q4_1", 32, 20}, {6, "Q5_0", "q5_0", 32, 22}, {7, "Q5_1", "q5_1", 32, 24},
    {8, "Q8_0", "q8_0", 32, 34}, {9, "Q8_1", "q8_1", 32, 36}, {10, "Q2_K", "q2_K", 256, 84},
    {11, "Q3_K", "q3_K", 256, 110}, {12, "Q4_K", "q4_K", 256, 144}, {13, "Q5_K", "q5_K", 256, 176},
    {14, "Q6_K", "q6_K", 256, 210}, {15, "Q8_K", "q8_K", 256, 292}, {16, "IQ2_XXS", "iq2_xxs", 256, 66},
    {17, "IQ2_XS", "iq2_xs", 256, 74}, {18, "IQ3_XXS", "iq3_xxs", 256, 98}, {19, "IQ1_S", "iq1_s", 256, 50},
    {20, "IQ4_NL", "iq4_nl", 32, 18}, {21, "IQ3_S", "iq3_s", 256, 110}, {22, "IQ2_S", "iq2_s", 256, 82},
    {23, "IQ4_XS", "iq4_xs", 256, 136}, {24, "I8", "i8", 1, 1}, {25, "I16", "i16", 1, 2},
    {26, "I32", "i32", 1, 4}, {27, "I64", "i64", 1, 8}, {28, "F64", "f64", 1, 8},
    {29, "IQ1_M", "iq1_m", 256, 56}, {30, "BF16", "bf16", 1, 2}, {34, "TQ1_0", "tq1_0", 256, 54},
    {35, "TQ2_0", "tq2_0", 256, 66}, {39, "MXFP4", "mxfp4", 32, 17},
};

DType plain_dtype(int type) {
  switch (type) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 30: return DType::BF16;
    case 24: return DType::I8;
    case 25: return DType::I16;
    case 26: return DType::I32;
    case 27: return DType::I64;
    case 28: return DType::F64;
    default: return DType::Ggml;
  }
}

size_t scalar_size(uint32_t t) {
  switch (static_cast<GgufType>(t)) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

// Smallest encoding of one value of type t (for bounding counts before allocating).
size_t min_size(uint32_t t) {
  if (t == static_cast<uint32_t>(GgufType::String)) return 8;
  if (t == static_cast<uint32_t>(GgufType::Array)) return 12;
  return scalar_size(t);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

class GgufParser {
 public:
  GgufParser(std::span<const std::byte> d, const std::string& file) : d_(d), r_(d, file), file_(file) {}

  detail::Parsed parse() {
    detail::Parsed p;
    if (r_.view(4, "the GGUF magic") != "GGUF") fail<FormatError>("{}: not a GGUF file (bad magic)", file_);
    const auto version = r_.get<uint32_t>("the GGUF version");
    if (version != 3 && version != 2)
      fail<FormatError>("{}: unsupported GGUF version {} (3 is supported, 2 read as 3)", file_, version);
    const auto n_tensors = r_.get<uint64_t>("the tensor count");
    const auto n_kv = r_.get<uint64_t>("the metadata count");
    if (n_kv > r_.left() / 13)
      fail<FormatError>("{}: metadata count {} cannot fit in the file", file_, n_kv);
    if (n_tensors > r_.left() / 24)
      fail<FormatError>("{}: tensor count {} cannot fit in the file", file_, n_tensors);

    p.metadata.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key(string("a metadata key"));
      if (key.empty()) fail<FormatError>("{}: metadata entry {} has an empty key", file_, i);
      const auto type = r_.get<uint32_t>("a metadata value type");
      ctx_ = &key;
      MetaValue v = value(type, 0);
      p.metadata.push_back({std::move(key), std::move(v)});
    }
    ctx_ = nullptr;
    {  // unique keys (sorted check: O(n log n) however many entries a hostile file declares)
      std::vector<const std::string*> keys;
      for (const auto& e : p.metadata) keys.push_back(&e.key);
      std::sort(keys.begin(), keys.end(), [](auto* a, auto* b) { return *a < *b; });
      for (size_t i = 1; i < keys.size(); ++i)
        if (*keys[i] == *keys[i - 1]) fail<FormatError>("{}: duplicate metadata key '{}'", file_, *keys[i]);
    }

    uint32_t alignment = kDefaultAlignment;
    if (const MetaValue* a = find_meta(p.metadata, "general.alignment")) {
      if (!std::holds_alternative<uint32_t>(*a))
        fail<FormatError>("{}: general.alignment is a {}, not a u32", file_,
                          gguf_type_name(static_cast<uint32_t>(gguf_type_of(*a))));
      alignment = std::get<uint32_t>(*a);
      if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        fail<FormatError>("{}: general.alignment {} is not a power of two", file_, alignment);
    }

    std::vector<uint64_t> rel(static_cast<size_t>(n_tensors));
    p.tensors.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
      TensorInfo t;
      t.name = std::string(string("a tensor name"));
      if (t.name.size() >= kMaxName)
        fail<FormatError>("{}: tensor '{}': name is {} bytes, the limit is {}", file_, t.name, t.name.size(),
                          kMaxName - 1);
      const auto n_dims = r_.get<uint32_t>("a tensor's dimension count");
      if (n_dims > kMaxDims)
        fail<FormatError>("{}: tensor '{}': {} dimensions, at most {} allowed", file_, t.name, n_dims, kMaxDims);
      std::vector<int64_t> ne(n_dims);
      uint64_t numel = 1;
      for (uint32_t k = 0; k < n_dims; ++k) {
        const auto x = r_.get<uint64_t>("a tensor dimension");
        if (x > static_cast<uint64_t>(INT64_MAX))
          fail<FormatError>("{}: tensor '{}': element count overflows", file_, t.name);
        ne[k] = static_cast<int64_t>(x);
      }
      if (!detail::shape_numel(ne, numel)) fail<FormatError>("{}: tensor '{}': element count overflows", file_, t.name);
      t.shape.assign(ne.rbegin(), ne.rend());
      t.ggml_type = static_cast<int>(r_.get<uint32_t>("a tensor type"));
      const GgmlTypeInfo* ti = ggml_type_info(t.ggml_type);
      if (!ti) fail<FormatError>("{}: tensor '{}': unknown ggml type {}", file_, t.name, t.ggml_type);
      t.dtype = plain_dtype(t.ggml_type);
      const int64_t row = n_dims ? ne[0] : 1;
      if (row % ti->block_size != 0)
        fail<FormatError>("{}: tensor '{}': row length {} is not a multiple of {}'s block of {}", file_, t.name,
                          row, ti->name, ti->block_size);
      if (!detail::mul_ok(numel / static_cast<uint64_t>(ti->block_size), static_cast<uint64_t>(ti->type_size),
                          t.nbytes))
        fail<FormatError>("{}: tensor '{}': byte size overflows", file_, t.name);
      rel[i] = r_.get<uint64_t>("a tensor offset");
      if (rel[i] % alignment != 0)
        fail<FormatError>("{}: tensor '{}': offset {} is not a multiple of the alignment {}", file_, t.name, rel[i],
                          alignment);
      p.tensors.push_back(std::move(t));
    }
    {
      std::vector<const std::string*> names;
      for (const auto& t : p.tensors) names.push_back(&t.name);
      std::sort(names.begin(), names.end(), [](auto* a, auto* b) { return *a < *b; });
      for (size_t i = 1; i < names.size(); ++i)
        if (*names[i] == *names[i - 1]) fail<FormatError>("{}: tensor '{}': duplicate name", file_, *names[i]);
    }

    const uint64_t data_start = align_up(r_.pos(), alignment);
    const uint64_t size = d_.size();
    for (size_t i = 0; i < p.tensors.size(); ++i) {
      TensorInfo& t = p.tensors[i];
      uint64_t begin, end;
      if (!detail::add_ok(data_start, rel[i], begin) || !detail::add_ok(begin, t.nbytes, end) || end > size)
        fail<FormatError>("{}: tensor '{}': data [{}, +{}) at offset {} past the data start {} runs past the end of "
                          "the file ({} bytes)", file_, t.name, rel[i], t.nbytes, rel[i], data_start, size);
      t.offset = begin;
    }
    // No two tensors may share bytes.
    std::vector<const TensorInfo*> by_off;
    for (const auto& t : p.tensors) by_off.push_back(&t);
    std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_off.size(); ++i)
      if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->nbytes)
        fail<FormatError>("{}: tensor '{}': data overlaps tensor '{}'", file_, by_off[i]->name, by_off[i - 1]->name);
    return p;
  }

 private:
  std::string_view string(std::string_view what) {
    const auto n = r_.get<uint64_t>(what);
    if (n > r_.left())
      fail<FormatError>("{}: {}{}: string length {} runs past the end of the file", file_, what,
                        ctx_ ? fmt::format(" (key '{}')", *ctx_) : std::string(), n);
    return r_.view(static_cast<size_t>(n), what);
  }

  MetaValue value(uint32_t type, int depth) {
    switch (static_cast<GgufType>(type)) {
      case GgufType::U8: return r_.get<uint8_t>("a u8 value");
      case GgufType::I8: return r_.get<int8_t>("an i8 value");
      case GgufType::U16: return r_.get<uint16_t>("a u16 value");
      case GgufType::I16: return r_.get<int16_t>("an i16 value");
      case GgufType::U32: return r_.get<uint32_t>("a u32 value");
      case GgufType::I32: return r_.get<int32_t>("an i32 value");
      case GgufType::F32: return r_.get<float>("an f32 value");
      case GgufType::Bool: {
        const auto b = r_.get<uint8_t>("a bool value");
        if (b > 1) fail<FormatError>("{}: key '{}': bool value {} is neither 0 nor 1", file_, key(), b);
        return b != 0;
      }
      case GgufType::String: return std::string(string("a string value"));
      case GgufType::U64: return r_.get<uint64_t>("a u64 value");
      case GgufType::I64: return r_.get<int64_t>("an i64 value");
      case GgufType::F64: return r_.get<double>("an f64 value");
      case GgufType::Array: {
        if (depth >= kMaxArrayDepth)
          fail<FormatError>("{}: key '{}': arrays nested more than {} deep", file_, key(), kMaxArrayDepth);
        auto arr = std::make_shared<MetaArray>();
        const auto et = r_.get<uint32_t>("an array element type");
        if (et > 12) fail<FormatError>("{}: key '{}': unknown array element type {}", file_, key(), et);
        arr->element_type = static_cast<int>(et);
        const auto n = r_.get<uint64_t>("an array length");
        if (n > r_.left() / min_size(et))
          fail<FormatError>("{}: key '{}': array of {} {} cannot fit in the file", file_, key(), n,
                            gguf_type_name(et));
        arr->values.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) arr->values.push_back(value(et, depth + 1));
        return arr;
      }
    }
    fail<FormatError>("{}: key '{}': unknown value type {}", file_, key(), type);
  }
  std::string_view key() const { return ctx_ ? std::string_view(*ctx_) : std::string_view("?"); }

  std::span<const std::byte> d_;
  detail::ByteReader r_;
  const std::string& file_;
  const std::string* ctx_ = nullptr;
};

}  // namespace

const char* gguf_type_name(uint32_t t) {
  static constexpr const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};
  return t < 13 ? names[t] : "unknown";
}

GgufType gguf_type_of(const MetaValue& v) {
  static constexpr GgufType by_index[] = {GgufType::U8,   GgufType::I8,     GgufType::U16, GgufType::I16,
                                          GgufType::U32,  GgufType::I32,    GgufType::F32, GgufType::Bool,
                                          GgufType::String, GgufType::U64,  GgufType::I64, GgufType::F64,
                                          GgufType::Array};
  return by_index[v.index()];
}

const GgmlTypeInfo* ggml_type_info(int id) {
  for (const auto& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

std::span<const GgmlTypeInfo> ggml_types() { return kGgmlTypes; }

int ggml_type_from_name(std::string_view name) {
  for (const auto& t : kGgmlTypes) {
    const std::string_view n = t.name;
    if (n.size() == name.size() &&
        std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) { return a == std::toupper(static_cast<unsigned char>(b)); }))
      return t.id;
  }
  return -1;
}

int ggml_type_of(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::BF16: return 30;
    case DType::I8: return 24;
    case DType::I16: return 25;
    case DType::I32: return 26;
    case DType::I64: return 27;
    case DType::F64: return 28;
    default: return -1;
  }
}

uint64_t ggml_nbytes(int type, const std::vector<int64_t>& shape) {
  const GgmlTypeInfo* ti = ggml_type_info(type);
  if (!ti) fail<InvalidArgument>("unknown ggml type {}", type);
  uint64_t n = 1;
  if (!detail::shape_numel(shape, n)) fail<InvalidArgument>("negative or overflowing shape");
  const int64_t row = shape.empty() ? 1 : shape.back();
  if (row % ti->block_size != 0)
    fail<InvalidArgument>("row length {} is not a multiple of {}'s block of {}", row, ti->name, ti->block_size);
  return n / static_cast<uint64_t>(ti->block_size) * static_cast<uint64_t>(ti->type_size);
}

const MetaValue* find_meta(const std::vector<MetaEntry>& meta, std::string_view key) {
  for (const auto& e : meta)
    if (e.key == key) return &e.value;
  return nullptr;
}

namespace detail {
Parsed parse_gguf(std::span<const std::byte> data, const std::string& file) { return GgufParser(data, file).parse(); }
}  // namespace detail

// ---------------------------------------------------------------------------------------------- writer

namespace {

template <typename T>
void put(std::string& b, T v) {
  b.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& b, std::string_view s) {
  put<uint64_t>(b, s.size());
  b.append(s);
}

void put_value(std::string& b, const MetaValue& v, const std::string& key, int depth) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          put_string(b, x);
        } else if constexpr (std::is_same_v<T, bool>) {
          put<uint8_t>(b, x ? 1 : 0);
        } else if constexpr (std::is_same_v<T, std::shared_ptr<MetaArray>>) {
          if (!x) fail<InvalidArgument>("GGUF key '{}': null array", key);
          if (depth >= kMaxArrayDepth) fail<InvalidArgument>("GGUF key '{}': arrays nested too deep", key);
          if (x->element_type < 0 || x->element_type > 12)
            fail<InvalidArgument>("GGUF key '{}': unknown array element type {}", key, x->element_type);
          put<uint32_t>(b, static_cast<uint32_t>(x->element_type));
          put<uint64_t>(b, x->values.size());
          for (const auto& e : x->values) {
            if (static_cast<int>(gguf_type_of(e)) != x->element_type)
              fail<InvalidArgument>("GGUF key '{}': array of {} holds a {}", key,
                                    gguf_type_name(static_cast<uint32_t>(x->element_type)),
                                    gguf_type_name(static_cast<uint32_t>(gguf_type_of(e))));
            put_value(b, e, key, depth + 1);
          }
        } else {
          put<T>(b, x);
        }
      },
      v);
}

}  // namespace

GgufWriter::GgufWriter(std::filesystem::path path, const WriteOptions& opts, uint32_t alignment)
    : file_(std::move(path), opts), alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    fail<InvalidArgument>("{}: GGUF alignment {} is not a power of two", file_.target().string(), alignment);
}

void GgufWriter::set(std::string key, MetaValue value) {
  if (header_written_) fail<InvalidArgument>("{}: metadata '{}' set after the header was written", file_.target().string(), key);
  if (key.empty()) fail<InvalidArgument>("{}: empty metadata key", file_.target().string());
  if (key == "general.alignment") return;  // the writer's own value wins (see write_header)
  for (auto& e : meta_)
    if (e.key == key) {
      e.value = std::move(value);
      return;
    }
  meta_.push_back({std::move(key), std::move(value)});
}

void GgufWriter::copy_metadata(const std::vector<MetaEntry>& meta) {
  for (const auto& e : meta) set(e.key, e.value);
}

void GgufWriter::add_tensor(std::string name, int ggml_type, std::vector<int64_t> shape) {
  const std::string f = file_.target().string();
  if (header_written_) fail<InvalidArgument>("{}: tensor '{}' declared after data was written", f, name);
  if (name.empty() || name.size() >= kMaxName)
    fail<InvalidArgument>("{}: tensor '{}': GGUF names must have 1 to {} bytes", f, name, kMaxName - 1);
  if (shape.size() > kMaxDims) fail<InvalidArgument>("{}: tensor '{}': GGUF holds at most 4 dimensions", f, name);
  for (const auto& d : decls_)
    if (d.name == name) fail<InvalidArgument>("{}: tensor '{}' declared twice", f, name);
  uint64_t nbytes;
  try {
    nbytes = ggml_nbytes(ggml_type, shape);
  } catch (const InvalidArgument& e) {
    fail<InvalidArgument>("{}: tensor '{}': {}", f, name, e.what());
  }
  decls_.push_back({std::move(name), ggml_type, std::move(shape), nbytes, 0});
}

void GgufWriter::write_header() {
  // general.alignment: keep the position a copied file had it at, else append.
  MetaEntry align{"general.alignment", MetaValue(alignment_)};
  std::vector<MetaEntry> meta = meta_;
  meta.push_back(align);

  std::string h;
  h.append("GGUF", 4);
  put<uint32_t>(h, 3);
  put<uint64_t>(h, decls_.size());
  put<uint64_t>(h, meta.size());
  for (const auto& e : meta) {
    put_string(h, e.key);
    put<uint32_t>(h, static_cast<uint32_t>(gguf_type_of(e.value)));
    put_value(h, e.value, e.key, 0);
  }
  uint64_t off = 0;
  for (auto& d : decls_) {
    d.offset = off;
    put_string(h, d.name);
    const uint32_t n_dims = d.shape.empty() ? 1 : static_cast<uint32_t>(d.shape.size());
    put<uint32_t>(h, n_dims);
    if (d.shape.empty()) put<uint64_t>(h, 1);
    for (auto it = d.shape.rbegin(); it != d.shape.rend(); ++it) put<uint64_t>(h, static_cast<uint64_t>(*it));
    put<uint32_t>(h, static_cast<uint32_t>(d.type));
    put<uint64_t>(h, off);
    off = align_up(off + d.nbytes, alignment_);
  }
  h.append(align_up(h.size(), alignment_) - h.size(), '\0');
  file_.write(h.data(), h.size());
  data_start_ = h.size();
  header_written_ = true;
}

void GgufWriter::write_tensor(std::span<const std::byte> bytes) {
  if (!header_written_) write_header();
  const Decl& d = detail::next_declared(decls_, next_, bytes.size(), file_.target().string());
  file_.write(bytes);
  file_.write_zeros(static_cast<size_t>(align_up(d.nbytes, alignment_) - d.nbytes));
  ++next_;
}

void GgufWriter::write_tensor(std::string_view name, std::span<const std::byte> bytes) {
  detail::check_next_name(decls_, next_, name, file_.target().string());
  write_tensor(bytes);
}

void GgufWriter::commit() {
  if (!header_written_) write_header();
  detail::check_all_written(next_, decls_.size(), file_.target().string());
  file_.commit();
}

}  // namespace qk::io
