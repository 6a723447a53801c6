// The whole Llama model in memory (qk/model/llama_model.hpp), built on the block functions of llama_layer.cpp.
#include "qk/model/llama_model.hpp"

#include <string>

#include "qk/core/error.hpp"
#include "qk/formats/tensor_values.hpp"

namespace qk::model {
namespace {

// The float copy is what the model holds: the mapped pages go back (read_finite).
RowMatrixXf read_checked(const io::TensorFile& f, const std::string& name, int64_t rows, int64_t cols) {
  return read_finite(f, checked_tensor(f, name, rows, cols));
}

}  // namespace

LlamaModel LlamaModel::load(const std::filesystem::path& path, const LoadOptions& options) {
  return load(*io::TensorFile::open(path), options);
}

LlamaModel LlamaModel::load(const io::TensorFile& f, const LoadOptions& options) {
  LlamaModel m;
  m.cfg_ = read_llama_config(f);
  const LlamaConfig& c = m.cfg_;
  m.tok_embd_ = read_checked(f, "token_embd.weight", c.vocab, c.dim);
  m.output_norm_ = read_checked(f, "output_norm.weight", 1, c.dim).row(0).transpose();
  m.output_ = c.tied_output ? m.tok_embd_ : read_checked(f, "output.weight", c.vocab, c.dim);
  if (options.llama_rounding)
    m.output_round_ = input_rounding_for(f.tensor(c.tied_output ? "token_embd.weight" : "output.weight"));
  m.layers_.reserve(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) m.layers_.push_back(load_layer(f, c, l, options.llama_rounding));
  return m;
}

RowMatrixXf LlamaModel::embed(std::span<const int32_t> tokens) const {
  const auto T = static_cast<Eigen::Index>(tokens.size());
  RowMatrixXf x(T, cfg_.dim);
  for (Eigen::Index t = 0; t < T; ++t) {
    const int32_t id = tokens[static_cast<size_t>(t)];
    if (id < 0 || id >= cfg_.vocab)
      fail<InvalidArgument>("token id {} at position {} is outside the vocabulary of {}", id, t, cfg_.vocab);
    x.row(t) = tok_embd_.row(id);
  }
  return x;
}

RowMatrixXf output_logits(const LlamaConfig& cfg, const RowMatrixXf& x, const float* output_norm, const float* output,
                          InputRounding rounding, int threads) {
  if (x.cols() != cfg.dim)
    fail<ShapeError>("llama logits: hidden states have {} columns, the model {}", x.cols(), cfg.dim);
  RowMatrixXf h, z;
  rms_norm(h, x, output_norm, cfg.norm_eps);
  linear(z, h, output, cfg.vocab, rounding, 0.0f, threads);
  return z;
}

RowMatrixXf LlamaModel::logits(const RowMatrixXf& x) const {
  return output_logits(cfg_, x, output_norm_.data(), output_.data(), output_round_);
}

const LlamaLayer& LlamaModel::layer(int l) const {
  if (l < 0 || l >= cfg_.n_layers) fail<InvalidArgument>("llama: layer {} outside [0, {})", l, cfg_.n_layers);
  return layers_[static_cast<size_t>(l)];
}

void LlamaModel::forward_layer(int l, RowMatrixXf& x, ForwardObserver* observer) const {
  layer_forward(cfg_, view(layer(l)), l, x, 0, nullptr, nullptr, observer);
}

RowMatrixXf LlamaModel::forward(std::span<const int32_t> tokens, ForwardObserver* observer) const {
  RowMatrixXf x = embed(tokens);
  for (int l = 0; l < cfg_.n_layers; ++l) forward_layer(l, x, observer);
  return logits(x);
}

RowMatrixXf LlamaModel::decode(std::span<const int32_t> tokens, KvCache& cache) const {
  const auto L = static_cast<size_t>(cfg_.n_layers);
  if (cache.length == 0 && cache.k.size() != L) {
    cache.k.assign(L, RowMatrixXf());
    cache.v.assign(L, RowMatrixXf());
  }
  if (cache.k.size() != L || cache.v.size() != L)
    fail<InvalidArgument>("llama decode: the cache holds {} layers, the model {}", cache.k.size(), L);
  RowMatrixXf x = embed(tokens);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    auto& kc = cache.k[static_cast<size_t>(l)];
    auto& vc = cache.v[static_cast<size_t>(l)];
    if (kc.rows() != cache.length || vc.rows() != cache.length)
      fail<InvalidArgument>("llama decode: layer {} caches {} positions, the cache says {}", l, kc.rows(), cache.length);
    layer_forward(cfg_, view(layers_[static_cast<size_t>(l)]), l, x, cache.length, &kc, &vc, nullptr);
  }
  cache.length += static_cast<int64_t>(tokens.size());
  return logits(x);
}

RowMatrixXf* LlamaModel::find_weight(const std::string& name) {
  if (name == "output.weight") return cfg_.tied_output ? nullptr : &output_;
  if (name.rfind("blk.", 0) != 0) return nullptr;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos || !name.ends_with(".weight")) return nullptr;
  int l = -1;
  try {
    size_t used = 0;
    l = std::stoi(name.substr(4, dot - 4), &used);
    if (used != dot - 4) return nullptr;
  } catch (const std::exception&) {
    return nullptr;
  }
  if (l < 0 || l >= cfg_.n_layers) return nullptr;
  const std::string rest = name.substr(dot + 1, name.size() - dot - 1 - 7);
  return find_linear(layers_[static_cast<size_t>(l)], rest);
}

const RowMatrixXf& LlamaModel::weight(const std::string& name) const {
  const RowMatrixXf* w = const_cast<LlamaModel*>(this)->find_weight(name);
  if (!w) fail<InvalidArgument>("llama: '{}' is not a linear weight of this model", name);
  return *w;
}

void LlamaModel::set_weight(const std::string& name, const RowMatrixXf& w) {
  RowMatrixXf* p = find_weight(name);
  if (!p) fail<InvalidArgument>("llama: '{}' is not a linear weight of this model", name);
  if (w.rows() != p->rows() || w.cols() != p->cols())
    fail<ShapeError>("llama: '{}' is [{}, {}], the new value [{}, {}]", name, p->rows(), p->cols(), w.rows(), w.cols());
  if (!w.allFinite()) fail<NumericError>("llama: the new value of '{}' holds NaN or Inf", name);
  *p = w;
}

}  // namespace qk::model
