// A Plan as JSON and back, and the plan check against an input (qk/pipeline/plan.hpp).
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "qk/core/error.hpp"
#include "qk/io/gguf.hpp"
#include "qk/pipeline/plan.hpp"
#include "qk/util/json_writer.hpp"
#include "util/json.hpp"

namespace qk::pipeline {
namespace {

using util::Json;

std::optional<io::DType> dtype_from_name(std::string_view n) {
  for (int i = 0; i <= static_cast<int>(io::DType::F8_E4M3); ++i) {
    const auto d = static_cast<io::DType>(i);
    if (d != io::DType::Ggml && n == io::dtype_name(d)) return d;
  }
  return std::nullopt;
}

std::optional<Container> container_from_name(std::string_view n) {
  for (Container c : {Container::Gguf, Container::Safetensors, Container::GptqCheckpoint})
    if (n == container_name(c)) return c;
  return std::nullopt;
}

struct Reader {
  const std::string& what;
  std::string where;

  [[noreturn]] void bad(const std::string& msg) const { fail<FormatError>("{}: {}{}", what, where, msg); }
  const Json& member(const Json& o, std::string_view k, Json::Kind kind) const {
    const Json* v = o.find(k);
    if (!v) bad(fmt::format("missing \"{}\"", k));
    if (v->kind != kind) bad(fmt::format("\"{}\" has the wrong type", k));
    return *v;
  }
  const std::string& text(const Json& o, std::string_view k) const { return member(o, k, Json::String).text; }
  bool flag(const Json& o, std::string_view k) const { return member(o, k, Json::Bool).b; }
  int64_t integer(const Json& v) const {
    int64_t x = 0;
    const auto r = std::from_chars(v.text.data(), v.text.data() + v.text.size(), x);
    if (v.kind != Json::Number || r.ec != std::errc() || r.ptr != v.text.data() + v.text.size())
      bad(fmt::format("'{}' is not an integer", v.text));
    return x;
  }
};

}  // namespace

std::string Plan::to_json() const {
  util::JsonWriter j;
  j.obj().kv("qk_plan", 1).kv("container", container_name(container)).kv("type", type).kv("sym", sym);
  j.key("tensors").arr();
  for (const auto& t : tensors) {
    j.obj().kv("name", t.name);
    j.key("shape").arr();
    for (int64_t d : t.shape) j.val(static_cast<long long>(d));
    j.end();
    j.kv("in_type", t.in_type).kv("action", action_name(t.action)).kv("out_type", t.out_type);
    j.kv("method", method_name(t.method)).kv("fallback", t.fallback).kv("note", t.note);
    j.kv("bytes", static_cast<size_t>(t.bytes));
    j.end();
  }
  j.end().end();
  return j.str();
}

Plan Plan::from_json(std::string_view json, const std::string& what) {
  const Json root = util::JsonParser(json, what, "plan JSON").document();
  Reader r{what, ""};
  if (root.kind != Json::Object) r.bad("not a JSON object");
  if (r.integer(r.member(root, "qk_plan", Json::Number)) != 1) r.bad("unsupported plan version (1 is read)");
  Plan p;
  const auto c = container_from_name(r.text(root, "container"));
  if (!c) r.bad(fmt::format("unknown container '{}'", r.text(root, "container")));
  p.container = *c;
  p.type = r.text(root, "type");
  p.sym = r.flag(root, "sym");
  const Json& ts = r.member(root, "tensors", Json::Array);
  for (size_t i = 0; i < ts.items.size(); ++i) {
    const Json& o = ts.items[i];
    Reader tr{what, fmt::format("tensor {}: ", i)};
    if (o.kind != Json::Object) tr.bad("not an object");
    TensorPlan t;
    t.name = tr.text(o, "name");
    tr.where = fmt::format("tensor '{}': ", t.name);
    for (const Json& d : tr.member(o, "shape", Json::Array).items) {
      const int64_t v = tr.integer(d);
      if (v < 0 || v > (int64_t{1} << 40)) tr.bad(fmt::format("dimension {} out of range", v));
      t.shape.push_back(v);
    }
    t.in_type = tr.text(o, "in_type");
    const std::string& action = tr.text(o, "action");
    const std::string& out = tr.text(o, "out_type");
    const auto m = method_from_name(tr.text(o, "method"));
    if (!m) tr.bad(fmt::format("unknown method '{}'", tr.text(o, "method")));
    t.method = *m;
    t.fallback = tr.flag(o, "fallback");
    t.note = tr.text(o, "note");
    if (action == "copy") {
      t.action = Action::Copy;
      const int g = io::ggml_type_from_name(out);
      const io::GgmlTypeInfo* gi = g >= 0 ? io::ggml_type_info(g) : nullptr;
      if (gi && gi->block_size > 1) {
        t.dtype = io::DType::Ggml;
        t.ggml_type = g;
      } else if (const auto d = dtype_from_name(out)) {
        t.dtype = *d;
      } else {
        tr.bad(fmt::format("copy to unknown type '{}'", out));
      }
    } else if (action == "convert") {
      t.action = Action::Convert;
      const auto d = dtype_from_name(out);
      if (!d || (*d != io::DType::F32 && *d != io::DType::F16 && *d != io::DType::BF16 && *d != io::DType::F64))
        tr.bad(fmt::format("'{}' is not a float type to convert to", out));
      t.dtype = *d;
    } else if (action == "ggml") {
      t.action = Action::Ggml;
      const auto g = ggml::type_from_name(out);
      if (!g || !ggml::info(*g).storage) tr.bad(fmt::format("'{}' is not a ggml weight type", out));
      t.block = *g;
    } else if (action == "int") {
      t.action = Action::Int;
      const auto tt = TargetType::parse(out);
      if (!tt || tt->kind != TargetType::Kind::Int) tr.bad(fmt::format("'{}' is not an int type", out));
      t.bits = tt->bits;
      t.group = tt->group;
    } else if (action == "nf4") {
      t.action = Action::Nf4;
      if (out != "nf4") tr.bad(fmt::format("action nf4 with type '{}'", out));
    } else {
      tr.bad(fmt::format("unknown action '{}'", action));
    }
    if (t.quantized() == (t.method == Method::None))
      tr.bad(fmt::format("method '{}' does not go with action '{}'", method_name(t.method), action));
    if (t.action == Action::Ggml && t.cols() % ggml::info(t.block).block_elems != 0)
      tr.bad(fmt::format("rows of {} do not hold blocks of {} ({})", t.cols(), ggml::info(t.block).block_elems, out));
    try {
      finish(t, p.container);
    } catch (const Error& e) {
      tr.bad(e.what());
    }
    p.tensors.push_back(std::move(t));
  }
  return p;
}

void check_plan(const Plan& plan, const formats::QuantizedCheckpoint& input) {
  const std::string file = input.path().string();
  if (plan.tensors.size() != input.tensors().size())
    fail<FormatError>("plan: {} tensors for the {} of {}", plan.tensors.size(), input.tensors().size(), file);
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const TensorPlan& t = plan.tensors[i];
    const formats::LogicalTensor* l = input.find(t.name);
    if (!l) fail<FormatError>("plan: tensor '{}' is not in {}", t.name, file);
    if (l->info.shape != t.shape)
      fail<FormatError>("plan: tensor '{}' is {} in the plan, {} in {}", t.name, io::shape_text(t.shape),
                        io::shape_text(l->info.shape), file);
    for (size_t k = 0; k < i; ++k)
      if (plan.tensors[k].name == t.name) fail<FormatError>("plan: tensor '{}' appears twice", t.name);
    const bool gguf = plan.container == Container::Gguf;
    switch (t.action) {
      case Action::Copy:
        if (t.dtype == io::DType::Ggml && (!gguf || l->info.dtype != io::DType::Ggml || l->info.ggml_type != t.ggml_type))
          fail<FormatError>("plan: tensor '{}': a copy of {} into {} is not possible", t.name, l->type,
                            container_name(plan.container));
        if (t.dtype != io::DType::Ggml && l->info.dtype != t.dtype)
          fail<FormatError>("plan: tensor '{}' is {}, the plan copies it as {}", t.name, l->type, t.out_type);
        break;
      case Action::Convert:
        if (gguf && io::ggml_type_of(t.dtype) < 0)
          fail<FormatError>("plan: tensor '{}': GGUF cannot hold {}", t.name, t.out_type);
        break;
      case Action::Ggml:
        if (!gguf) fail<FormatError>("plan: tensor '{}': {} is a ggml block type, only GGUF holds it", t.name, t.out_type);
        if (t.cols() % ggml::info(t.block).block_elems != 0)
          fail<FormatError>("plan: tensor '{}': rows of {} do not hold blocks of {} ({})", t.name, t.cols(),
                            ggml::info(t.block).block_elems, t.out_type);
        break;
      case Action::Int: {
        if (plan.container != Container::GptqCheckpoint)
          fail<FormatError>("plan: tensor '{}': {} is written in GPTQ checkpoints only", t.name, t.out_type);
        const int64_t g = t.group == 0 ? t.cols() : t.group;
        if (t.shape.size() != 2 || t.cols() % g != 0 || (t.cols() * t.bits) % 32 != 0 || (t.rows() * t.bits) % 32 != 0)
          fail<FormatError>("plan: tensor '{}' {} does not fit {}", t.name, io::shape_text(t.shape), t.out_type);
        break;
      }
      case Action::Nf4:
        if (plan.container != Container::Safetensors)
          fail<FormatError>("plan: tensor '{}': nf4 is written in safetensors only", t.name);
        if (t.shape.size() != 2) fail<FormatError>("plan: tensor '{}': nf4 needs a matrix", t.name);
        break;
    }
    if ((t.action == Action::Convert || t.quantized()) && l->info.dtype != io::DType::Ggml &&
        l->info.dtype != io::DType::F32 && l->info.dtype != io::DType::F16 && l->info.dtype != io::DType::BF16 &&
        l->info.dtype != io::DType::F64 && t.quantized())
      fail<FormatError>("plan: tensor '{}' is {}, not a float weight to quantize", t.name, l->type);
  }
}

}  // namespace qk::pipeline
