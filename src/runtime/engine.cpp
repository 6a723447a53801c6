// Quantized Llama inference on qk's kernels (qk/runtime/engine.hpp).
#include "qk/runtime/engine.hpp"

#include <cstring>
#include <string>

#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"
#include "qk/formats/tensor_values.hpp"

namespace qk::runtime {
namespace {

const char* const kLinearNames[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

// The fp16 scale d leads every Q4_0 / Q8_0 block: all of them must be finite (exponent bits not all ones).
void check_scales(const io::TensorFile& f, const io::TensorInfo& t, std::span<const std::byte> bytes, size_t block) {
  for (size_t i = 0; i + block <= bytes.size(); i += block) {
    uint16_t d;
    std::memcpy(&d, bytes.data() + i, sizeof d);
    if ((d & 0x7C00u) == 0x7C00u) fail<FormatError>("{}: tensor '{}' holds NaN or Inf", f.path().string(), t.name);
  }
}

EngineWeight make_weight(const io::TensorFile& f, const std::string& name, int64_t out, int64_t in, bool repack) {
  const io::TensorInfo& t = model::checked_tensor(f, name, out, in);
  EngineWeight w;
  w.out = out;
  w.in = in;
  const bool q4 = t.dtype == io::DType::Ggml && t.ggml_type == static_cast<int>(ggml::Type::Q4_0);
  const bool q8 = t.dtype == io::DType::Ggml && t.ggml_type == static_cast<int>(ggml::Type::Q8_0);
  if (q4 || q8) {
    w.quantized = true;
    w.type = q4 ? ggml::Type::Q4_0 : ggml::Type::Q8_0;
    const std::span<const std::byte> bytes = f.bytes(t);
    const auto expect = static_cast<uint64_t>(out * ggml::row_size(w.type, in));
    if (bytes.size() != expect)
      fail<FormatError>("{}: tensor '{}' holds {} bytes, expected {}", f.path().string(), name, bytes.size(), expect);
    check_scales(f, t, bytes, q4 ? sizeof(ggml::BlockQ4_0) : sizeof(ggml::BlockQ8_0));
    w.blocks = bytes.data();
    if (q4 && repack) {
      w.packed = kernels::repack_q4_0(w.blocks, out, in);
      w.repacked = true;
      w.blocks = nullptr;
      f.release(t);
    }
  } else {
    w.values = model::read_finite(f, t);
    w.rounding = model::input_rounding_for(t);
  }
  return w;
}

Eigen::VectorXf read_norm(const io::TensorFile& f, const std::string& name, int64_t n) {
  return model::read_finite(f, model::checked_tensor(f, name, 1, n)).row(0).transpose();
}

}  // namespace

// One block's linear layers for model::layer_forward.
class Engine::Linears final : public model::BlockLinears {
 public:
  Linears(const Engine& e, const Layer& l) : e_(e), l_(l) {}
  void apply(model::LinearId which, RowMatrixXf& y, const RowMatrixXf& x, float beta, int) const override {
    e_.linear(l_.w[static_cast<int>(which)], y, x, beta);
  }

 private:
  const Engine& e_;
  const Layer& l_;
};

Engine Engine::load(const std::filesystem::path& path, const EngineOptions& options) {
  Engine e;
  e.opt_ = options;
  e.file_ = io::TensorFile::open(path);
  const io::TensorFile& f = *e.file_;
  e.cfg_ = model::read_llama_config(f);
  const model::LlamaConfig& c = e.cfg_;
  const int64_t out_dims[7] = {c.dim, c.kv_dim(), c.kv_dim(), c.dim, c.hidden, c.hidden, c.dim};
  const int64_t in_dims[7] = {c.dim, c.dim, c.dim, c.dim, c.dim, c.dim, c.hidden};
  auto count = [&e](const EngineWeight& w) { ++(w.quantized ? e.n_quantized_ : e.n_float_); };
  e.layers_.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    Layer& L = e.layers_[static_cast<size_t>(l)];
    L.attn_norm = read_norm(f, model::layer_weight_name(l, "attn_norm"), c.dim);
    L.ffn_norm = read_norm(f, model::layer_weight_name(l, "ffn_norm"), c.dim);
    for (int i = 0; i < 7; ++i) {
      L.w[i] = make_weight(f, model::layer_weight_name(l, kLinearNames[i]), out_dims[i], in_dims[i],
                           options.repack_q4_0);
      count(L.w[i]);
    }
  }
  e.output_norm_ = read_norm(f, "output_norm.weight", c.dim);
  e.output_ = make_weight(f, c.tied_output ? "token_embd.weight" : "output.weight", c.vocab, c.dim,
                          options.repack_q4_0);
  count(e.output_);
  return e;
}

void Engine::linear(const EngineWeight& w, RowMatrixXf& y, const RowMatrixXf& x, float beta) const {
  const int threads = resolve_threads(opt_.threads);
  if (x.cols() != w.in) fail<ShapeError>("engine linear: input has {} columns, the weight {}", x.cols(), w.in);
  if (beta != 0.0f && (y.rows() != x.rows() || y.cols() != w.out))
    fail<ShapeError>("engine linear: accumulating into [{}, {}], the product is [{}, {}]", y.rows(), y.cols(),
                     x.rows(), w.out);
  if (!w.quantized) return model::linear(y, x, w.values.data(), w.out, w.rounding, beta, threads);
  RowMatrixXf z(x.rows(), w.out);
  const kernels::Exec ex{threads, {}};
  if (w.repacked) {
    std::vector<ggml::BlockQ8_0> a(static_cast<size_t>(x.rows() * (w.in / 32)));
    kernels::quantize_rows_q8_0(x.data(), x.rows(), w.in, x.cols(), a.data(), opt_.rounding);
    kernels::gemm_w4(kernels::acts_from_q8_0(a.data(), x.rows(), w.in), w.packed, nullptr, z.data(), w.out, ex);
  } else {
    kernels::ggml_linear(w.type, w.blocks, w.out, w.in, x.data(), x.rows(), x.cols(), z.data(), w.out,
                         ex, opt_.rounding);
  }
  if (beta == 0.0f) y = std::move(z);
  else y += beta * z;
}

const EngineWeight& Engine::weight(int layer, model::LinearId which) const {
  if (layer < 0 || layer >= cfg_.n_layers)
    fail<InvalidArgument>("engine: layer {} outside [0, {})", layer, cfg_.n_layers);
  return layers_[static_cast<size_t>(layer)].w[static_cast<int>(which)];
}

RowMatrixXf Engine::decode(std::span<const int32_t> tokens, KvCache& cache) const {
  const auto L = static_cast<size_t>(cfg_.n_layers);
  if (cache.length == 0 && cache.k.size() != L) {
    cache.k.assign(L, RowMatrixXf());
    cache.v.assign(L, RowMatrixXf());
  }
  if (cache.k.size() != L || cache.v.size() != L)
    fail<InvalidArgument>("engine decode: the cache holds {} layers, the model {}", cache.k.size(), L);
  RowMatrixXf x = model::embed(*file_, cfg_, tokens);
  const int threads = resolve_threads(opt_.threads);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    auto& kc = cache.k[static_cast<size_t>(l)];
    auto& vc = cache.v[static_cast<size_t>(l)];
    if (kc.rows() != cache.length || vc.rows() != cache.length)
      fail<InvalidArgument>("engine decode: layer {} caches {} positions, the cache says {}", l, kc.rows(),
                            cache.length);
    const Layer& layer = layers_[static_cast<size_t>(l)];
    model::layer_forward(cfg_, layer.attn_norm.data(), layer.ffn_norm.data(), Linears(*this, layer), l, x,
                         cache.length, &kc, &vc, nullptr, threads);
  }
  cache.length += static_cast<int64_t>(tokens.size());
  RowMatrixXf h, z;
  model::rms_norm(h, x, output_norm_.data(), cfg_.norm_eps);
  linear(output_, z, h, 0.0f);
  return z;
}

std::vector<int32_t> Engine::generate(std::span<const int32_t> prompt, const model::GenerateOptions& o,
                                      const model::TokenCallback& on_token) const {
  return model::generate([this](std::span<const int32_t> t, KvCache& c) { return decode(t, c); }, cfg_.context,
                         prompt, o, on_token);
}

}  // namespace qk::runtime
