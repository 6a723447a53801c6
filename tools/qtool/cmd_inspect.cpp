// `qtool inspect FILE [--json]`: what a tensor file holds — format, metadata (long arrays summarised by their
// length), every tensor (name, dtype, shape, bytes, bits per weight) and totals. Reads the header only.
// A GPTQ checkpoint (directory or .safetensors with qweight/qzeros/scales/g_idx) or a bitsandbytes NF4/FP4 file is
// shown as its logical weights (qk/formats/checkpoint.hpp): one `<prefix>.weight` [out, in] per quantized layer,
// its bytes all its stored parts, so bits/weight is the true cost; --raw lists the stored tensors instead.
#include <string>
#include <variant>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "output.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/tensor_file.hpp"

namespace qtool {

namespace {

struct InspectOptions {
  std::string file;
  bool json = false;
  bool raw = false;
  size_t max_values = 16;  // arrays longer than this are shown by type and length
};

const char* format_name(qk::io::FileFormat f) {
  switch (f) {
    case qk::io::FileFormat::Npy: return "npy";
    case qk::io::FileFormat::Safetensors: return "safetensors";
    case qk::io::FileFormat::Gguf: return "gguf";
    case qk::io::FileFormat::Llama2c: return "llama2c";
  }
  return "?";
}

std::string meta_type(const qk::io::MetaValue& v) {
  using namespace qk::io;
  const auto t = static_cast<uint32_t>(gguf_type_of(v));
  if (auto* a = std::get_if<std::shared_ptr<MetaArray>>(&v))
    return fmt::format("array<{}>", gguf_type_name(static_cast<uint32_t>((*a)->element_type)));
  return gguf_type_name(t);
}

std::string shorten(const std::string& s, size_t n = 60) {
  std::string o;
  for (char c : s) o += (c == '\n' ? ' ' : c);
  return o.size() > n ? o.substr(0, n) + "..." : o;
}

// Text form of a value; arrays longer than max_values as "[N values]".
std::string meta_text(const qk::io::MetaValue& v, size_t max_values) {
  using namespace qk::io;
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return shorten(x);
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::shared_ptr<MetaArray>>) {
          if (x->values.size() > max_values) return fmt::format("[{} values]", x->values.size());
          std::vector<std::string> parts;
          for (const auto& e : x->values) parts.push_back(meta_text(e, max_values));
          return fmt::format("[{}]", fmt::join(parts, ", "));
        } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) {
          return std::to_string(static_cast<int>(x));
        } else {
          return fmt::format("{}", x);
        }
      },
      v);
}

void meta_json(Json& j, const qk::io::MetaValue& v, size_t max_values) {
  using namespace qk::io;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          j.val(std::string_view(x));
        } else if constexpr (std::is_same_v<T, bool>) {
          j.val(x);
        } else if constexpr (std::is_same_v<T, std::shared_ptr<MetaArray>>) {
          j.arr();
          for (const auto& e : x->values) meta_json(j, e, max_values);
          j.end();
        } else if constexpr (std::is_floating_point_v<T>) {
          j.val(static_cast<double>(x));
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          j.val(static_cast<size_t>(x));
        } else {
          j.val(static_cast<long long>(x));
        }
      },
      v);
}

const char* encoding_name(qk::formats::Encoding e) {
  switch (e) {
    case qk::formats::Encoding::Plain: return "plain";
    case qk::formats::Encoding::Gptq: return "gptq";
    case qk::formats::Encoding::Bnb4: return "bitsandbytes";
  }
  return "?";
}

double bits_per_weight(const qk::io::TensorInfo& t) {
  const int64_t n = t.numel();
  return n > 0 ? 8.0 * static_cast<double>(t.nbytes) / static_cast<double>(n) : 0.0;
}

int run_inspect(const InspectOptions& o) {
  using namespace qk::io;
  const auto ckpt = qk::formats::QuantizedCheckpoint::open(o.file);
  const TensorFile* f = &ckpt->file();
  const bool logical = ckpt->quantized() && !o.raw;
  // the rows shown: logical tensors of a quantized checkpoint, else the stored tensors
  std::vector<const qk::formats::LogicalTensor*> lts;
  std::vector<const TensorInfo*> infos;
  if (logical) {
    for (const auto& t : ckpt->tensors()) {
      lts.push_back(&t);
      infos.push_back(&t.info);
    }
  } else {
    for (const auto& t : f->tensors()) infos.push_back(&t);
  }
  auto type_of = [&](size_t i) { return logical ? lts[i]->type : infos[i]->type_name(); };
  uint64_t bytes = 0;
  int64_t elements = 0;
  for (const auto* t : infos) {
    bytes += t->nbytes;
    elements += t->numel();
  }
  const auto& cfg = ckpt->gptq_config();
  const double bpw = elements > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(elements) : 0.0;

  if (o.json) {
    Json j;
    j.obj();
    j.kv("file", std::string_view(o.file));
    j.kv("format", format_name(f->format()));
    if (f->path().string() != o.file) j.kv("weights", std::string_view(f->path().string()));
    j.kv("file_size", f->file_size());
    j.kv("quantized_checkpoint", ckpt->quantized());
    j.kv("logical", logical);
    if (cfg) {
      j.key("gptq_config").obj();
      j.kv("path", std::string_view(ckpt->config_path().string()));
      j.kv("bits", cfg->bits);
      j.kv("group_size", static_cast<long long>(cfg->group_size));
      j.kv("desc_act", cfg->desc_act);
      j.kv("sym", cfg->sym);
      j.kv("checkpoint_format", std::string_view(cfg->checkpoint_format));
      j.end();
    }
    j.key("metadata").arr();
    for (const auto& m : f->metadata()) {
      j.obj();
      j.kv("key", std::string_view(m.key));
      j.kv("type", std::string_view(meta_type(m.value)));
      if (auto* a = std::get_if<std::shared_ptr<MetaArray>>(&m.value)) {
        j.kv("length", (*a)->values.size());
        if ((*a)->values.size() <= o.max_values) {
          j.key("value");
          meta_json(j, m.value, o.max_values);
        }
      } else {
        j.key("value");
        meta_json(j, m.value, o.max_values);
      }
      j.end();
    }
    j.end();
    j.key("tensors").arr();
    for (size_t i = 0; i < infos.size(); ++i) {
      const TensorInfo& t = *infos[i];
      j.obj();
      j.kv("name", std::string_view(t.name));
      j.kv("dtype", std::string_view(type_of(i)));
      j.key("shape").arr();
      for (int64_t d : t.shape) j.val(static_cast<long long>(d));
      j.end();
      if (logical) {
        const auto& l = *lts[i];
        j.kv("encoding", encoding_name(l.encoding));
        if (l.quantized()) {
          j.kv("bits", l.bits);
          j.kv("group_size", static_cast<long long>(l.group_size));
          if (l.encoding == qk::formats::Encoding::Gptq) j.kv("act_order", l.act_order);
          j.key("parts").arr();
          for (const auto* p : l.parts) j.val(std::string_view(p->name));
          j.end();
        } else {
          j.kv("offset", static_cast<size_t>(t.offset));
        }
      } else {
        j.kv("offset", static_cast<size_t>(t.offset));
      }
      j.kv("bytes", static_cast<size_t>(t.nbytes));
      j.kv("bits_per_weight", bits_per_weight(t));
      j.end();
    }
    j.end();
    j.key("totals").obj();
    j.kv("tensors", infos.size());
    j.kv("elements", static_cast<long long>(elements));
    j.kv("bytes", static_cast<size_t>(bytes));
    j.kv("bits_per_weight", bpw);
    j.end();
    j.end();
    fmt::print("{}\n", j.str());
    return 0;
  }

  fmt::print("file:    {}\nformat:  {}\nsize:    {} bytes\n", o.file, format_name(f->format()), f->file_size());
  if (f->path().string() != o.file) fmt::print("weights: {}\n", f->path().string());
  if (cfg)
    fmt::print("gptq:    {} ({} bits, group {}, desc_act {}, sym {}, format {})\n", ckpt->config_path().string(),
               cfg->bits, cfg->group_size, cfg->desc_act, cfg->sym, cfg->checkpoint_format);
  if (logical)
    fmt::print("view:    logical weights (quantized layers dequantized as one tensor; bytes = all stored parts; "
               "--raw for the stored tensors)\n");
  if (!f->metadata().empty()) {
    fmt::print("\nmetadata ({} entries)\n", f->metadata().size());
    Table mt({"key", "type", "value"});
    for (const auto& m : f->metadata()) mt.add({m.key, meta_type(m.value), meta_text(m.value, o.max_values)});
    mt.print();
  }
  fmt::print("\ntensors ({})\n", infos.size());
  Table tt({"name", "dtype", "shape", "bytes", "bits/weight"});
  for (size_t i = 0; i < infos.size(); ++i) {
    const TensorInfo& t = *infos[i];
    tt.add({t.name, type_of(i), shape_text(t.shape), std::to_string(t.nbytes),
            fmt::format("{:.2f}", bits_per_weight(t))});
  }
  tt.print();
  fmt::print("\ntotal: {} tensors, {} elements, {} bytes, {:.2f} bits/weight\n", infos.size(), elements, bytes, bpw);
  return 0;
}

}  // namespace

void setup_inspect(CLI::App& app, Runner& run) {
  auto o = std::make_shared<InspectOptions>();
  auto* sub = app.add_subcommand("inspect", "Show the format, metadata and tensors of a .npy, safetensors or GGUF file");
  sub->add_option("file", o->file, "Tensor file (format detected from its content) or GPTQ checkpoint directory")
      ->required();
  sub->add_flag("--raw", o->raw, "GPTQ / bitsandbytes checkpoints: list the stored tensors, not the logical weights");
  sub->add_flag("--json", o->json, "Print JSON instead of tables (keys in docs/cli.md)");
  sub->add_option("--max-values", o->max_values, "Show metadata arrays up to this length in full (default 16)");
  sub->callback([&run, o] { run = [o] { return run_inspect(*o); }; });
}

}  // namespace qtool
