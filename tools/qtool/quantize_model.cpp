// `qtool quantize IN -o OUT --type T` (model mode): quantize every weight of a GGUF or safetensors model file and
// write a GGUF file, a safetensors file or a Hugging Face GPTQ checkpoint.
//
// Streaming: the input is memory-mapped (TensorFile); tensors are processed one at a time, in row chunks where
// the encoding allows it (RTN onto ggml blocks, plain conversions), and every finished chunk's input pages are
// released with madvise(MADV_DONTNEED). The writer receives each encoded tensor and appends it to a temporary file
// that is renamed onto OUT at the end, so peak memory is about one encoded tensor (plus one float copy of it for
// GPTQ/AWQ/int schemes) whatever the model size, and a failure leaves no partial output. The exception is GPTQ/AWQ
// calibrated from tokens (--calib-tokens, --calib-generate): that runs the model, so it first loads the whole model
// as float and quantizes its block weights sequentially (quantize_sequentially below) before streaming the output.
//
// Which tensors are quantized follows llama.cpp's defaults (src/llama-quant.cpp, llama_tensor_get_type and
// llama_model_quantize_impl): only tensors named "*weight" of rank >= 2; norms, 1-D tensors (kept in F32) and
// position/token-type embeddings stay; the output projection (or the token embedding when it doubles as the
// output) becomes Q6_K, or Q8_0 when its rows are not a multiple of 256 (Q8_0 targets keep Q8_0). qk departs from
// llama.cpp in one place: a separate token embedding is kept at Q8_0 unless --quantize-embeddings (llama.cpp uses
// the target type). A row length a block type cannot hold falls back per tensor (--fallback, default f16) instead
// of aborting the run, and the summary lists every fallback.
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "output.hpp"
#include "progress.hpp"
#include "qk/core/codebook.hpp"
#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/threads.hpp"
#include "qk/model/llama_model.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/formats/gptq_hf.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"
#include "qk/methods/awq.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/methods/rtn.hpp"
#include "qk/formats/tensor_values.hpp"
#include "quantize_opts.hpp"

namespace fs = std::filesystem;

namespace qtool {
namespace {

using qk::io::DType;
using qk::io::TensorFile;
using qk::io::TensorInfo;
using qk::io::shape_text;

// ------------------------------------------------------------------------------------------------ target types
struct Target {
  enum Kind { Ggml, Plain, Int, Nf4 } kind = Ggml;
  qk::ggml::Type ggml = qk::ggml::Type::Q8_0;
  DType plain = DType::F16;
  int bits = 4;
  int64_t group = 0;  // Int: 0 = per output channel
  std::string name;
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::optional<Target> parse_target(const std::string& spec) {
  const std::string s = lower(spec);
  Target t;
  t.name = s;
  if (s == "f32" || s == "f16" || s == "bf16") {
    t.kind = Target::Plain;
    t.plain = s == "f32" ? DType::F32 : s == "f16" ? DType::F16 : DType::BF16;
    return t;
  }
  if (s == "nf4") {
    t.kind = Target::Nf4;
    return t;
  }
  static const std::regex int_re(R"(int([2348])(?:-g(\d+))?)");
  std::smatch m;
  if (std::regex_match(s, m, int_re)) {
    t.kind = Target::Int;
    t.bits = std::stoi(m[1].str());
    t.group = m[2].matched ? std::stoll(m[2].str()) : 0;
    if (m[2].matched && t.group <= 0) return std::nullopt;
    return t;
  }
  if (auto g = qk::ggml::type_from_name(s)) {
    if (!qk::ggml::info(*g).storage) return std::nullopt;
    t.kind = Target::Ggml;
    t.ggml = *g;
    t.name = std::string(qk::ggml::info(*g).name);
    return t;
  }
  return std::nullopt;
}

std::string type_list() {
  std::string s;
  for (const auto& i : qk::ggml::types())
    if (i.storage) s += fmt::format("{}, ", lower(std::string(i.name)));
  return s + "int2|int3|int4|int8[-gN] (GPTQ checkpoint), nf4 (safetensors, bitsandbytes layout), f16, bf16, f32";
}

// llama.cpp's general.file_type (enum llama_ftype, include/llama.h) for a model whose weights are mostly `t`.
uint32_t llama_ftype(const Target& t) {
  if (t.kind == Target::Plain) return t.plain == DType::F32 ? 0 : t.plain == DType::F16 ? 1 : 32;
  using T = qk::ggml::Type;
  switch (t.ggml) {
    case T::Q4_0: return 2;
    case T::Q4_1: return 3;
    case T::Q8_0: return 7;
    case T::Q5_0: return 8;
    case T::Q5_1: return 9;
    case T::Q2_K: return 10;
    case T::Q3_K: return 11;  // Q3_K_S: Q3_K for all tensors
    case T::Q4_K: return 14;  // Q4_K_S
    case T::Q5_K: return 16;  // Q5_K_S
    case T::Q6_K: return 18;
    case T::IQ4_NL: return 25;
    default: return 0;
  }
}

// ------------------------------------------------------------------------------------------------ tensor roles
bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

bool is_token_embedding(std::string_view n) {
  return n == "token_embd.weight" || n == "tok_embeddings.weight" || n.ends_with("embed_tokens.weight") ||
         n.ends_with("wte.weight") || n == "word_embeddings.weight";
}
bool is_output(std::string_view n) {
  return n == "output.weight" || n == "lm_head.weight" || n.ends_with(".lm_head.weight");
}
// Tensors llama.cpp never quantizes whatever their rank (norms, routers, position tables).
bool never_quantized(std::string_view n) {
  return contains(n, "norm") || contains(n, "ffn_gate_inp") || contains(n, "pos_embd") ||
         contains(n, "token_types") || contains(n, "rope_freqs") || contains(n, "position_embd");
}
bool is_float(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16 || d == DType::F64; }

// ------------------------------------------------------------------------------------------------ the plan
enum class Container { Gguf, Safetensors, Gptq };

struct Item {
  const TensorInfo* in = nullptr;
  enum Action { Copy, ToPlain, ToGgml, ToInt, ToNf4 } action = Copy;
  DType out_dtype = DType::F32;  // ToPlain / Copy of plain tensors
  int out_ggml = -1;             // GGUF type id of the output (every action, GGUF output)
  qk::ggml::Type gtype = qk::ggml::Type::Q8_0;
  int64_t rows = 0, cols = 0;
  uint64_t out_bytes = 0;
  std::string out_type;  // for the summary
  std::string note;      // why this type
  bool fallback = false;
  std::string method = "-";
};

int64_t cols_of(const TensorInfo& t) { return t.shape.empty() ? 1 : t.shape.back(); }
int64_t rows_of(const TensorInfo& t) {
  const int64_t c = cols_of(t);
  return c == 0 ? 0 : t.numel() / c;
}

// ------------------------------------------------------------------------------------------------ NF4 layout
// --type nf4 writes transformers' bitsandbytes 4-bit serialization (bitsandbytes functional.py, QuantState.as_dict
// with packed=True; transformers' bnb_4bit quantizer), with NF4 double quantization (qk/core/codebook.hpp). For a
// weight W [out, in] named NAME (n = out·in elements, blocks of 64, constants in groups of 256):
//   NAME                                          U8  [ceil(n/2), 1]  codes, element 2j in the HIGH nibble of byte j
//   NAME.absmax                                   U8  [ceil(n/64)]    dynamic-map code of each block's absmax - offset
//   NAME.quant_map                                F32 [16]            the NF4 table
//   NAME.nested_absmax                            F32 [ceil(n/64/256)] scale of each group of 256 constants
//   NAME.nested_quant_map                         F32 [256]           the signed dynamic map
//   NAME.quant_state.bitsandbytes__nf4            U8  [json bytes]    JSON: quant_type, blocksize, dtype, shape,
//                                                                     nested_blocksize, nested_dtype, nested_offset
// W[i] = quant_map[code_i] · (nested_quant_map[absmax[i/64]] · nested_absmax[i/64/256] + nested_offset).
constexpr int64_t kNf4Block = 64, kNf4Group = 256;

std::string torch_dtype_name(DType d) {
  switch (d) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

// The quant_state JSON. nested_offset is printed with a fixed width (10 significant digits, enough to give the
// float32 back exactly), so the header can be sized before the offset is known.
std::string nf4_state_json(const TensorInfo& t, float offset) {
  std::string shape;
  for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
  const float off = std::isfinite(offset) && offset >= 1e-30f ? offset : 0.0f;
  return fmt::format(
      "{{\"quant_type\": \"nf4\", \"blocksize\": {}, \"dtype\": \"{}\", \"shape\": [{}], \"nested_blocksize\": {}, "
      "\"nested_dtype\": \"float32\", \"nested_offset\": {:.9e}}}",
      kNf4Block, torch_dtype_name(t.dtype), shape, kNf4Group, off);
}

uint64_t nf4_layout_bytes(const TensorInfo& t) {
  const auto n = static_cast<uint64_t>(t.numel());
  const uint64_t blocks = (n + kNf4Block - 1) / kNf4Block, groups = (blocks + kNf4Group - 1) / kNf4Group;
  return (n + 1) / 2 + blocks + 16 * 4 + groups * 4 + 256 * 4 + nf4_state_json(t, 0.0f).size();
}

struct Planner {
  const QuantizeOptions& o;
  const Target& target;
  Container container;
  std::vector<std::regex> skip;
  bool has_output = false;

  uint64_t plain_bytes(DType d, int64_t n) const { return static_cast<uint64_t>(n) * qk::io::dtype_size(d); }

  void set_plain(Item& it, DType d) const {
    it.action = (it.in->dtype == d) ? Item::Copy : Item::ToPlain;
    it.out_dtype = d;
    it.out_ggml = qk::io::ggml_type_of(d);
    it.out_bytes = plain_bytes(d, it.in->numel());
    it.out_type = qk::io::dtype_name(d);
  }

  // A ggml type for the tensor, or a fallback when the row length does not fit the block.
  void set_ggml(Item& it, qk::ggml::Type t, const std::string& why) const {
    const auto& inf = qk::ggml::info(t);
    if (it.cols % inf.block_elems == 0) {
      it.action = Item::ToGgml;
      it.gtype = t;
      it.out_ggml = static_cast<int>(qk::ggml::type_id(t));
      it.out_bytes = static_cast<uint64_t>(qk::ggml::row_size(t, it.cols) * it.rows);
      it.out_type = std::string(inf.name);
      it.note = why;
      return;
    }
    it.fallback = true;
    const std::string reason =
        fmt::format("row of {} is not a multiple of {} ({})", it.cols, inf.block_elems, inf.name);
    // --fallback auto: llama.cpp's demotion of a 256-block type to a 32-block one of similar size
    // (src/llama-quant.cpp, fallback_type_for), then F16; an explicit --fallback type, then F16.
    std::optional<Target> fb;
    if (o.fallback == "auto") {
      using T = qk::ggml::Type;
      std::optional<T> d;
      switch (t) {
        case T::Q2_K:
        case T::Q3_K: d = T::Q4_0; break;
        case T::Q4_K: d = T::Q5_0; break;
        case T::Q5_K: d = T::Q5_1; break;
        case T::Q6_K: d = T::Q8_0; break;
        default: break;
      }
      if (d) fb = parse_target(std::string(qk::ggml::info(*d).name));
    } else {
      fb = parse_target(o.fallback);
    }
    if (fb && fb->kind == Target::Ggml && it.cols % qk::ggml::info(fb->ggml).block_elems == 0) {
      const auto& fi = qk::ggml::info(fb->ggml);
      it.action = Item::ToGgml;
      it.gtype = fb->ggml;
      it.out_ggml = static_cast<int>(qk::ggml::type_id(fb->ggml));
      it.out_bytes = static_cast<uint64_t>(qk::ggml::row_size(fb->ggml, it.cols) * it.rows);
      it.out_type = std::string(fi.name);
      it.note = "fallback: " + reason;
      return;
    }
    const DType d = fb && fb->kind == Target::Plain ? fb->plain : DType::F16;
    set_plain(it, d);
    it.note = fmt::format("fallback: {}{}", reason,
                          fb && fb->kind == Target::Ggml ? fmt::format("; {} does not fit either", fb->name) : "");
  }

  Item plan(const TensorInfo& t) const {
    Item it;
    it.in = &t;
    it.rows = rows_of(t);
    it.cols = cols_of(t);
    const std::string& n = t.name;
    const bool weight = n.ends_with("weight");
    const bool matrix = t.shape.size() >= 2;
    const bool skipped = std::any_of(skip.begin(), skip.end(), [&](const std::regex& r) { return std::regex_search(n, r); });
    const bool floating = is_float(t.dtype) || t.dtype == DType::Ggml;

    // Tensors that stay as they are (converted only when the container cannot hold them).
    auto keep = [&](const std::string& why) {
      if (t.dtype == DType::Ggml) {
        if (container == Container::Gguf) {
          it.action = Item::Copy;
          it.out_ggml = t.ggml_type;
          it.out_bytes = t.nbytes;
          it.out_type = t.type_name();
        } else {
          set_plain(it, DType::F32);
        }
      } else if (container == Container::Gguf && qk::io::ggml_type_of(t.dtype) < 0) {
        set_plain(it, DType::F32);
      } else if (!matrix && is_float(t.dtype) && t.dtype != DType::F32) {
        set_plain(it, DType::F32);  // 1-D float tensors in F32
      } else {
        set_plain(it, t.dtype);
      }
      it.note = why;
      return it;
    };

    if (!floating) return keep("not a float tensor");
    if (!matrix) return keep("1-D");
    if (skipped) return keep("--skip");
    if (!weight || never_quantized(n)) return keep("not a quantized weight");

    const bool out_proj = is_output(n) || (!has_output && is_token_embedding(n));
    const bool embedding = !out_proj && is_token_embedding(n);

    if (target.kind == Target::Plain) {
      set_plain(it, target.plain);
      return it;
    }
    if (target.kind == Target::Nf4) {
      // as transformers' bitsandbytes integration: linear layers only; the output projection and embeddings stay
      if ((out_proj && !o.quantize_output) || (embedding && !o.quantize_embeddings))
        return keep(out_proj ? "output projection (kept, as bitsandbytes does)" : "token embedding (kept)");
      if (t.shape.size() != 2) return keep("rank > 2");
      it.action = Item::ToNf4;
      it.out_bytes = nf4_layout_bytes(t);
      it.out_type = "nf4";
      return it;
    }
    if (target.kind == Target::Int) {
      if ((out_proj && !o.quantize_output) || (embedding && !o.quantize_embeddings))
        return keep(out_proj ? "output projection (GPTQ keeps it)" : "token embedding (GPTQ keeps it)");
      if (t.shape.size() != 2) return keep("rank > 2");
      const int64_t g = target.group == 0 ? it.cols : target.group;
      std::string why;
      if (it.cols % g != 0) why = fmt::format("group {} does not divide the row of {}", g, it.cols);
      else if ((it.cols * target.bits) % 32 != 0) why = fmt::format("{} inputs of {} bits are not whole words", it.cols, target.bits);
      else if ((it.rows * target.bits) % 32 != 0) why = fmt::format("{} outputs of {} bits are not whole zero words", it.rows, target.bits);
      if (!why.empty()) {
        auto fb = parse_target(o.fallback);
        set_plain(it, fb && fb->kind == Target::Plain ? fb->plain : DType::F16);
        it.fallback = true;
        it.note = "fallback: " + why;
        return it;
      }
      it.action = Item::ToInt;
      const int64_t G = it.cols / g;
      it.out_bytes = static_cast<uint64_t>(it.cols * target.bits / 32 * it.rows * 4 + G * (it.rows * target.bits / 32) * 4 +
                                           G * it.rows * 2 + it.cols * 4);
      it.out_type = target.name;
      return it;
    }
    // ggml block types
    using T = qk::ggml::Type;
    if (out_proj && !o.quantize_output) {
      // llama.cpp: Q6_K for the output, Q8_0 when the row is not a multiple of 256 (or the target is Q8_0)
      if (target.ggml == T::Q8_0) set_ggml(it, T::Q8_0, "output projection");
      else if (it.cols % qk::ggml::QK_K == 0) set_ggml(it, T::Q6_K, "output projection (llama.cpp default)");
      else set_ggml(it, T::Q8_0, "output projection, row not a multiple of 256 (llama.cpp default)");
      return it;
    }
    if (embedding && !o.quantize_embeddings) {
      set_ggml(it, T::Q8_0, "token embedding (kept at q8_0; --quantize-embeddings)");
      return it;
    }
    set_ggml(it, target.ggml, "");
    return it;
  }
};

// ------------------------------------------------------------------------------------------------ reading rows
// Releases the input pages of [p, p + n) from this process (they stay in the page cache).
void release_pages(const std::byte* p, size_t n) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  auto a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t begin = (a + page - 1) / page * page, end = (a + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Converts rows [r0, r0 + nr) of a plain float tensor into dst (nr x cols floats).
void rows_to_float(const TensorInfo& t, std::span<const std::byte> b, int64_t cols, int64_t r0, int64_t nr, float* dst) {
  const int64_t n = nr * cols;
  const size_t es = qk::io::dtype_size(t.dtype);
  const std::byte* s = b.data() + static_cast<size_t>(r0 * cols) * es;
  switch (t.dtype) {
    case DType::F32: std::memcpy(dst, s, static_cast<size_t>(n) * 4); break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = qk::fp16_to_fp32(h);
      }
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = qk::bf16_to_fp32(h);
      }
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, s + 8 * i, 8);
        dst[i] = static_cast<float>(d);
      }
      break;
    default: qk::fail<qk::FormatError>("tensor '{}': {} is not a float type", t.name, qk::io::dtype_name(t.dtype));
  }
}

void float_to_plain(const float* src, int64_t n, DType d, std::byte* out) {
  switch (d) {
    case DType::F32: std::memcpy(out, src, static_cast<size_t>(n) * 4); break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = qk::fp32_to_fp16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = qk::fp32_to_bf16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    default: qk::fail<qk::InvalidArgument>("cannot convert to {}", qk::io::dtype_name(d));
  }
}

std::span<const std::byte> as_bytes_of(const std::vector<uint8_t>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size()};
}
template <typename T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T)};
}

// ------------------------------------------------------------------------------------------------ outputs
// A directory written beside its target and renamed into place on commit (removed on failure).
class TempDir {
 public:
  TempDir(fs::path target, bool force) : target_(std::move(target)), force_(force) {
    std::random_device rd;
    tmp_ = target_.parent_path() / fmt::format(".{}.tmp-{:08x}", target_.filename().string(), rd());
    std::error_code ec;
    if (!fs::create_directory(tmp_, ec) || ec)
      qk::fail<qk::IoError>("{}: cannot create a temporary directory: {}", tmp_.string(), ec.message());
  }
  ~TempDir() {
    std::error_code ec;
    if (!committed_) fs::remove_all(tmp_, ec);
  }
  const fs::path& path() const { return tmp_; }
  void commit() {
    std::error_code ec;
    fs::path old;
    if (fs::exists(target_)) {
      if (!force_) qk::fail<qk::IoError>("{}: exists (pass --force to replace it)", target_.string());
      old = tmp_.string() + ".old";
      fs::rename(target_, old, ec);
      if (ec) qk::fail<qk::IoError>("{}: cannot move the old output aside: {}", target_.string(), ec.message());
    }
    fs::rename(tmp_, target_, ec);
    if (ec) qk::fail<qk::IoError>("{}: cannot rename {} into place: {}", target_.string(), tmp_.string(), ec.message());
    committed_ = true;
    if (!old.empty()) fs::remove_all(old, ec);
  }

 private:
  fs::path target_, tmp_;
  bool force_;
  bool committed_ = false;
};

// One interface over the three containers: declare, stream, commit.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void declare(const std::string& name, const Item& it) = 0;
  virtual void write_plain(const std::string& name, std::span<const std::byte> b) = 0;
  virtual void write_ggml(const std::string& name, std::span<const std::byte> b) = 0;
  virtual void write_int(const std::string& name, const qk::gptq_hf::PackedLinear& p) = 0;
  virtual void write_nf4(const TensorInfo& t, const qk::Nf4Tensor& q) = 0;
  virtual void commit() = 0;
};

class GgufSink final : public Sink {
 public:
  GgufSink(const fs::path& out, const qk::util::WriteOptions& wo, const TensorFile& in, const Target& t) : w_(out, wo) {
    if (in.format() == qk::io::FileFormat::Gguf) {
      w_.copy_metadata(in.metadata());
    } else {
      for (const auto& m : in.metadata()) w_.set("safetensors." + m.key, m.value);
    }
    if (!qk::io::find_meta(in.metadata(), "general.architecture") || in.format() != qk::io::FileFormat::Gguf)
      w_.set("general.architecture", std::string("unknown"));
    w_.set_file_type(llama_ftype(t));
    w_.set_quantization_version(2);
  }
  void declare(const std::string& name, const Item& it) override { w_.add_tensor(name, it.out_ggml, it.in->shape); }
  void write_plain(const std::string& name, std::span<const std::byte> b) override { w_.write_tensor(name, b); }
  void write_ggml(const std::string& name, std::span<const std::byte> b) override { w_.write_tensor(name, b); }
  void write_int(const std::string& name, const qk::gptq_hf::PackedLinear&) override {
    qk::fail<qk::InvalidArgument>("tensor '{}': GGUF has no encoding for GPTQ integer layers", name);
  }
  void write_nf4(const TensorInfo& t, const qk::Nf4Tensor&) override {
    qk::fail<qk::InvalidArgument>("tensor '{}': GGUF has no NF4 encoding", t.name);
  }
  void commit() override { w_.commit(); }

 private:
  qk::io::GgufWriter w_;
};

class SafetensorsSink final : public Sink {
 public:
  // gptq: write the GPTQ layout for ToInt items and quantize_config.json at config_path.
  SafetensorsSink(const fs::path& out, const qk::util::WriteOptions& wo, const TensorFile& in, bool gptq,
                  const qk::gptq_hf::QuantizeConfig& cfg, fs::path config_path)
      : w_(out, wo), gptq_(gptq), cfg_(cfg), config_path_(std::move(config_path)), wo_(wo) {
    if (in.format() == qk::io::FileFormat::Safetensors)
      for (const auto& m : in.metadata())
        if (const auto* s = std::get_if<std::string>(&m.value)) w_.set_metadata(m.key, *s);
    w_.set_metadata("format", "pt");
    if (gptq) w_.set_metadata("quantized_by", "qk qtool");
  }
  void declare(const std::string& name, const Item& it) override {
    if (it.action == Item::ToNf4) {
      const int64_t n = it.in->numel(), blocks = (n + kNf4Block - 1) / kNf4Block;
      w_.add_tensor(name, DType::U8, {(n + 1) / 2, 1});
      w_.add_tensor(name + ".absmax", DType::U8, {blocks});
      w_.add_tensor(name + ".quant_map", DType::F32, {16});
      w_.add_tensor(name + ".nested_absmax", DType::F32, {(blocks + kNf4Group - 1) / kNf4Group});
      w_.add_tensor(name + ".nested_quant_map", DType::F32, {256});
      w_.add_tensor(name + ".quant_state.bitsandbytes__nf4", DType::U8,
                    {static_cast<int64_t>(nf4_state_json(*it.in, 0.0f).size())});
      return;
    }
    if (it.action != Item::ToInt) {
      w_.add_tensor(name, it.out_dtype, it.in->shape);
      return;
    }
    const int64_t K = it.cols, N = it.rows, b = cfg_.bits;
    const int64_t g = cfg_.group_size <= 0 ? K : cfg_.group_size;
    const int64_t G = (K + g - 1) / g;
    const std::string p = qk::gptq_hf::layer_prefix(name);
    w_.add_tensor(p + ".qweight", DType::I32, {K * b / 32, N});
    w_.add_tensor(p + ".qzeros", DType::I32, {G, N * b / 32});
    w_.add_tensor(p + ".scales", DType::F16, {G, N});
    w_.add_tensor(p + ".g_idx", DType::I32, {K});
  }
  void write_plain(const std::string& name, std::span<const std::byte> b) override { w_.write_tensor(name, b); }
  void write_ggml(const std::string& name, std::span<const std::byte>) override {
    qk::fail<qk::InvalidArgument>("tensor '{}': safetensors has no ggml block types (write a .gguf)", name);
  }
  void write_nf4(const TensorInfo& t, const qk::Nf4Tensor& q) override {
    if (!q.double_quant || q.block != kNf4Block || q.dq_block != kNf4Group)
      qk::fail<qk::InvalidArgument>("tensor '{}': the NF4 layout needs double quantization, blocks 64/256", t.name);
    // qk packs element 2j in the low nibble, bitsandbytes in the high one
    std::vector<uint8_t> codes(q.packed.size());
    for (size_t i = 0; i < codes.size(); ++i)
      codes[i] = static_cast<uint8_t>((q.packed[i] << 4) | (q.packed[i] >> 4));
    const std::vector<float> table(qk::nf4::kTable.begin(), qk::nf4::kTable.end());
    const std::string json = nf4_state_json(t, q.offset);
    w_.write_tensor(t.name, as_bytes_of(codes));
    w_.write_tensor(t.name + ".absmax", as_bytes_of(q.absmax_codes));
    w_.write_tensor(t.name + ".quant_map", as_bytes_of(table));
    w_.write_tensor(t.name + ".nested_absmax", as_bytes_of(q.dq_scale));
    w_.write_tensor(t.name + ".nested_quant_map", as_bytes_of(qk::nf4::dynamic_map().levels()));
    w_.write_tensor(t.name + ".quant_state.bitsandbytes__nf4", {reinterpret_cast<const std::byte*>(json.data()), json.size()});
  }
  void write_int(const std::string& name, const qk::gptq_hf::PackedLinear& p) override {
    const std::string pre = qk::gptq_hf::layer_prefix(name);
    w_.write_tensor(pre + ".qweight", as_bytes_of(p.qweight));
    w_.write_tensor(pre + ".qzeros", as_bytes_of(p.qzeros));
    w_.write_tensor(pre + ".scales", as_bytes_of(p.scales));
    w_.write_tensor(pre + ".g_idx", as_bytes_of(p.g_idx));
  }
  void commit() override {
    if (gptq_) {
      // the config first: a checkpoint is only complete once both are in place, and the weights file is the one
      // a loader opens
      qk::util::AtomicFile cf(config_path_, wo_);
      const std::string j = qk::gptq_hf::to_json(cfg_);
      cf.write(j.data(), j.size());
      w_.commit();
      cf.commit();
    } else {
      w_.commit();
    }
  }

 private:
  qk::io::SafetensorsWriter w_;
  bool gptq_;
  qk::gptq_hf::QuantizeConfig cfg_;
  fs::path config_path_;
  qk::util::WriteOptions wo_;
};

// ------------------------------------------------------------------------------------------------ importance
// Per-weight importance vectors from a llama.cpp imatrix file: the GGUF format (tensors "<weight>.in_sum2" and
// "<weight>.counts": importance = in_sum2 / count, 1 where the count is 0) or the legacy binary format (i32 entry
// count; per entry i32 name length, name, i32 ncall, i32 nval, nval f32 values divided by ncall).
std::map<std::string, std::vector<float>> load_imatrix(const fs::path& path) {
  std::map<std::string, std::vector<float>> out;
  std::ifstream f(path, std::ios::binary);
  if (!f) qk::fail<qk::IoError>("{}: cannot open the importance matrix", path.string());
  char magic[4] = {};
  f.read(magic, 4);
  if (f && std::memcmp(magic, "GGUF", 4) == 0) {
    f.close();
    auto tf = TensorFile::open(path);
    for (const auto& t : tf->tensors()) {
      if (!t.name.ends_with(".in_sum2")) continue;
      const std::string w = t.name.substr(0, t.name.size() - 8);
      const TensorInfo* c = tf->find(w + ".counts");
      if (!c) qk::fail<qk::FormatError>("{}: '{}' has no matching '{}.counts'", path.string(), t.name, w);
      const auto sums = tf->read_matrix(t);
      const auto counts = tf->read_matrix(*c);
      if (counts.size() != sums.rows())
        qk::fail<qk::FormatError>("{}: '{}.counts' has {} values for {} rows of sums", path.string(), w, counts.size(),
                                  sums.rows());
      std::vector<float> e(static_cast<size_t>(sums.size()));
      for (Eigen::Index r = 0; r < sums.rows(); ++r) {
        const float n = counts.data()[r];
        for (Eigen::Index i = 0; i < sums.cols(); ++i)
          e[static_cast<size_t>(r * sums.cols() + i)] = n > 0 ? sums(r, i) / n : 1.0f;
      }
      out[w] = std::move(e);
    }
    if (out.empty()) qk::fail<qk::FormatError>("{}: no '*.in_sum2' tensors: not an importance matrix", path.string());
    return out;
  }
  f.clear();
  f.seekg(0);
  auto rd = [&](void* p, size_t n, const char* what) {
    f.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (!f) qk::fail<qk::FormatError>("{}: truncated legacy imatrix ({})", path.string(), what);
  };
  int32_t entries = 0;
  rd(&entries, 4, "entry count");
  if (entries <= 0 || entries > 1000000)
    qk::fail<qk::FormatError>("{}: {} entries: not an importance matrix", path.string(), entries);
  for (int32_t i = 0; i < entries; ++i) {
    int32_t len = 0, ncall = 0, nval = 0;
    rd(&len, 4, "name length");
    if (len <= 0 || len > 4096) qk::fail<qk::FormatError>("{}: entry {} has a name of {} bytes", path.string(), i, len);
    std::string name(static_cast<size_t>(len), '\0');
    rd(name.data(), name.size(), "name");
    rd(&ncall, 4, "call count");
    rd(&nval, 4, "value count");
    if (nval <= 0 || nval > (1 << 28)) qk::fail<qk::FormatError>("{}: entry '{}' has {} values", path.string(), name, nval);
    std::vector<float> e(static_cast<size_t>(nval));
    rd(e.data(), e.size() * 4, "values");
    if (ncall > 0)
      for (float& v : e) v /= static_cast<float>(ncall);
    out[name] = std::move(e);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ GPTQ / AWQ
// The layer's calibration activations X [tokens, in_features] must match the weight's input width.
void check_calib(const qk::io::RowMatrixXf& W, const qk::io::RowMatrixXf& X, const std::string& where) {
  if (X.cols() != W.cols())
    qk::fail<qk::ShapeError>("{}: calibration activations have {} features, the weight {} inputs", where, X.cols(),
                             W.cols());
  if (X.rows() == 0) qk::fail<qk::ShapeError>("{}: calibration activations have no tokens", where);
}

qk::GptqOptions gptq_options(const QuantizeOptions& o, bool int_grid) {
  qk::GptqOptions g;
  g.damp = o.damp;
  g.block_size = o.block_size;
  g.act_order = o.act_order;
  // block grids record no g_idx: act-order needs their groups fitted up front
  g.static_groups = o.static_groups || (o.act_order && !int_grid);
  g.threads = o.threads;
  return g;
}

// AWQ in model mode searches the clipping only: its per-channel input scales would have to be folded into the
// previous operation, which needs the model graph (a forward pass), not just the weight file.
qk::AwqOptions awq_options(const QuantizeOptions& o) {
  qk::AwqOptions a;
  a.search_scale = false;
  a.threads = o.threads;
  return a;
}

void quantize_onto_grid(const std::string& method, const qk::io::RowMatrixXf& W, const qk::io::RowMatrixXf& X,
                        qk::WeightGrid& grid, const QuantizeOptions& o, const std::string& where) {
  check_calib(W, X, where);
  if (method == "gptq") {
    qk::HessianAccumulator acc(W.cols());
    acc.add(X, o.threads);
    qk::gptq(W, acc, grid, gptq_options(o, false));
  } else {
    qk::awq(W, X, grid, awq_options(o));
  }
}

qk::QuantizedTensor quantize_int_with_method(const std::string& method, const qk::io::RowMatrixXf& W,
                                             const qk::io::RowMatrixXf& X, const qk::QuantScheme& s,
                                             const QuantizeOptions& o, const std::string& where) {
  check_calib(W, X, where);
  if (method == "gptq") {
    qk::HessianAccumulator acc(W.cols());
    acc.add(X, o.threads);
    return qk::gptq_quantize(W, acc.hessian(), s, gptq_options(o, true));
  }
  return qk::awq_quantize(W, X, s, awq_options(o));
}

// ------------------------------------------------------------------------------------------------ calibration
// --calib-tokens / --calib-generate: the layer inputs come from the model's own forward pass (qk::model::LlamaModel,
// Llama GGUF models), and the layers are quantized sequentially as the GPTQ reference does (IST-DASLab/gptq,
// llama.py with --true-sequential): block by block, and inside a block group by group in the order the block reads
// them (attn_q/k/v, attn_output, ffn_gate/up, ffn_down). A group's inputs are computed with every earlier weight
// already replaced by what the output file will hold (quantized, or the fallback's rounding), and each sequence's
// residual stream is carried from block to block, so memory holds the float model, one [tokens, dim] state per
// calibration sequence, and one Hessian (GPTQ) or one group's inputs (AWQ) at a time.
struct Prepared {
  std::map<std::string, std::vector<uint8_t>> ggml;  // encoded block tensors
  std::map<std::string, qk::QuantizedTensor> ints;   // int (GPTQ checkpoint) tensors
  std::map<std::string, std::vector<float>> floats;  // float tensors replaced (AWQ scales folded into norms)
  std::string source;                                // what the calibration tokens were, for the summary
  int sequences = 0, ctx = 0;
  int awq_scaled = 0;  // weights whose AWQ input scales were folded into a norm
};

bool uses_calibration(const QuantizeOptions& o) { return !o.calib_tokens.empty() || o.calib_generate; }

// "blk.N.NAME.weight" with NAME one of the linear weights the forward pass reads.
bool is_llama_linear(const std::string& n) {
  static const std::regex re(R"(blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight)");
  return std::regex_match(n, re);
}

// Collects one group's inputs: into a Hessian accumulator (GPTQ) or as rows (AWQ).
class GroupCapture final : public qk::model::ForwardObserver {
 public:
  GroupCapture(int layer, qk::model::LinearInput in, qk::HessianAccumulator* acc, std::vector<qk::io::RowMatrixXf>* rows,
               int threads)
      : layer_(layer), in_(in), acc_(acc), rows_(rows), threads_(threads) {}
  void on_linear_input(int layer, qk::model::LinearInput in, const qk::model::RowMatrixXf& x) override {
    if (layer != layer_ || in != in_) return;
    if (acc_) acc_->add(x, threads_);
    if (rows_) rows_->push_back(x);
  }

 private:
  int layer_;
  qk::model::LinearInput in_;
  qk::HessianAccumulator* acc_;
  std::vector<qk::io::RowMatrixXf>* rows_;
  int threads_;
};

// What the output file will hold for a weight that GPTQ/AWQ does not quantize (RTN, a fallback, a copy).
qk::io::RowMatrixXf effective_weight(const Item& it, const qk::io::RowMatrixXf& W, const float* importance, int threads) {
  switch (it.action) {
    case Item::ToGgml: {
      const auto enc = qk::ggml::quantize(it.gtype, W.data(), W.rows(), W.cols(), importance, threads);
      qk::io::RowMatrixXf D(W.rows(), W.cols());
      qk::ggml::dequantize_rows(it.gtype, enc.data(), W.rows(), W.cols(), D.data(), threads);
      return D;
    }
    case Item::ToPlain: {
      qk::io::RowMatrixXf D = W;
      if (it.out_dtype == DType::F16)
        for (Eigen::Index i = 0; i < D.size(); ++i) D.data()[i] = qk::fp16_to_fp32(qk::fp32_to_fp16(D.data()[i]));
      else if (it.out_dtype == DType::BF16)
        for (Eigen::Index i = 0; i < D.size(); ++i) D.data()[i] = qk::bf16_to_fp32(qk::fp32_to_bf16(D.data()[i]));
      return D;
    }
    default: return W;  // copies, and int RTN (not reached: --method rtn needs no calibration)
  }
}

std::vector<std::vector<int32_t>> calibration_sequences(const QuantizeOptions& o, const TensorFile& in,
                                                        const qk::model::LlamaModel& m, Prepared& p) {
  const auto& cfg = m.config();
  int ctx = o.calib_ctx;
  if (cfg.context > 0 && ctx > cfg.context) ctx = cfg.context;
  std::vector<int32_t> all;
  if (!o.calib_tokens.empty()) {
    all = qk::model::read_tokens(o.calib_tokens);
    const size_t n = all.size() / static_cast<size_t>(ctx);
    if (n == 0)
      qk::fail<qk::FormatError>("{}: {} token ids do not fill one calibration sequence of {} (--calib-ctx)",
                                o.calib_tokens, all.size(), ctx);
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i] < 0 || all[i] >= cfg.vocab)
        qk::fail<qk::FormatError>("{}: token id {} at index {} is outside the model's vocabulary of {}", o.calib_tokens,
                                  all[i], i, cfg.vocab);
    all.resize(std::min(n, static_cast<size_t>(o.calib_samples)) * static_cast<size_t>(ctx));
    p.source = fmt::format("{} sequences of {} tokens from {}", all.size() / static_cast<size_t>(ctx), ctx,
                           o.calib_tokens);
  } else {
    qk::model::SampleOptions so;
    so.samples = o.calib_samples;
    so.length = ctx;
    so.seed = o.calib_seed;
    so.threads = o.threads;
    if (const auto* b = qk::io::find_meta(in.metadata(), "tokenizer.ggml.bos_token_id")) {
      if (const auto* u = std::get_if<uint32_t>(b); u && *u < static_cast<uint32_t>(cfg.vocab)) so.bos = static_cast<int>(*u);
      if (const auto* i = std::get_if<int32_t>(b); i && *i >= 0 && *i < cfg.vocab) so.bos = *i;
    }
    all = qk::model::sample(m, so);
    p.source = fmt::format("{} sequences of {} tokens sampled from the model (seed {}, temperature 1, BOS {})",
                           so.samples, ctx, o.calib_seed, so.bos);
  }
  if (!o.calib_save.empty()) qk::model::write_tokens(o.calib_save, all);
  std::vector<std::vector<int32_t>> seqs;
  for (size_t s = 0; s < all.size(); s += static_cast<size_t>(ctx))
    seqs.emplace_back(all.begin() + static_cast<ptrdiff_t>(s), all.begin() + static_cast<ptrdiff_t>(s + ctx));
  p.sequences = static_cast<int>(seqs.size());
  p.ctx = ctx;
  return seqs;
}

Prepared quantize_sequentially(const QuantizeOptions& o, const Target& target, const TensorFile& in_file,
                               const std::vector<Item>& items,
                               const std::map<std::string, std::vector<float>>& imatrix, bool show_progress) {
  Prepared p;
  std::optional<qk::model::LlamaModel> model;
  try {
    model.emplace(qk::model::LlamaModel::load(in_file));
  } catch (const qk::Error& e) {
    qk::fail<qk::FormatError>("calibration from tokens runs the model, which must be a Llama GGUF: {}", e.what());
  }
  qk::model::LlamaModel& m = *model;
  const auto seqs = calibration_sequences(o, in_file, m, p);
  std::map<std::string, const Item*> by_name;
  for (const auto& it : items) by_name[it.in->name] = &it;
  std::vector<qk::io::RowMatrixXf> xs;
  xs.reserve(seqs.size());
  for (const auto& s : seqs) xs.push_back(m.embed(s));
  const int L = m.config().n_layers;
  const int threads = qk::resolve_threads(o.threads);
  for (int l = 0; l < L; ++l) {
    if (show_progress) fmt::print(stderr, "\rcalibrating block {}/{} ", l + 1, L);
    for (const auto in : qk::model::kLinearInputs) {
      std::vector<std::pair<std::string, const Item*>> group;
      bool any = false;
      for (const auto& short_name : qk::model::linear_names(in)) {
        const std::string n = qk::model::layer_weight_name(l, short_name);
        const auto f = by_name.find(n);
        if (f == by_name.end()) qk::fail<qk::FormatError>("{}: tensor '{}' is missing", o.input, n);
        group.emplace_back(n, f->second);
        any = any || f->second->method == "gptq" || f->second->method == "awq" || f->second->method == "rtn+imatrix";
      }
      if (any) {
        const int64_t dim = m.weight(group.front().first).cols();
        const bool gptq = o.method != "awq";  // GPTQ, and RTN with an importance vector: a Hessian (its diagonal)
        // Sequences in parallel (the small per-sequence products gain nothing from threads of their own); each
        // thread accumulates a contiguous range of sequences and the partial Hessians merge in thread order, so
        // the result depends on the thread count only. AWQ keeps the inputs in sequence order.
        const int nt = static_cast<int>(std::min<size_t>(static_cast<size_t>(threads), xs.size()));
        std::vector<qk::HessianAccumulator> accs;
        if (gptq) accs.assign(static_cast<size_t>(nt), qk::HessianAccumulator(dim));
        std::vector<std::vector<qk::io::RowMatrixXf>> rows(gptq ? 0 : xs.size());
        std::string error;
#pragma omp parallel num_threads(nt)
        {
          const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
          const size_t s0 = xs.size() * static_cast<size_t>(tid) / static_cast<size_t>(nth),
                       s1 = xs.size() * static_cast<size_t>(tid + 1) / static_cast<size_t>(nth);
          try {
            for (size_t si = s0; si < s1; ++si) {
              GroupCapture cap(l, in, gptq ? &accs[static_cast<size_t>(tid)] : nullptr, gptq ? nullptr : &rows[si], 1);
              qk::io::RowMatrixXf x = xs[si];
              m.forward_layer(l, x, &cap);
            }
          } catch (const std::exception& e) {
#pragma omp critical
            if (error.empty()) error = e.what();
          }
        }
        if (!error.empty()) qk::fail<qk::NumericError>("{}: block {}: {}", o.input, l, error);
        qk::HessianAccumulator acc(dim);
        for (const auto& a : accs) acc.merge(a);
        qk::io::RowMatrixXf X;
        if (!gptq) {
          int64_t T = 0;
          for (const auto& r : rows)
            for (const auto& x : r) T += x.rows();
          X.resize(T, dim);
          int64_t t = 0;
          for (auto& r : rows) {
            for (const auto& x : r) {
              X.middleRows(t, x.rows()) = x;
              t += x.rows();
            }
            r.clear();
          }
        }
        // AWQ with scale search where the input comes from an RMSNorm: the group's weights are searched together
        // (the reference's output error of q, k and v, or of gate and up), and 1/s is folded into the norm's
        // weight, which the output file then holds. Needs one ggml type for the whole group and a float norm.
        if (!gptq && o.awq_scales && (in == qk::model::LinearInput::AttnQkv || in == qk::model::LinearInput::FfnGateUp)) {
          const std::string norm = qk::model::layer_weight_name(l, in == qk::model::LinearInput::AttnQkv ? "attn_norm" : "ffn_norm");
          const auto nf = by_name.find(norm);
          bool foldable = nf != by_name.end() && nf->second->in->dtype != DType::Ggml &&
                          (nf->second->action == Item::Copy || nf->second->action == Item::ToPlain);
          for (const auto& [n, it] : group)
            foldable = foldable && it->method == "awq" && it->action == Item::ToGgml && it->gtype == group.front().second->gtype;
          if (foldable) {
            int64_t rows_total = 0;
            for (const auto& [n, it] : group) rows_total += it->rows;
            qk::io::RowMatrixXf Ws(rows_total, dim);
            int64_t r = 0;
            for (const auto& [n, it] : group) {
              Ws.middleRows(r, it->rows) = m.weight(n);
              r += it->rows;
            }
            const qk::ggml::Type gt = group.front().second->gtype;
            qk::ggml::GgmlGrid grid(gt);
            // Scale search scored on the block's output (the reference scores the attention / FFN module's output):
            // for each exponent a, the group's weights become Q(W·diag(s))·diag(s)⁻¹ in the model and the block runs
            // on a sub-sample of the sequences; the a with the smallest squared output error against the block with
            // the group unquantized wins. Clipping is then searched on W·diag(s) with the inputs divided by s.
            const auto xmean = (X.cwiseAbs().colwise().sum() / static_cast<float>(X.rows())).eval();
            const size_t nsub = std::min<size_t>(xs.size(), 32);
            std::vector<qk::io::RowMatrixXf> ref(nsub);
            // sequences in parallel, as above (the pass only reads the model; shapes were checked)
#pragma omp parallel for schedule(static) num_threads(threads)
            for (size_t si = 0; si < nsub; ++si) {
              ref[si] = xs[si * xs.size() / nsub];
              m.forward_layer(l, ref[si]);
            }
            const int n_grid = 20;
            double best = std::numeric_limits<double>::infinity();
            Eigen::VectorXf best_s = Eigen::VectorXf::Ones(dim);
            Eigen::MatrixXf Q;
            for (int a = 0; a < n_grid; ++a) {
              Eigen::VectorXf sc(dim);
              for (int64_t j = 0; j < dim; ++j)
                sc[j] = std::max(static_cast<float>(std::pow(static_cast<double>(xmean[j]), static_cast<double>(a) / n_grid)), 1e-4f);
              sc /= std::sqrt(sc.maxCoeff() * sc.minCoeff());
              grid.reset(rows_total, dim);
              const Eigen::MatrixXf Wsc = Ws * sc.asDiagonal();
              qk::detail::grid_round(Wsc, grid, Q);
              const qk::io::RowMatrixXf D = Q * sc.cwiseInverse().asDiagonal();
              int64_t rr = 0;
              for (const auto& [n, it] : group) {
                m.set_weight(n, D.middleRows(rr, it->rows));
                rr += it->rows;
              }
              std::vector<double> losses(nsub);  // summed in order below: the choice repeats exactly
#pragma omp parallel for schedule(static) num_threads(threads)
              for (size_t si = 0; si < nsub; ++si) {
                qk::io::RowMatrixXf y = xs[si * xs.size() / nsub];
                m.forward_layer(l, y);
                losses[si] = (y - ref[si]).cast<double>().squaredNorm();
              }
              double loss = 0;
              for (double v : losses) loss += v;
              if (loss < best) {
                best = loss;
                best_s = sc;
              }
            }
            qk::io::RowMatrixXf Xs = X * best_s.cwiseInverse().asDiagonal();
            const qk::io::RowMatrixXf Wscaled = Ws * best_s.asDiagonal();
            qk::AwqResult res = qk::awq(Wscaled, Xs, grid, awq_options(o));
            res.dequantized = res.dequantized * best_s.cwiseInverse().asDiagonal();
            res.scales = best_s;
            const auto enc = grid.encode();
            const int64_t rb = qk::ggml::row_size(gt, dim);
            r = 0;
            for (const auto& [n, it] : group) {
              p.ggml[n] = std::vector<uint8_t>(enc.begin() + r * rb, enc.begin() + (r + it->rows) * rb);
              m.set_weight(n, res.dequantized.middleRows(r, it->rows));
              r += it->rows;
            }
            const qk::io::RowMatrixXf g = qk::formats::read_matrix(in_file, *nf->second->in);
            std::vector<float> folded(static_cast<size_t>(g.size()));
            for (int64_t j = 0; j < g.size(); ++j) folded[static_cast<size_t>(j)] = g.data()[j] / res.scales[j];
            p.floats[norm] = std::move(folded);
            p.awq_scaled += static_cast<int>(group.size());
          }
        }
        // llama.cpp's importance matrix from the same inputs: mean x² per input column (its in_sum2 / count),
        // handed to ggml's importance-weighted encoder; one vector serves every weight of the group
        std::vector<float> imp;
        for (const auto& [n, it] : group) {
          if (it->method == "rtn+imatrix") {
            if (imp.empty()) {
              const Eigen::VectorXf d = acc.gram_diagonal();
              imp.resize(static_cast<size_t>(dim));
              for (int64_t j = 0; j < dim; ++j)
                imp[static_cast<size_t>(j)] = d[j] / static_cast<float>(std::max<int64_t>(1, acc.samples()));
            }
            const qk::io::RowMatrixXf W = m.weight(n);
            auto enc = qk::ggml::quantize(it->gtype, W.data(), W.rows(), W.cols(), imp.data(), threads);
            qk::io::RowMatrixXf D(W.rows(), W.cols());
            qk::ggml::dequantize_rows(it->gtype, enc.data(), W.rows(), W.cols(), D.data(), threads);
            p.ggml[n] = std::move(enc);
            m.set_weight(n, D);
            continue;
          }
          if (it->method != "gptq" && it->method != "awq") continue;
          if (p.ggml.count(n)) continue;  // done with the group
          const std::string where = fmt::format("{}: tensor '{}'", o.input, n);
          const qk::io::RowMatrixXf W = m.weight(n);
          if (it->action == Item::ToGgml) {
            qk::ggml::GgmlGrid grid(it->gtype);
            qk::io::RowMatrixXf D;
            if (gptq) D = qk::gptq(W, acc, grid, gptq_options(o, false)).dequantized;
            else D = qk::awq(W, X, grid, awq_options(o)).dequantized;
            auto enc = grid.encode();
            if (enc.size() != it->out_bytes)
              qk::fail<qk::Error>("{}: encoder gave {} bytes, expected {}", where, enc.size(), it->out_bytes);
            p.ggml[n] = std::move(enc);
            m.set_weight(n, D);
          } else if (it->action == Item::ToInt) {
            const qk::QuantScheme s = target.group == 0
                                          ? qk::QuantScheme::per_channel(target.bits, o.sym, false)
                                          : qk::QuantScheme::per_group(target.bits, target.group, o.sym, false);
            if (gptq) {
              qk::GptqResult info;
              p.ints[n] = qk::gptq_quantize(W, acc.hessian(), s, gptq_options(o, true), &info);
              m.set_weight(n, info.dequantized);
            } else {
              qk::AwqResult info;
              p.ints[n] = qk::awq_quantize(W, X, s, awq_options(o), &info);
              m.set_weight(n, info.dequantized);
            }
          }
        }
      }
      // every weight of the group now holds what the output will hold
      for (const auto& [n, it] : group) {
        if (p.ggml.count(n) || p.ints.count(n)) continue;
        const auto imx = imatrix.find(n);
        const float* importance = imx != imatrix.end() && it->action == Item::ToGgml &&
                                          qk::ggml::info(it->gtype).uses_importance &&
                                          static_cast<int64_t>(imx->second.size()) == it->cols
                                      ? imx->second.data()
                                      : nullptr;
        m.set_weight(n, effective_weight(*it, m.weight(n), importance, threads));
      }
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t si = 0; si < xs.size(); ++si) m.forward_layer(l, xs[si]);  // throws nothing: shapes were checked
  }
  if (show_progress) fmt::print(stderr, "\r\033[K");
  return p;
}

// ------------------------------------------------------------------------------------------------ the run
struct Stats {
  uint64_t in_bytes = 0, out_bytes = 0;
  int64_t weights = 0;            // elements of quantized tensors
  uint64_t quantized_bytes = 0;   // their encoded bytes
};

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

// GPTQ/AWQ on a GGUF model with no calibration given: calibrate on sequences sampled from the model itself
// (never the user's evaluation text), so `qtool quantize model.gguf --method gptq --type q4_k` just works.
QuantizeOptions with_default_calibration(QuantizeOptions o) {
  if ((o.method == "gptq" || o.method == "awq") && o.calib.empty() && !uses_calibration(o) &&
      lower(fs::path(o.input).extension().string()) == ".gguf") {
    o.calib_generate = true;
    if (!o.quiet)
      fmt::print(stderr,
                 "qtool: no calibration given: using {} sequences of {} tokens sampled from the model "
                 "(--calib-generate, seed {}); pass --calib-tokens FILE for your own text\n",
                 o.calib_samples, o.calib_ctx, o.calib_seed);
  }
  return o;
}

}  // namespace

int run_quantize_model(const QuantizeOptions& given) {
  const auto t0 = std::chrono::steady_clock::now();
  const QuantizeOptions o = with_default_calibration(given);
  // ---- options
  const auto target_opt = parse_target(*o.type);
  if (!target_opt) {
    throw UsageError(fmt::format("--type '{}' is not a known type; one of: {}", *o.type, type_list()));
  }
  const Target& target = *target_opt;
  if (o.fallback != "auto") {
    auto fb = parse_target(o.fallback);
    if (!fb || fb->kind == Target::Int)
      throw UsageError(fmt::format("--fallback '{}' must be auto, f16, bf16, f32 or a ggml type", o.fallback));
  }
  if (o.method != "rtn" && o.method != "gptq" && o.method != "awq")
    throw UsageError(fmt::format("--method {} is not available in model mode (rtn, gptq, awq)", o.method));
  if (o.method != "rtn" && target.kind == Target::Nf4)
    throw UsageError(fmt::format("--type nf4 is absmax (RTN) quantization as bitsandbytes does; --method {} has no "
                                 "NF4 grid",
                                 o.method));
  if (o.method != "rtn" && target.kind == Target::Plain)
    throw UsageError(fmt::format("--method {} needs a quantized --type, not {}", o.method, target.name));
  if (o.method != "rtn" && o.calib.empty() && !uses_calibration(o))
    throw UsageError(fmt::format(
        "--method {} needs calibration data: --calib-tokens IDS.i32 or --calib-generate (Llama GGUF: the model's "
        "own forward pass gives each layer's inputs), or --calib FILE (one [tokens, in_features] float matrix per "
        "linear layer, named after its weight); see docs/cli.md",
        o.method));
  if (!o.calib.empty() && uses_calibration(o))
    throw UsageError("--calib (activations) and --calib-tokens/--calib-generate (tokens) exclude each other");
  if (o.method == "rtn" && uses_calibration(o) && (target.kind != Target::Ggml || !o.imatrix.empty()))
    throw UsageError("--method rtn with --calib-tokens/--calib-generate computes the importance matrix of ggml block "
                     "types: not with --imatrix, nor for other types");
  if (o.awq_scales && (o.method != "awq" || !uses_calibration(o)))
    throw UsageError("--awq-scales needs --method awq with --calib-tokens or --calib-generate (the model is run)");
  if (!o.calib_save.empty() && !uses_calibration(o))
    throw UsageError("--calib-save needs --calib-tokens or --calib-generate");
  if (!o.imatrix.empty() && target.kind != Target::Ggml)
    throw UsageError("--imatrix applies to ggml block types (q4_k, ...) only");

  const fs::path in_path(o.input), out_path(o.output);
  Container container;
  std::string fmt_name = lower(o.output_format);
  if (fmt_name.empty()) {
    const std::string ext = lower(out_path.extension().string());
    if (ext == ".gguf") fmt_name = "gguf";
    else if (ext == ".safetensors") fmt_name = target.kind == Target::Int ? "gptq" : "safetensors";
    else if (ext.empty() || fs::is_directory(out_path)) fmt_name = "gptq";
    else throw UsageError(fmt::format("cannot tell the output format of '{}': use .gguf, .safetensors, a directory "
                                      "(GPTQ checkpoint) or --format", o.output));
  }
  if (fmt_name == "gguf") container = Container::Gguf;
  else if (fmt_name == "safetensors") container = target.kind == Target::Int ? Container::Gptq : Container::Safetensors;
  else if (fmt_name == "gptq") container = Container::Gptq;
  else throw UsageError(fmt::format("--format '{}' is not gguf, safetensors or gptq", o.output_format));
  if (container == Container::Gguf && target.kind == Target::Nf4)
    throw UsageError("--type nf4 is written as safetensors (the bitsandbytes layout), not GGUF");
  if (container == Container::Gguf && target.kind == Target::Int)
    throw UsageError(fmt::format("--type {} is written as a GPTQ checkpoint (a directory or .safetensors), not GGUF; "
                                 "use a ggml type (q4_0, q4_k, ...) for GGUF",
                                 target.name));
  if (container != Container::Gguf && target.kind == Target::Ggml)
    throw UsageError(fmt::format("--type {} is a ggml block type: write a .gguf file", target.name));
  if (container == Container::Gptq && target.kind != Target::Int)
    throw UsageError(fmt::format("a GPTQ checkpoint holds int2/int3/int4/int8 types, not {}", target.name));

  // GPTQ checkpoint: a directory (model.safetensors + quantize_config.json) or a .safetensors file with the config
  // beside it.
  const bool gptq_dir = container == Container::Gptq && lower(out_path.extension().string()) != ".safetensors";
  const fs::path config_path = container != Container::Gptq ? fs::path()
                               : gptq_dir ? out_path / "quantize_config.json"
                                          : out_path.parent_path() / "quantize_config.json";
  if (same_file(in_path, out_path)) throw UsageError(fmt::format("output '{}' is the input file", o.output));
  if (fs::exists(out_path) && !o.force)
    throw UsageError(fmt::format("output '{}' exists (pass --force to overwrite it)", o.output));
  if (container == Container::Gptq && !gptq_dir && fs::exists(config_path) && !o.force)
    throw UsageError(fmt::format("'{}' exists (pass --force to overwrite it)", config_path.string()));
  if (gptq_dir && fs::exists(out_path) && !fs::is_directory(out_path))
    throw UsageError(fmt::format("output '{}' exists and is not a directory", o.output));

  std::vector<std::regex> skip;
  for (const auto& s : o.skip) {
    try {
      skip.emplace_back(s, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw UsageError(fmt::format("--skip '{}': {}", s, e.what()));
    }
  }
  const int threads = qk::resolve_threads(o.threads);

  // ---- input: a quantized checkpoint (GPTQ, bitsandbytes NF4/FP4) is read as its logical float weights, each
  // quantized layer dequantized when its turn comes
  const auto ckpt = qk::formats::QuantizedCheckpoint::open(in_path);
  const TensorFile* in = &ckpt->file();
  std::map<std::string, const qk::formats::LogicalTensor*> logical;
  for (const auto& l : ckpt->tensors())
    if (l.quantized()) logical[l.name()] = &l;
  if (ckpt->quantized() && o.method != "rtn")
    throw UsageError(fmt::format("'{}' is a GPTQ or bitsandbytes checkpoint: its weights are dequantized and "
                                 "re-quantized with --method rtn only",
                                 o.input));
  if (same_file(ckpt->weights_path(), out_path))
    throw UsageError(fmt::format("output '{}' is the input file", o.output));
  if (in->format() == qk::io::FileFormat::Npy)
    throw UsageError(fmt::format("'{}' is a single .npy array: model mode reads GGUF or safetensors models "
                                 "(matrix mode: drop --type, use --bits/--group)",
                                 o.input));
  std::map<std::string, std::vector<float>> imatrix;
  if (!o.imatrix.empty()) imatrix = load_imatrix(o.imatrix);
  std::unique_ptr<TensorFile> calib;
  if (!o.calib.empty()) calib = TensorFile::open(o.calib);

  Planner planner{o, target, container, std::move(skip), false};
  for (const auto& l : ckpt->tensors()) planner.has_output = planner.has_output || is_output(l.name());
  std::vector<Item> items;
  items.reserve(ckpt->tensors().size());
  uint64_t total_in = 0;
  for (const auto& l : ckpt->tensors()) {
    items.push_back(planner.plan(l.info));
    total_in += l.info.nbytes;
  }
  // methods: RTN, or GPTQ/AWQ where calibration activations exist for the layer
  for (auto& it : items) {
    if (it.action == Item::ToNf4) it.method = "rtn";
    if (it.action != Item::ToGgml && it.action != Item::ToInt) continue;
    if (o.method == "rtn") {
      const bool weighted = it.action == Item::ToGgml && qk::ggml::info(it.gtype).uses_importance;
      if (uses_calibration(o)) {
        it.method = weighted && is_llama_linear(it.in->name) ? "rtn+imatrix" : "rtn";
        if (!is_llama_linear(it.in->name))
          it.note += it.note.empty() ? "not a block's linear layer: rtn" : "; not a block's linear layer: rtn";
      } else {
        it.method = imatrix.count(it.in->name) && weighted ? "rtn+imatrix" : "rtn";
      }
    } else if (calib && calib->find(it.in->name)) {
      it.method = o.method;
    } else if (uses_calibration(o) && is_llama_linear(it.in->name)) {
      it.method = o.method;
    } else if (uses_calibration(o)) {
      it.method = "rtn";
      it.note += it.note.empty() ? "not a block's linear layer: rtn" : "; not a block's linear layer: rtn";
    } else {
      it.method = "rtn";
      it.note += it.note.empty() ? "no calibration activations: rtn" : "; no calibration activations: rtn";
    }
  }

  // ---- calibration from tokens: every GPTQ/AWQ layer quantized up front, sequentially through the model
  Prepared prepared;
  if (uses_calibration(o)) {
    if (!o.calib_save.empty() && (same_file(in_path, o.calib_save) || same_file(out_path, o.calib_save) ||
                                  (!o.calib_tokens.empty() && same_file(o.calib_tokens, o.calib_save))))
      throw UsageError(fmt::format("--calib-save '{}' is the input or the output", o.calib_save));
    if (!o.calib_save.empty() && fs::exists(o.calib_save) && !o.force)
      throw UsageError(fmt::format("--calib-save '{}' exists (pass --force to overwrite it)", o.calib_save));
    prepared = quantize_sequentially(o, target, *in, items, imatrix, !o.quiet && isatty(2));
  }

  // ---- output
  qk::util::WriteOptions wo;
  wo.overwrite = o.force;
  wo.inputs = {in_path, ckpt->weights_path()};
  if (!o.calib.empty()) wo.inputs.push_back(o.calib);
  if (!o.calib_tokens.empty()) wo.inputs.push_back(o.calib_tokens);
  if (!o.imatrix.empty()) wo.inputs.push_back(o.imatrix);
  std::unique_ptr<TempDir> tmpdir;
  std::unique_ptr<Sink> sink;
  qk::gptq_hf::QuantizeConfig cfg;
  if (container == Container::Gptq) {
    cfg.bits = target.bits;
    cfg.group_size = target.group == 0 ? -1 : target.group;
    cfg.sym = o.sym;
    cfg.desc_act = o.method == "gptq" && o.act_order;
    cfg.static_groups = o.static_groups;
    cfg.damp_percent = o.damp;
    // asymmetric groups may need a zero-point of 0, which the v1 layout cannot store
    cfg.checkpoint_format = o.sym ? "gptq" : "gptq_v2";
  }
  if (container == Container::Gguf) {
    sink = std::make_unique<GgufSink>(out_path, wo, *in, target);
  } else if (gptq_dir) {
    tmpdir = std::make_unique<TempDir>(out_path, o.force);
    sink = std::make_unique<SafetensorsSink>(tmpdir->path() / "model.safetensors", wo, *in, true, cfg,
                                             tmpdir->path() / "quantize_config.json");
  } else {
    sink = std::make_unique<SafetensorsSink>(out_path, wo, *in, container == Container::Gptq, cfg, config_path);
  }
  for (const auto& it : items) sink->declare(it.in->name, it);

  // ---- stream the tensors
  Progress progress(static_cast<int64_t>(items.size()), total_in, !o.quiet);
  Stats st;
  uint64_t done = 0;
  constexpr int64_t kChunkFloats = int64_t{1} << 22;  // 16 MiB of floats per chunk
  std::vector<float> fbuf;
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    const TensorInfo& t = *it.in;
    progress.update(static_cast<int64_t>(i), t.name, done, true);
    // a quantized layer of a checkpoint: its dequantized float32 values stand in for the file's bytes
    const auto lt = logical.find(t.name);
    const bool dequantized = lt != logical.end();
    qk::io::RowMatrixXf deq;
    if (dequantized) deq = ckpt->read_matrix(*lt->second);
    const auto bytes = dequantized ? std::span<const std::byte>(reinterpret_cast<const std::byte*>(deq.data()),
                                                                static_cast<size_t>(deq.size()) * sizeof(float))
                                   : in->bytes(t);
    // pages of the mapping are given back once read; the buffer of a dequantized layer is freed with it
    auto release_pages = [dequantized](const std::byte* p, size_t n) {
      if (!dequantized) qtool::release_pages(p, n);
    };
    auto read_in = [&](const TensorInfo& ti) { return dequantized ? deq : qk::formats::read_matrix(*in, ti); };
    const std::string where = fmt::format("{}: tensor '{}'", o.input, t.name);
    if (const auto rf = prepared.floats.find(t.name); rf != prepared.floats.end()) {
      // a norm weight with AWQ's 1/s folded in (a Copy or ToPlain item: written in the item's output type)
      if (static_cast<int64_t>(rf->second.size()) != t.numel() || (it.action != Item::Copy && it.action != Item::ToPlain))
        qk::fail<qk::Error>("{}: cannot write the folded scales ({} values)", where, rf->second.size());
      std::vector<std::byte> out(static_cast<size_t>(t.numel()) * qk::io::dtype_size(it.out_dtype));
      float_to_plain(rf->second.data(), t.numel(), it.out_dtype, out.data());
      sink->write_plain(t.name, out);
      release_pages(bytes.data(), bytes.size());
      done += t.nbytes;
      st.in_bytes += t.nbytes;
      st.out_bytes += it.out_bytes;
      continue;
    }
    switch (it.action) {
      case Item::Copy:
        if (container == Container::Gguf && t.dtype == DType::Ggml) sink->write_ggml(t.name, bytes);
        else sink->write_plain(t.name, bytes);
        release_pages(bytes.data(), bytes.size());
        break;
      case Item::ToPlain: {
        std::vector<std::byte> out(it.out_bytes);
        const size_t es = qk::io::dtype_size(it.out_dtype);
        if (t.dtype == DType::Ggml) {
          const qk::io::RowMatrixXf m = read_in(t);
          float_to_plain(m.data(), m.size(), it.out_dtype, out.data());
        } else {
          const int64_t step = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(it.cols, 1));
          for (int64_t r0 = 0; r0 < it.rows; r0 += step) {
            const int64_t nr = std::min(step, it.rows - r0);
            fbuf.resize(static_cast<size_t>(nr * it.cols));
            rows_to_float(t, bytes, it.cols, r0, nr, fbuf.data());
            float_to_plain(fbuf.data(), nr * it.cols, it.out_dtype, out.data() + static_cast<size_t>(r0 * it.cols) * es);
            const size_t ies = qk::io::dtype_size(t.dtype);
            release_pages(bytes.data() + static_cast<size_t>(r0 * it.cols) * ies, static_cast<size_t>(nr * it.cols) * ies);
          }
        }
        sink->write_plain(t.name, out);
        break;
      }
      case Item::ToGgml: {
        std::vector<uint8_t> out(it.out_bytes);
        const int64_t rb = qk::ggml::row_size(it.gtype, it.cols);
        const auto imx = imatrix.find(t.name);
        const float* importance = nullptr;
        if (imx != imatrix.end() && qk::ggml::info(it.gtype).uses_importance) {
          if (static_cast<int64_t>(imx->second.size()) != it.cols)
            qk::fail<qk::ShapeError>("{}: the importance matrix has {} values for rows of {}", where,
                                     imx->second.size(), it.cols);
          importance = imx->second.data();
        }
        if (const auto pre = prepared.ggml.find(t.name); pre != prepared.ggml.end()) {
          out.swap(pre->second);
          release_pages(bytes.data(), bytes.size());
        } else if (it.method == "gptq" || it.method == "awq") {
          const qk::io::RowMatrixXf W = read_in(t);
          const qk::io::RowMatrixXf X = calib->read_matrix(calib->tensor(t.name));
          qk::ggml::GgmlGrid grid(it.gtype);
          quantize_onto_grid(it.method, W, X, grid, o, where);
          auto enc = grid.encode();
          if (enc.size() != out.size()) qk::fail<qk::Error>("{}: encoder gave {} bytes, expected {}", where, enc.size(), out.size());
          out.swap(enc);
          release_pages(bytes.data(), bytes.size());
        } else if (t.dtype == DType::Ggml) {
          const qk::io::RowMatrixXf m = read_in(t);
          if (!qk::detail::all_finite(m.data(), m.size())) qk::fail<qk::NumericError>("{}: NaN or Inf values", where);
          qk::ggml::quantize_rows(it.gtype, m.data(), it.rows, it.cols, out.data(), importance, threads);
        } else {
          const int64_t step = std::max<int64_t>(1, kChunkFloats / it.cols);
          const size_t ies = qk::io::dtype_size(t.dtype);
          for (int64_t r0 = 0; r0 < it.rows; r0 += step) {
            const int64_t nr = std::min(step, it.rows - r0);
            // float32 rows are encoded straight from the mapping; other float types through a chunk buffer
            const std::byte* src_bytes = bytes.data() + static_cast<size_t>(r0 * it.cols) * ies;
            const float* src = nullptr;
            if (t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(src_bytes) % alignof(float) == 0) {
              src = reinterpret_cast<const float*>(src_bytes);
            } else {
              fbuf.resize(static_cast<size_t>(nr * it.cols));
              rows_to_float(t, bytes, it.cols, r0, nr, fbuf.data());
              src = fbuf.data();
            }
            try {  // the encoder checks for NaN/Inf; name the tensor in its message
              qk::ggml::quantize_rows(it.gtype, src, nr, it.cols, out.data() + r0 * rb, importance, threads);
            } catch (const qk::NumericError& e) {
              qk::fail<qk::NumericError>("{} (rows {}..{}): {}", where, r0, r0 + nr - 1, e.what());
            }
            release_pages(bytes.data() + static_cast<size_t>(r0 * it.cols) * ies, static_cast<size_t>(nr * it.cols) * ies);
            progress.update(static_cast<int64_t>(i), t.name, done + static_cast<uint64_t>(r0 + nr) * it.cols * ies);
          }
        }
        sink->write_ggml(t.name, as_bytes_of(out));
        st.weights += t.numel();
        st.quantized_bytes += out.size();
        break;
      }
      case Item::ToNf4: {
        const qk::io::RowMatrixXf W = read_in(t);
        release_pages(bytes.data(), bytes.size());
        if (!qk::detail::all_finite(W.data(), W.size())) qk::fail<qk::NumericError>("{}: NaN or Inf values", where);
        qk::Nf4Options no;
        no.block = kNf4Block;
        no.dq_block = kNf4Group;
        const auto nq = qk::nf4_quantize(std::span<const float>(W.data(), static_cast<size_t>(W.size())), no);
        sink->write_nf4(t, nq);
        st.weights += t.numel();
        st.quantized_bytes += it.out_bytes;
        break;
      }
      case Item::ToInt: {
        const qk::io::RowMatrixXf W = read_in(t);
        release_pages(bytes.data(), bytes.size());
        if (!qk::detail::all_finite(W.data(), W.size())) qk::fail<qk::NumericError>("{}: NaN or Inf values", where);
        const qk::QuantScheme s = target.group == 0 ? qk::QuantScheme::per_channel(target.bits, o.sym, false)
                                                    : qk::QuantScheme::per_group(target.bits, target.group, o.sym, false);
        qk::QuantizedTensor q;
        if (const auto pre = prepared.ints.find(t.name); pre != prepared.ints.end()) {
          q = std::move(pre->second);
        } else if (it.method == "gptq" || it.method == "awq") {
          const qk::io::RowMatrixXf X = calib->read_matrix(calib->tensor(t.name));
          q = quantize_int_with_method(it.method, W, X, s, o, where);
        } else {
          // parameters with fp16-representable scales, so the checkpoint's fp16 scales decode the same codes
          qk::QuantParams p = qk::compute_params(W, s);
          for (Eigen::Index k = 0; k < p.scale.size(); ++k) {
            float& sc = p.scale.data()[k];
            uint16_t h = qk::fp32_to_fp16(sc);
            if (qk::fp16_to_fp32(h) <= 0.0f) h = 1;  // smallest fp16 subnormal
            if ((h & 0x7C00u) == 0x7C00u)
              qk::fail<qk::NumericError>("{}: scale {} exceeds the fp16 range of GPTQ checkpoints", where, sc);
            sc = qk::fp16_to_fp32(h);
          }
          q = qk::quantize(W, s, &p);
        }
        const auto packed = qk::gptq_hf::pack(q, cfg.zero_format(), where);
        sink->write_int(t.name, packed);
        st.weights += t.numel();
        st.quantized_bytes += it.out_bytes;
        break;
      }
    }
    done += t.nbytes;
    st.in_bytes += t.nbytes;
    st.out_bytes += it.out_bytes;
  }
  progress.update(static_cast<int64_t>(items.size()) - 1, "writing", done, true);
  sink->commit();
  if (tmpdir) tmpdir->commit();
  progress.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---- summary
  std::error_code ec;
  const uint64_t in_file = in->file_size();
  uint64_t out_file = 0;
  if (gptq_dir) {
    for (const auto& e : fs::directory_iterator(out_path, ec))
      if (e.is_regular_file()) out_file += e.file_size();
  } else {
    out_file = fs::file_size(out_path, ec);
  }
  struct Group {
    int tensors = 0;
    int64_t elems = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, Group> by_type;
  int fallbacks = 0;
  for (const auto& it : items) {
    auto& g = by_type[it.out_type];
    g.tensors++;
    g.elems += it.in->numel();
    g.bytes += it.out_bytes;
    fallbacks += it.fallback;
  }
  const double bpw = st.weights ? 8.0 * static_cast<double>(st.quantized_bytes) / static_cast<double>(st.weights) : 0.0;
  if (o.json) {
    Json j;
    j.obj();
    j.kv("input", o.input).kv("output", o.output).kv("type", target.name).kv("method", o.method);
    j.kv("input_bytes", static_cast<size_t>(in_file)).kv("output_bytes", static_cast<size_t>(out_file));
    j.kv("quantized_bits_per_weight", bpw).kv("seconds", secs);
    j.kv("mb_per_s", secs > 0 ? static_cast<double>(st.in_bytes) / 1e6 / secs : 0.0);
    j.kv("fallbacks", fallbacks);
    if (!prepared.source.empty()) j.kv("calibration", prepared.source);
    j.key("tensors").arr();
    for (const auto& it : items) {
      j.obj();
      j.kv("name", it.in->name).kv("shape", shape_text(it.in->shape));
      j.kv("in_type", ckpt->tensor(it.in->name).type).kv("out_type", it.out_type);
      j.kv("bytes", static_cast<size_t>(it.out_bytes)).kv("method", it.method);
      j.kv("fallback", it.fallback).kv("note", it.note);
      j.end();
    }
    j.end();
    j.end();
    fmt::print("{}\n", j.str());
    return 0;
  }
  if (o.quiet) return 0;
  Table table({"type", "tensors", "weights", "size", "bits/weight"});
  for (const auto& [name, g] : by_type)
    table.add({name, std::to_string(g.tensors), std::to_string(g.elems), human_bytes(static_cast<double>(g.bytes)),
               fmt::format("{:.2f}", g.elems ? 8.0 * static_cast<double>(g.bytes) / static_cast<double>(g.elems) : 0.0)});
  fmt::print("{} -> {} ({}, method {})\n", o.input, o.output, target.name, o.method);
  if (!prepared.source.empty())
    fmt::print("calibration: {}; layers quantized in order, each on the inputs of the partly quantized model\n",
               prepared.source);
  if (!prepared.floats.empty())
    fmt::print("AWQ input scales of {} weights folded into {} norm weights\n", prepared.awq_scaled,
               prepared.floats.size());
  table.print();
  fmt::print("size: {} -> {} ({:.2f}x); quantized weights {:.2f} bits/weight; {:.2f} s, {:.1f} MB/s\n",
             human_bytes(static_cast<double>(in_file)), human_bytes(static_cast<double>(out_file)),
             out_file ? static_cast<double>(in_file) / static_cast<double>(out_file) : 0.0, bpw, secs,
             secs > 0 ? static_cast<double>(st.in_bytes) / 1e6 / secs : 0.0);
  if (fallbacks) {
    fmt::print("{} tensor(s) fell back:\n", fallbacks);
    for (const auto& it : items)
      if (it.fallback) fmt::print("  {} {} -> {}: {}\n", it.in->name, shape_text(it.in->shape), it.out_type, it.note);
  }
  for (const auto& it : items)
    if (!it.fallback && contains(it.note, "no calibration"))
      fmt::print("  {}: {}\n", it.in->name, it.note);
  return 0;
}

}  // namespace qtool
