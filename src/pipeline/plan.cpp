// The Plan: llama.cpp's per-tensor rules, fallbacks, checks (qk/pipeline/plan.hpp). JSON is in plan_json.cpp.
#include "qk/pipeline/plan.hpp"

#include <algorithm>
#include <regex>

#include <fmt/format.h>

#include "qk/core/error.hpp"
#include "qk/formats/bnb_nf4.hpp"
#include "qk/io/gguf.hpp"

namespace qk::pipeline {
namespace {

using io::DType;

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

// llama.cpp's demotion of a 256-block type to a 32-block one of similar size (src/llama-quant.cpp).
std::optional<ggml::Type> demotion(ggml::Type t) {
  using T = ggml::Type;
  switch (t) {
    case T::Q2_K:
    case T::Q3_K: return T::Q4_0;
    case T::Q4_K: return T::Q5_0;
    case T::Q5_K: return T::Q5_1;
    case T::Q6_K: return T::Q8_0;
    default: return std::nullopt;
  }
}

class Planner {
 public:
  Planner(const PlanOptions& o, const Coverage& cov) : o_(o), cov_(cov) {
    for (const auto& s : o.skip) {
      try {
        skip_.emplace_back(s, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        fail<InvalidArgument>("--skip '{}': {}", s, e.what());
      }
    }
    if (o.fallback != "auto") {
      auto fb = TargetType::parse(o.fallback);
      if (!fb || fb->kind == TargetType::Kind::Int || fb->kind == TargetType::Kind::Nf4)
        fail<InvalidArgument>("--fallback '{}' must be auto, f16, bf16, f32 or a ggml type", o.fallback);
      fallback_ = fb;
    }
  }

  TensorPlan plan(const formats::LogicalTensor& l, bool has_output) const {
    const io::TensorInfo& t = l.info;
    TensorPlan p;
    p.name = t.name;
    p.shape = t.shape;
    p.in_type = l.type;
    const std::string& n = t.name;
    const bool weight = n.ends_with("weight");
    const bool matrix = t.shape.size() >= 2;
    const bool skipped =
        std::any_of(skip_.begin(), skip_.end(), [&](const std::regex& r) { return std::regex_search(n, r); });
    const bool floating = is_float(t.dtype) || t.dtype == DType::Ggml;

    // Tensors that stay as they are (converted only when the container cannot hold them).
    auto keep = [&](const std::string& why) {
      if (t.dtype == DType::Ggml) {
        if (o_.container == Container::Gguf) {
          p.action = Action::Copy;
          p.dtype = DType::Ggml;
          p.ggml_type = t.ggml_type;
        } else {
          set_plain(p, DType::F32);
        }
      } else if (o_.container == Container::Gguf && io::ggml_type_of(t.dtype) < 0) {
        set_plain(p, DType::F32);
      } else if (!matrix && is_float(t.dtype) && t.dtype != DType::F32) {
        set_plain(p, DType::F32);  // 1-D float tensors in F32
      } else if (is_float(t.dtype)) {
        set_plain(p, t.dtype);
      } else {
        p.action = Action::Copy;  // integer and boolean tensors: bytes as they are
        p.dtype = t.dtype;
      }
      p.note = why;
      return p;
    };

    if (!floating) return keep("not a float tensor");
    if (!matrix) return keep("1-D");
    if (skipped) return keep("--skip");
    if (!weight || never_quantized(n)) return keep("not a quantized weight");

    const bool out_proj = is_output(n) || (!has_output && is_token_embedding(n));
    const bool embedding = !out_proj && is_token_embedding(n);
    const TargetType& target = o_.type;
    using K = TargetType::Kind;
    if (target.kind == K::Plain) {
      set_plain(p, target.plain);
      return p;
    }
    if (target.kind == K::Nf4) {
      // as transformers' bitsandbytes integration: linear layers only; the output projection and embeddings stay
      if ((out_proj && !o_.quantize_output) || (embedding && !o_.quantize_embeddings))
        return keep(out_proj ? "output projection (kept, as bitsandbytes does)" : "token embedding (kept)");
      if (t.shape.size() != 2) return keep("rank > 2");
      p.action = Action::Nf4;
      return with_method(p);
    }
    if (target.kind == K::Int) {
      if ((out_proj && !o_.quantize_output) || (embedding && !o_.quantize_embeddings))
        return keep(out_proj ? "output projection (GPTQ keeps it)" : "token embedding (GPTQ keeps it)");
      if (t.shape.size() != 2) return keep("rank > 2");
      const int64_t cols = p.cols(), rows = p.rows();
      const int64_t g = target.group == 0 ? cols : target.group;
      std::string why;
      if (cols % g != 0) why = fmt::format("group {} does not divide the row of {}", g, cols);
      else if ((cols * target.bits) % 32 != 0) why = fmt::format("{} inputs of {} bits are not whole words", cols, target.bits);
      else if ((rows * target.bits) % 32 != 0) why = fmt::format("{} outputs of {} bits are not whole zero words", rows, target.bits);
      if (!why.empty()) {
        set_plain(p, fallback_ && fallback_->kind == K::Plain ? fallback_->plain : DType::F16);
        p.fallback = true;
        p.note = "fallback: " + why;
        return p;
      }
      p.action = Action::Int;
      p.bits = target.bits;
      p.group = target.group;
      return with_method(p);
    }
    // ggml block types
    using T = ggml::Type;
    if (out_proj && !o_.quantize_output) {
      // llama.cpp: Q6_K for the output, Q8_0 when the row is not a multiple of 256 (or the target is Q8_0)
      if (target.ggml == T::Q8_0) set_ggml(p, T::Q8_0, "output projection");
      else if (p.cols() % ggml::QK_K == 0) set_ggml(p, T::Q6_K, "output projection (llama.cpp default)");
      else set_ggml(p, T::Q8_0, "output projection, row not a multiple of 256 (llama.cpp default)");
      return with_method(p);
    }
    if (embedding && !o_.quantize_embeddings) {
      set_ggml(p, T::Q8_0, "token embedding (kept at q8_0; --quantize-embeddings)");
      return with_method(p);
    }
    set_ggml(p, target.ggml, "");
    return with_method(p);
  }

 private:
  static void set_plain(TensorPlan& p, DType d) {
    p.action = Action::Convert;
    p.dtype = d;
  }

  // A ggml type for the tensor, or a fallback when the row length does not fit the block.
  void set_ggml(TensorPlan& p, ggml::Type t, const std::string& why) const {
    const auto& inf = ggml::info(t);
    if (p.cols() % inf.block_elems == 0) {
      p.action = Action::Ggml;
      p.block = t;
      p.note = why;
      return;
    }
    p.fallback = true;
    const std::string reason = fmt::format("row of {} is not a multiple of {} ({})", p.cols(), inf.block_elems, inf.name);
    std::optional<TargetType> fb = fallback_;
    if (!fb) {
      if (const auto d = demotion(t)) fb = TargetType::parse(std::string(ggml::info(*d).name));
    }
    if (fb && fb->kind == TargetType::Kind::Ggml && p.cols() % ggml::info(fb->ggml).block_elems == 0) {
      p.action = Action::Ggml;
      p.block = fb->ggml;
      p.note = "fallback: " + reason;
      return;
    }
    set_plain(p, fb && fb->kind == TargetType::Kind::Plain ? fb->plain : DType::F16);
    p.note = fmt::format("fallback: {}{}", reason,
                         fb && fb->kind == TargetType::Kind::Ggml ? fmt::format("; {} does not fit either", fb->name) : "");
  }

  // The method of a quantized tensor: the requested one where calibration reaches it, else RTN (noted).
  //  - Rtn: rtn+imatrix where an importance vector is at hand (an imatrix file) and the type's encoder uses one;
  //  - RtnImatrix (importance from calibration): that where calibration reaches the tensor, else RTN (noted);
  //  - Gptq / Awq: that where calibration reaches the tensor, else RTN (noted).
  TensorPlan& with_method(TensorPlan& p) const {
    const bool weighted = p.action == Action::Ggml && ggml::info(p.block).uses_importance;
    auto note = [&](const std::string& s) { p.note += p.note.empty() ? s : "; " + s; };
    if (!p.quantized()) return p;  // a fallback to a plain type
    if (p.action == Action::Nf4) {
      p.method = Method::Rtn;
      return p;
    }
    if (o_.method == Method::Rtn) {
      p.method = weighted && cov_.importance && cov_.importance(p.name) ? Method::RtnImatrix : Method::Rtn;
      return p;
    }
    const bool reached = o_.method == Method::RtnImatrix ? cov_.importance && cov_.importance(p.name)
                                                         : cov_.calibrated && cov_.calibrated(p.name);
    if (reached && (o_.method != Method::RtnImatrix || weighted)) {
      p.method = o_.method;
    } else {
      p.method = Method::Rtn;
      if (!reached) note(cov_.missing_reason + ": rtn");
    }
    return p;
  }

  const PlanOptions& o_;
  const Coverage& cov_;
  std::vector<std::regex> skip_;
  std::optional<TargetType> fallback_;
};

}  // namespace

const char* method_name(Method m) {
  switch (m) {
    case Method::None: return "-";
    case Method::Rtn: return "rtn";
    case Method::RtnImatrix: return "rtn+imatrix";
    case Method::Gptq: return "gptq";
    case Method::Awq: return "awq";
  }
  return "?";
}

std::optional<Method> method_from_name(std::string_view n) {
  for (Method m : {Method::None, Method::Rtn, Method::RtnImatrix, Method::Gptq, Method::Awq})
    if (n == method_name(m)) return m;
  return std::nullopt;
}

const char* action_name(Action a) {
  switch (a) {
    case Action::Copy: return "copy";
    case Action::Convert: return "convert";
    case Action::Ggml: return "ggml";
    case Action::Int: return "int";
    case Action::Nf4: return "nf4";
  }
  return "?";
}

int64_t TensorPlan::rows() const {
  const int64_t c = cols();
  if (c == 0) return 0;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n / c;
}

const TensorPlan* Plan::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

uint64_t Plan::bytes() const {
  uint64_t b = 0;
  for (const auto& t : tensors) b += t.bytes;
  return b;
}

void finish(TensorPlan& t, Container c) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  const int64_t rows = t.rows(), cols = t.cols();
  switch (t.action) {
    case Action::Copy:
      if (t.dtype == io::DType::Ggml) {  // a GGUF block tensor, bytes as they are
        const io::GgmlTypeInfo* g = io::ggml_type_info(t.ggml_type);
        if (!g) fail<FormatError>("tensor '{}': ggml type {} is unknown", t.name, t.ggml_type);
        t.bytes = io::ggml_nbytes(t.ggml_type, t.shape);
        t.out_type = g->name;
      } else {
        t.ggml_type = c == Container::Gguf ? io::ggml_type_of(t.dtype) : -1;
        t.bytes = static_cast<uint64_t>(n) * io::dtype_size(t.dtype);
        t.out_type = io::dtype_name(t.dtype);
      }
      return;
    case Action::Convert:
      t.ggml_type = io::ggml_type_of(t.dtype);
      t.bytes = static_cast<uint64_t>(n) * io::dtype_size(t.dtype);
      t.out_type = io::dtype_name(t.dtype);
      return;
    case Action::Ggml:
      t.ggml_type = static_cast<int>(ggml::type_id(t.block));
      t.bytes = static_cast<uint64_t>(ggml::row_size(t.block, cols) * rows);
      t.out_type = std::string(ggml::info(t.block).name);
      return;
    case Action::Int: {
      const int64_t g = t.group == 0 ? cols : t.group, G = cols / g;
      t.ggml_type = -1;
      t.bytes = static_cast<uint64_t>(cols * t.bits / 32 * rows * 4 + G * (rows * t.bits / 32) * 4 + G * rows * 2 +
                                      cols * 4);
      t.out_type = t.group == 0 ? fmt::format("int{}", t.bits) : fmt::format("int{}-g{}", t.bits, t.group);
      return;
    }
    case Action::Nf4:
      t.ggml_type = -1;
      t.bytes = formats::bnb::nf4_bytes(t.name, t.shape, io::DType::F32);
      t.out_type = "nf4";
      return;
  }
}

Plan make_plan(const formats::QuantizedCheckpoint& input, const PlanOptions& o, const Coverage& coverage) {
  using K = TargetType::Kind;
  if (o.container == Container::Gguf && o.type.kind == K::Nf4)
    fail<InvalidArgument>("--type nf4 is written as safetensors (the bitsandbytes layout), not GGUF");
  if (o.container == Container::Gguf && o.type.kind == K::Int)
    fail<InvalidArgument>("--type {} is written as a GPTQ checkpoint (a directory or .safetensors), not GGUF; use a "
                          "ggml type (q4_0, q4_k, ...) for GGUF",
                          o.type.name);
  if (o.container != Container::Gguf && o.type.kind == K::Ggml)
    fail<InvalidArgument>("--type {} is a ggml block type: write a .gguf file", o.type.name);
  if (o.container == Container::GptqCheckpoint && o.type.kind != K::Int)
    fail<InvalidArgument>("a GPTQ checkpoint holds int2/int3/int4/int8 types, not {}", o.type.name);
  if (o.method != Method::Rtn && o.type.kind == K::Nf4)
    fail<InvalidArgument>("--type nf4 is absmax (RTN) quantization as bitsandbytes does; --method {} has no NF4 grid",
                          method_name(o.method));
  if (o.method != Method::Rtn && o.method != Method::RtnImatrix && o.type.kind == K::Plain)
    fail<InvalidArgument>("--method {} needs a quantized --type, not {}", method_name(o.method), o.type.name);
  Planner planner(o, coverage);
  bool has_output = false;
  for (const auto& l : input.tensors()) has_output = has_output || is_output(l.name());
  Plan plan;
  plan.container = o.container;
  plan.type = o.type.name;
  plan.sym = o.sym;
  plan.tensors.reserve(input.tensors().size());
  for (const auto& l : input.tensors()) {
    plan.tensors.push_back(planner.plan(l, has_output));
    finish(plan.tensors.back(), o.container);
  }
  return plan;
}

}  // namespace qk::pipeline
