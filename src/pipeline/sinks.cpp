// The pipeline's sinks: GGUF, safetensors (plain and NF4), GPTQ checkpoints (qk/pipeline/sink.hpp).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <variant>

#include <fmt/format.h>

#include "qk/core/error.hpp"
#include "qk/formats/bnb_nf4.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/pipeline/sink.hpp"
#include "qk/util/atomic_dir.hpp"

namespace qk::pipeline {
namespace {

namespace fs = std::filesystem;

template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T)};
}

// The last guard of the non-finite policy (docs/reliability.md): a float tensor about to be written (a copy, a
// conversion) holds no NaN or Inf. Block types are checked by their encoders (qk/formats/ggml.hpp).
void expect_finite(const TensorPlan& t, std::span<const std::byte> b) {
  const auto bad = [&](size_t i) {
    const int64_t cols = t.shape.empty() ? 1 : std::max<int64_t>(1, t.shape.back());
    fail<NumericError>("tensor '{}': a NaN or Inf at [{}, {}] (refusing to write non-finite values)", t.name,
                       static_cast<int64_t>(i) / cols, static_cast<int64_t>(i) % cols);
  };
  switch (t.dtype) {
    case io::DType::F32:
      for (size_t i = 0; i < b.size() / 4; ++i) {
        uint32_t u;
        std::memcpy(&u, b.data() + 4 * i, 4);
        if ((u & 0x7F800000u) == 0x7F800000u) bad(i);
      }
      return;
    case io::DType::F16:
    case io::DType::BF16: {
      const uint16_t mask = t.dtype == io::DType::F16 ? 0x7C00u : 0x7F80u;
      for (size_t i = 0; i < b.size() / 2; ++i) {
        uint16_t h;
        std::memcpy(&h, b.data() + 2 * i, 2);
        if ((h & mask) == mask) bad(i);
      }
      return;
    }
    case io::DType::F64:
      for (size_t i = 0; i < b.size() / 8; ++i) {
        uint64_t u;
        std::memcpy(&u, b.data() + 8 * i, 8);
        if ((u & 0x7FF0000000000000ull) == 0x7FF0000000000000ull) bad(i);
      }
      return;
    default: return;
  }
}

void expect_bytes(const TensorPlan& t, const EncodedTensor& e) {
  if (e.bytes.size() != t.bytes)
    fail<InvalidArgument>("tensor '{}': {} bytes encoded, the plan says {}", t.name, e.bytes.size(), t.bytes);
  if (t.action == Action::Copy || t.action == Action::Convert) expect_finite(t, e.bytes);
}

class GgufSink final : public Sink {
 public:
  GgufSink(const fs::path& out, const formats::QuantizedCheckpoint& in, const util::WriteOptions& wo)
      : path_(out), w_(out, wo), in_(in) {}
  void begin(const Plan& plan) override {
    const io::TensorFile& in = in_.file();
    if (in.format() == io::FileFormat::Gguf) {
      w_.copy_metadata(in.metadata());
    } else {
      for (const auto& m : in.metadata()) w_.set("safetensors." + m.key, m.value);
    }
    if (!io::find_meta(in.metadata(), "general.architecture") || in.format() != io::FileFormat::Gguf)
      w_.set("general.architecture", std::string("unknown"));
    const auto t = TargetType::parse(plan.type);
    w_.set_file_type(t ? llama_file_type(*t) : 0);
    w_.set_quantization_version(2);
    for (const auto& tp : plan.tensors) {
      if (tp.ggml_type < 0)
        fail<InvalidArgument>("tensor '{}': GGUF has no encoding for {}", tp.name, tp.out_type);
      w_.add_tensor(tp.name, tp.ggml_type, tp.shape);
    }
  }
  void write(const TensorPlan& t, EncodedTensor&& e) override {
    if (t.action == Action::Int || t.action == Action::Nf4)
      fail<InvalidArgument>("tensor '{}': GGUF has no encoding for {}", t.name, t.out_type);
    expect_bytes(t, e);
    w_.write_tensor(t.name, e.bytes);
  }
  void commit() override { w_.commit(); }
  std::vector<fs::path> files() const override { return {path_}; }

 private:
  fs::path path_;
  io::GgufWriter w_;
  const formats::QuantizedCheckpoint& in_;
};

// Safetensors, with GPTQ layers (int tensors, written as qweight/qzeros/scales/g_idx) and NF4 layers.
class SafetensorsSink final : public Sink {
 public:
  SafetensorsSink(const fs::path& weights, const formats::QuantizedCheckpoint& in, const util::WriteOptions& wo,
                  std::optional<gptq_hf::QuantizeConfig> gptq, fs::path config_path)
      : path_(weights), w_(weights, wo), in_(in), gptq_(std::move(gptq)), config_path_(std::move(config_path)), wo_(wo) {}

  void begin(const Plan& plan) override {
    const io::TensorFile& in = in_.file();
    if (in.format() == io::FileFormat::Safetensors)
      for (const auto& m : in.metadata())
        if (const auto* s = std::get_if<std::string>(&m.value)) w_.set_metadata(m.key, *s);
    w_.set_metadata("format", "pt");
    if (gptq_) w_.set_metadata("quantized_by", "qk qtool");
    for (const auto& t : plan.tensors) {
      switch (t.action) {
        case Action::Nf4:
          for (const auto& p : formats::bnb::nf4_parts(t.name, t.shape, in_.tensor(t.name).info.dtype))
            w_.add_tensor(p.name, p.dtype, p.shape);
          break;
        case Action::Int: {
          if (!gptq_) fail<InvalidArgument>("tensor '{}': {} is written in GPTQ checkpoints", t.name, t.out_type);
          const int64_t K = t.cols(), N = t.rows(), b = t.bits;
          const int64_t g = t.group <= 0 ? K : t.group, G = (K + g - 1) / g;
          const std::string p = gptq_hf::layer_prefix(t.name);
          w_.add_tensor(p + ".qweight", io::DType::I32, {K * b / 32, N});
          w_.add_tensor(p + ".qzeros", io::DType::I32, {G, N * b / 32});
          w_.add_tensor(p + ".scales", io::DType::F16, {G, N});
          w_.add_tensor(p + ".g_idx", io::DType::I32, {K});
          break;
        }
        case Action::Ggml:
          fail<InvalidArgument>("tensor '{}': safetensors has no ggml block types (write a .gguf)", t.name);
        case Action::Copy:
          if (t.dtype == io::DType::Ggml)
            fail<InvalidArgument>("tensor '{}': safetensors has no ggml block types (write a .gguf)", t.name);
          w_.add_tensor(t.name, t.dtype, t.shape);
          break;
        case Action::Convert: w_.add_tensor(t.name, t.dtype, t.shape); break;
      }
    }
  }

  void write(const TensorPlan& t, EncodedTensor&& e) override {
    switch (t.action) {
      case Action::Nf4: {
        if (!e.nf4) fail<InvalidArgument>("tensor '{}': no NF4 codes to write", t.name);
        for (const auto& p : formats::bnb::nf4_encode(t.name, t.shape, in_.tensor(t.name).info.dtype, *e.nf4))
          w_.write_tensor(p.name, p.bytes);
        return;
      }
      case Action::Int: {
        if (!e.ints) fail<InvalidArgument>("tensor '{}': no integer codes to write", t.name);
        const std::string where = fmt::format("tensor '{}'", t.name);
        const auto packed = gptq_hf::pack(*e.ints, gptq_->zero_format(), where);
        const std::string pre = gptq_hf::layer_prefix(t.name);
        w_.write_tensor(pre + ".qweight", bytes_of(packed.qweight));
        w_.write_tensor(pre + ".qzeros", bytes_of(packed.qzeros));
        w_.write_tensor(pre + ".scales", bytes_of(packed.scales));
        w_.write_tensor(pre + ".g_idx", bytes_of(packed.g_idx));
        return;
      }
      default:
        expect_bytes(t, e);
        w_.write_tensor(t.name, e.bytes);
    }
  }

  void commit() override {
    if (!gptq_) return w_.commit();
    // the config first: a checkpoint is only complete once both are in place, and the weights file is the one a
    // loader opens
    util::AtomicFile cf(config_path_, wo_);
    const std::string j = gptq_hf::to_json(*gptq_);
    cf.write(j.data(), j.size());
    w_.commit();
    cf.commit();
  }
  std::vector<fs::path> files() const override {
    if (gptq_) return {path_, config_path_};
    return {path_};
  }

 private:
  fs::path path_;
  io::SafetensorsWriter w_;
  const formats::QuantizedCheckpoint& in_;
  std::optional<gptq_hf::QuantizeConfig> gptq_;
  fs::path config_path_;
  util::WriteOptions wo_;
};

// A GPTQ checkpoint directory: the safetensors sink writing into a temporary directory renamed into place.
class GptqDirectorySink final : public Sink {
 public:
  GptqDirectorySink(const fs::path& dir, const formats::QuantizedCheckpoint& in, const util::WriteOptions& wo,
                    const gptq_hf::QuantizeConfig& cfg)
      : dir_(dir, wo, {"model.safetensors", "quantize_config.json"}),
        inner_(dir_.path() / "model.safetensors", in, util::WriteOptions{}, cfg, dir_.path() / "quantize_config.json") {}
  void begin(const Plan& plan) override { inner_.begin(plan); }
  void write(const TensorPlan& t, EncodedTensor&& e) override { inner_.write(t, std::move(e)); }
  void commit() override {
    inner_.commit();
    dir_.commit();
  }
  std::vector<fs::path> files() const override {
    return {dir_.target() / "model.safetensors", dir_.target() / "quantize_config.json"};
  }

 private:
  util::AtomicDirectory dir_;
  SafetensorsSink inner_;
};

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

}  // namespace

std::unique_ptr<Sink> make_sink(const fs::path& out, const Plan& plan, const formats::QuantizedCheckpoint& input,
                                const util::WriteOptions& opts, const gptq_hf::QuantizeConfig& gptq) {
  switch (plan.container) {
    case Container::Gguf: return std::make_unique<GgufSink>(out, input, opts);
    case Container::Safetensors: return std::make_unique<SafetensorsSink>(out, input, opts, std::nullopt, fs::path());
    case Container::GptqCheckpoint: break;
  }
  gptq_hf::QuantizeConfig cfg = gptq;
  for (const auto& t : plan.tensors)
    if (t.action == Action::Int) {
      cfg.bits = t.bits;
      cfg.group_size = t.group == 0 ? -1 : t.group;
      break;
    }
  cfg.sym = plan.sym;
  // asymmetric groups may need a zero-point of 0, which the v1 layout cannot store
  cfg.checkpoint_format = plan.sym ? "gptq" : "gptq_v2";
  if (lower_ext(out) == ".safetensors") {
    const fs::path config = out.parent_path() / "quantize_config.json";
    std::error_code ec;
    if (!opts.overwrite && fs::exists(config, ec))
      fail<IoError>("{}: exists (use --force to replace it)", config.string());
    return std::make_unique<SafetensorsSink>(out, input, opts, cfg, config);
  }
  return std::make_unique<GptqDirectorySink>(out, input, opts, cfg);
}

}  // namespace qk::pipeline
