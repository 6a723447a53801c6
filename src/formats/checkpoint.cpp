// QuantizedCheckpoint: GPTQ and bitsandbytes 4-bit layers of a model file grouped into logical float weights.
#include "qk/formats/checkpoint.hpp"
#include "qk/formats/tensor_values.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "util/json.hpp"

namespace qk::formats {

namespace fs = std::filesystem;
using io::DType;
using io::TensorInfo;
using io::shape_text;

namespace {

constexpr std::string_view kBnbState = ".quant_state.bitsandbytes__";

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail<IoError>("{}: cannot read", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <class T>
std::vector<T> copy_of(const io::TensorFile& f, const TensorInfo& t) {
  const auto b = f.bytes(t);
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

using util::Json;

// A positive integer member of a JSON object.
int64_t json_int(const Json& o, const char* key, const std::string& what, bool required, int64_t dflt = 0) {
  const Json* v = o.find(key);
  if (!v || v->kind == Json::Null) {
    if (required) fail<FormatError>("{}: no \"{}\"", what, key);
    return dflt;
  }
  const double d = v->number;
  if (v->kind != Json::Number || d != static_cast<double>(static_cast<int64_t>(d)) || d <= 0 || d > 1e15)
    fail<FormatError>("{}: \"{}\" is not a positive integer", what, key);
  return static_cast<int64_t>(d);
}

}  // namespace

std::unique_ptr<QuantizedCheckpoint> QuantizedCheckpoint::open(const fs::path& path) {
  auto c = std::unique_ptr<QuantizedCheckpoint>(new QuantizedCheckpoint());
  c->path_ = path;
  fs::path weights = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    weights = path / "model.safetensors";
    if (!fs::exists(weights, ec)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(path, ec))
        if (e.path().extension() == ".safetensors") found.push_back(e.path());
      if (found.size() != 1)
        fail<IoError>("{}: a checkpoint directory needs model.safetensors (found {} .safetensors files; sharded "
                      "checkpoints are not supported)",
                      path.string(), found.size());
      weights = found[0];
    }
  }
  c->file_ = io::TensorFile::open(weights);
  c->build();
  return c;
}

void QuantizedCheckpoint::build() {
  const io::TensorFile& f = *file_;
  const std::string fname = f.path().string();
  std::map<std::string, const TensorInfo*> consumed;  // raw name -> part of a logical tensor
  auto part = [&](const std::string& n, const std::string& layer, bool required) -> const TensorInfo* {
    const TensorInfo* t = f.find(n);
    if (!t && required) fail<FormatError>("{}: tensor '{}' is missing (part of the quantized layer '{}')", fname, n, layer);
    if (t) consumed[n] = t;
    return t;
  };
  auto need = [&](const TensorInfo& t, DType d, size_t rank, const std::string& what) {
    if (t.dtype != d)
      fail<FormatError>("{}: tensor '{}' is {}, expected {} ({})", fname, t.name, t.type_name(), io::dtype_name(d), what);
    if (rank && t.shape.size() != rank)
      fail<FormatError>("{}: tensor '{}' has shape {}, expected rank {} ({})", fname, t.name, shape_text(t.shape), rank,
                        what);
  };

  // ---- the config of GPTQ layers, when there are any
  bool any_gptq = false;
  for (const auto& t : f.tensors()) any_gptq = any_gptq || t.name.ends_with(".qweight");
  if (any_gptq) {
    const fs::path dir = f.path().parent_path().empty() ? fs::path(".") : f.path().parent_path();
    std::error_code ec;
    if (fs::exists(dir / "quantize_config.json", ec)) {
      config_path_ = dir / "quantize_config.json";
      config_ = gptq_hf::config_from_json(read_text(config_path_), config_path_.string());
    } else if (fs::exists(dir / "config.json", ec)) {
      const std::string text = read_text(dir / "config.json");
      if (text.find("\"quantization_config\"") != std::string::npos) {
        config_path_ = dir / "config.json";
        config_ = gptq_hf::config_from_json(text, config_path_.string());
      }
    }
  }

  std::map<std::string, LogicalTensor> logical;  // by anchor raw name (qweight / codes tensor)
  std::map<std::string, Bnb> bnb_params;

  // ---- GPTQ layers
  for (const auto& t : f.tensors()) {
    if (!t.name.ends_with(".qweight")) continue;
    const std::string p = t.name.substr(0, t.name.size() - 8);
    const TensorInfo* qw = part(t.name, p, true);
    const TensorInfo* qz = part(p + ".qzeros", p, true);
    const TensorInfo* sc = part(p + ".scales", p, true);
    const TensorInfo* gi = part(p + ".g_idx", p, false);
    need(*qw, DType::I32, 2, "GPTQ qweight [in·bits/32, out]");
    need(*qz, DType::I32, 2, "GPTQ qzeros [groups, out·bits/32]");
    need(*sc, DType::F16, 2, "GPTQ scales [groups, out]");
    if (gi) need(*gi, DType::I32, 1, "GPTQ g_idx [in]");
    const int64_t R = qw->shape[0], N = qw->shape[1], G = sc->shape[0];
    if (sc->shape[1] != N)
      fail<FormatError>("{}: tensor '{}' has shape {}, but '{}' has {} output columns", fname, sc->name,
                        shape_text(sc->shape), qw->name, N);
    if (N <= 0 || G <= 0 || R <= 0) fail<FormatError>("{}: GPTQ layer '{}' has an empty tensor", fname, p);
    int bits = 0;
    if (config_) {
      bits = config_->bits;
    } else {
      const int64_t Z = qz->shape[1];
      if ((Z * 32) % N != 0)
        fail<FormatError>("{}: cannot infer the bits of '{}' from qzeros {} and scales {} (no quantize_config.json)",
                          fname, p, shape_text(qz->shape), shape_text(sc->shape));
      bits = static_cast<int>(Z * 32 / N);
    }
    gptq_hf::detail::check_bits(bits, fmt::format("{}: GPTQ layer '{}'", fname, p));
    if ((R * 32) % bits != 0)
      fail<FormatError>("{}: tensor '{}' has {} rows, not a whole number of {}-bit inputs", fname, qw->name, R, bits);
    const int64_t K = R * 32 / bits;
    if (qz->shape[0] != G || qz->shape[1] * 32 != N * bits)
      fail<FormatError>("{}: tensor '{}' has shape {}, expected [{}, {}] for {}-bit zeros of {} outputs", fname,
                        qz->name, shape_text(qz->shape), G, N * bits / 32, bits, N);
    if (gi && gi->shape[0] != K)
      fail<FormatError>("{}: tensor '{}' has {} entries, but '{}' packs {} inputs of {} bits", fname, gi->name,
                        gi->shape[0], qw->name, K, bits);
    int64_t group = 0;
    if (config_) {
      group = config_->group_size;
      const int64_t span = group <= 0 ? K : group;
      if ((K + span - 1) / span != G)
        fail<FormatError>("{}: tensor '{}' has {} groups, but {} inputs in groups of {} ({}) make {}", fname,
                          sc->name, G, K, span, config_path_.string(), (K + span - 1) / span);
    } else if (G == 1) {
      group = -1;
    } else if (K % G == 0) {
      group = K / G;
    } else {
      group = (K + G - 1) / G;
      if ((K + group - 1) / group != G || !gi)
        fail<FormatError>("{}: cannot infer the group size of '{}': {} inputs in {} groups (no quantize_config.json)",
                          fname, p, K, G);
    }
    LogicalTensor l;
    l.info.name = p + ".weight";
    l.info.dtype = DType::F32;
    l.info.shape = {N, K};
    l.info.nbytes = qw->nbytes + qz->nbytes + sc->nbytes + (gi ? gi->nbytes : 0);
    l.encoding = Encoding::Gptq;
    l.parts = {qw, qz, sc};
    if (gi) l.parts.push_back(gi);
    l.bits = bits;
    l.group_size = group;
    if (gi) {
      const int64_t span = group <= 0 ? K : group;
      const auto idx = copy_of<int32_t>(f, *gi);
      for (int64_t k = 0; k < K && !l.act_order; ++k) l.act_order = idx[static_cast<size_t>(k)] != k / span;
    }
    l.type = group <= 0 ? fmt::format("gptq-int{}", bits) : fmt::format("gptq-int{}-g{}", bits, group);
    if (l.act_order) l.type += "-act";
    if (f.find(l.info.name))
      fail<FormatError>("{}: both '{}' and the GPTQ layer '{}' are present", fname, l.info.name, p);
    logical[qw->name] = std::move(l);
  }

  // ---- bitsandbytes 4-bit layers
  for (const auto& t : f.tensors()) {
    const size_t at = t.name.rfind(kBnbState);
    if (at == std::string::npos || at == 0) continue;
    const std::string base = t.name.substr(0, at);
    const std::string what = fmt::format("{}: tensor '{}'", fname, t.name);
    const TensorInfo* st = part(t.name, base, true);
    need(*st, DType::U8, 1, "bitsandbytes quant state JSON");
    const auto sb = f.bytes(*st);
    const Json js =
        util::JsonParser(std::string_view(reinterpret_cast<const char*>(sb.data()), sb.size()), what,
                               "quant state JSON")
            .document();
    if (js.kind != Json::Object) fail<FormatError>("{}: the quant state is not a JSON object", what);
    std::string qtype = t.name.substr(at + kBnbState.size());
    if (const Json* v = js.find("quant_type"); v && v->kind == Json::String) qtype = v->text;
    if (qtype != "nf4" && qtype != "fp4") fail<FormatError>("{}: quant_type '{}' is neither nf4 nor fp4", what, qtype);
    const Json* sh = js.find("shape");
    if (!sh || sh->kind != Json::Array || sh->items.empty())
      fail<FormatError>("{}: the quant state has no \"shape\" array", what);
    std::vector<int64_t> shape;
    int64_t n = 1;
    for (const auto& d : sh->items) {
      if (d.kind != Json::Number || d.number <= 0 || d.number > 1e12 ||
          d.number != static_cast<double>(static_cast<int64_t>(d.number)))
        fail<FormatError>("{}: \"shape\" holds a value that is not a positive integer", what);
      shape.push_back(static_cast<int64_t>(d.number));
      n *= shape.back();
      if (n > (int64_t{1} << 40)) fail<FormatError>("{}: \"shape\" is too large", what);
    }
    Bnb b;
    b.blocksize = json_int(js, "blocksize", what, true);
    const TensorInfo* codes = part(base, base, true);
    const TensorInfo* am = part(base + ".absmax", base, true);
    const TensorInfo* qm = part(base + ".quant_map", base, true);
    const TensorInfo* nam = part(base + ".nested_absmax", base, false);
    const TensorInfo* nqm = part(base + ".nested_quant_map", base, false);
    need(*codes, DType::U8, 0, "packed 4-bit codes");
    if (codes->nbytes != static_cast<uint64_t>((n + 1) / 2))
      fail<FormatError>("{}: tensor '{}' holds {} bytes, but shape {} needs {}", fname, base, codes->nbytes,
                        shape_text(shape), (n + 1) / 2);
    need(*qm, DType::F32, 1, "quant_map [16]");
    if (qm->shape[0] != 16)
      fail<FormatError>("{}: tensor '{}' has shape {}, expected [16]", fname, qm->name, shape_text(qm->shape));
    const int64_t blocks = (n + b.blocksize - 1) / b.blocksize;
    b.nested = nam != nullptr || nqm != nullptr;
    if (b.nested) {
      if (!nam || !nqm)
        fail<FormatError>("{}: tensor '{}' is missing (part of the quantized layer '{}')", fname,
                          base + (nam ? ".nested_quant_map" : ".nested_absmax"), base);
      b.nested_blocksize = json_int(js, "nested_blocksize", what, true);
      const Json* off = js.find("nested_offset");
      if (!off || off->kind != Json::Number)
        fail<FormatError>("{}: the quant state has no numeric \"nested_offset\"", what);
      b.nested_offset = static_cast<float>(off->number);
      need(*am, DType::U8, 1, "8-bit absmax codes");
      need(*nam, DType::F32, 1, "nested_absmax");
      need(*nqm, DType::F32, 1, "nested_quant_map [256]");
      const int64_t groups = (blocks + b.nested_blocksize - 1) / b.nested_blocksize;
      if (nam->shape[0] != groups)
        fail<FormatError>("{}: tensor '{}' has shape {}, expected [{}]", fname, nam->name, shape_text(nam->shape),
                          groups);
      if (nqm->shape[0] != 256)
        fail<FormatError>("{}: tensor '{}' has shape {}, expected [256]", fname, nqm->name, shape_text(nqm->shape));
    } else {
      need(*am, DType::F32, 1, "absmax");
    }
    if (am->shape[0] != blocks)
      fail<FormatError>("{}: tensor '{}' has shape {}, expected [{}] for {} values in blocks of {}", fname, am->name,
                        shape_text(am->shape), blocks, n, b.blocksize);
    LogicalTensor l;
    l.info.name = base;
    l.info.dtype = DType::F32;
    l.info.shape = shape;
    l.encoding = Encoding::Bnb4;
    l.parts = {codes, am, qm};
    if (b.nested) l.parts.insert(l.parts.end(), {nam, nqm});
    l.parts.push_back(st);
    for (const auto* p : l.parts) l.info.nbytes += p->nbytes;
    l.bits = 4;
    l.group_size = b.blocksize;
    l.type = qtype;
    bnb_params[base] = b;
    logical[base] = std::move(l);
  }

  // ---- in file order: each logical tensor where its anchor was, other tensors passed through
  for (const auto& t : f.tensors()) {
    if (auto it = logical.find(t.name); it != logical.end()) {
      quantized_ = true;
      Bnb b;
      if (auto bp = bnb_params.find(t.name); bp != bnb_params.end()) b = bp->second;
      tensors_.push_back(std::move(it->second));
      bnb_.push_back(b);
      continue;
    }
    if (consumed.count(t.name)) continue;
    LogicalTensor l;
    l.info = t;
    l.type = t.type_name();
    l.parts = {&t};
    tensors_.push_back(std::move(l));
    bnb_.push_back(Bnb{});
  }
}

const LogicalTensor* QuantizedCheckpoint::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.info.name == name) return &t;
  return nullptr;
}

const LogicalTensor& QuantizedCheckpoint::tensor(std::string_view name) const {
  if (const auto* t = find(name)) return *t;
  fail<FormatError>("{}: no tensor '{}'", path_.string(), name);
}

const QuantizedCheckpoint::Bnb& QuantizedCheckpoint::bnb_of(const LogicalTensor& t) const {
  const auto i = static_cast<size_t>(&t - tensors_.data());
  if (i >= bnb_.size()) fail<InvalidArgument>("{}: tensor '{}' is not from this checkpoint", path_.string(), t.name());
  return bnb_[i];
}

gptq_hf::PackedLinear QuantizedCheckpoint::gptq_layer(const LogicalTensor& t) const {
  if (t.encoding != Encoding::Gptq)
    fail<InvalidArgument>("{}: tensor '{}' is not a GPTQ layer", path_.string(), t.name());
  gptq_hf::PackedLinear p;
  p.bits = t.bits;
  p.out_features = t.info.shape[0];
  p.in_features = t.info.shape[1];
  p.group_size = t.group_size;
  p.sym = config_ ? config_->sym : true;
  p.qweight = copy_of<int32_t>(*file_, *t.parts[0]);
  p.qzeros = copy_of<int32_t>(*file_, *t.parts[1]);
  p.scales = copy_of<uint16_t>(*file_, *t.parts[2]);
  if (t.parts.size() > 3) {
    p.g_idx = copy_of<int32_t>(*file_, *t.parts[3]);
  } else {
    p.g_idx.resize(static_cast<size_t>(p.in_features));
    for (int64_t k = 0; k < p.in_features; ++k) p.g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(k / p.group_span());
  }
  p.validate(fmt::format("{}: GPTQ layer '{}'", file_->path().string(), gptq_hf::layer_prefix(t.name())));
  return p;
}

io::RowMatrixXf QuantizedCheckpoint::read_matrix(const LogicalTensor& t) const {
  switch (t.encoding) {
    case Encoding::Plain: return formats::read_matrix(*file_, *t.parts[0]);
    case Encoding::Gptq:
      return gptq_hf::dequantize(gptq_layer(t), zero_format(),
                                 fmt::format("{}: GPTQ layer '{}'", file_->path().string(),
                                             gptq_hf::layer_prefix(t.name())));
    case Encoding::Bnb4: break;
  }
  // bitsandbytes: W[i] = quant_map[code_i] · absmax[i / blocksize], codes high nibble first; with nested
  // (double) quantization absmax[j] = nested_quant_map[absmax_code[j]] · nested_absmax[j / nested_blocksize]
  // + nested_offset.
  const Bnb& b = bnb_of(t);
  const auto codes = file_->bytes(*t.parts[0]);
  const auto qm = copy_of<float>(*file_, *t.parts[2]);
  std::vector<float> absmax;
  if (b.nested) {
    const auto ac = file_->bytes(*t.parts[1]);
    const auto nam = copy_of<float>(*file_, *t.parts[3]);
    const auto nqm = copy_of<float>(*file_, *t.parts[4]);
    absmax.resize(ac.size());
    for (size_t j = 0; j < ac.size(); ++j)
      absmax[j] = nqm[static_cast<uint8_t>(ac[j])] * nam[j / static_cast<size_t>(b.nested_blocksize)] + b.nested_offset;
  } else {
    absmax = copy_of<float>(*file_, *t.parts[1]);
  }
  const int64_t n = t.info.numel();
  const int64_t cols = t.info.shape.back(), rows = n / cols;
  io::RowMatrixXf W(rows, cols);
  float* w = W.data();
  for (int64_t i = 0; i < n; ++i) {
    const auto byte = static_cast<uint8_t>(codes[static_cast<size_t>(i / 2)]);
    const int code = (i % 2 == 0) ? byte >> 4 : byte & 15;
    w[i] = qm[static_cast<size_t>(code)] * absmax[static_cast<size_t>(i / b.blocksize)];
  }
  return W;
}

}  // namespace qk::formats
