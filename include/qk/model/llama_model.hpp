#pragma once
// A small, exact Llama forward pass (float32) over weights from any TensorFile (GGUF llama architecture), used to
// measure what quantization costs in model quality (qk/model/perplexity.hpp) and to sample from a model
// (qk/model/sample.hpp). Quantized tensors are dequantized once at load; the whole model is held as float, so it
// is meant for small models and for evaluating quantized files. Calibration of large models goes block by block
// instead (qk/model/llama_layer.hpp, qk/pipeline).
//
// The pass is also available layer by layer (embed, forward_layer, logits), a ForwardObserver sees the input of
// every group of linear layers as it is computed, and set_weight replaces a weight (e.g. by its quantized value).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "qk/io/tensor_file.hpp"
#include "qk/model/llama_config.hpp"
#include "qk/model/llama_layer.hpp"

namespace qk::model {

// Keys and values of the positions decoded so far (LlamaModel::decode); one [positions, kv_dim] pair per layer.
struct KvCache {
  std::vector<RowMatrixXf> k, v;
  int64_t length = 0;
};

struct LoadOptions {
  // Round each linear layer's inputs as llama.cpp's CPU backend does for the weight's stored type (InputRounding in
  // llama_layer.hpp): 8-bit blocks for quantized weights, fp16 for F16 ones. Perplexity and KL of a quantized file
  // then agree with llama.cpp's; F32 weights are unaffected. false: every product in float (the exact oracle of the
  // dequantized model).
  bool llama_rounding = true;
};

class LlamaModel {
 public:
  // Reads the llama.* metadata and every weight (dequantizing block types). FormatError naming the file and
  // tensor when something is missing, has the wrong shape or holds NaN/Inf.
  static LlamaModel load(const io::TensorFile& file, const LoadOptions& options = {});
  static LlamaModel load(const std::filesystem::path& path, const LoadOptions& options = {});

  const LlamaConfig& config() const { return cfg_; }

  // Logits [tokens.size(), vocab] for one sequence starting at position 0 (causal attention within it).
  // observer (optional) sees every layer's linear inputs.
  RowMatrixXf forward(std::span<const int32_t> tokens, ForwardObserver* observer = nullptr) const;

  // The same pass in steps: forward(t) == logits(x) after x = embed(t) and forward_layer(l, x) for every layer.
  RowMatrixXf embed(std::span<const int32_t> tokens) const;  // [tokens, dim]; InvalidArgument for an unknown id
  void forward_layer(int layer, RowMatrixXf& x, ForwardObserver* observer = nullptr) const;  // x: residual stream
  RowMatrixXf logits(const RowMatrixXf& x) const;  // final RMSNorm and output projection

  // Incremental decoding: appends tokens at positions cache.length.. and returns their logits (a fresh KvCache
  // starts at position 0). decode of a whole sequence equals forward up to float rounding.
  RowMatrixXf decode(std::span<const int32_t> tokens, KvCache& cache) const;

  // A linear weight [out, in] by its GGUF name (blk.N.attn_q.weight, ..., output.weight when the file has one);
  // InvalidArgument for another name. set_weight replaces it (ShapeError for another shape, NumericError for NaN/Inf).
  const RowMatrixXf& weight(const std::string& name) const;
  void set_weight(const std::string& name, const RowMatrixXf& w);
  const LlamaLayer& layer(int l) const;
  const float* output_norm() const { return output_norm_.data(); }
  const float* output() const { return output_.data(); }
  InputRounding output_rounding() const { return output_round_; }

 private:
  RowMatrixXf* find_weight(const std::string& name);

  LlamaConfig cfg_;
  RowMatrixXf tok_embd_, output_;
  Eigen::VectorXf output_norm_;
  std::vector<LlamaLayer> layers_;
  InputRounding output_round_ = InputRounding::None;
};

// Final RMSNorm and output projection: logits [rows, vocab] of hidden states x.
RowMatrixXf output_logits(const LlamaConfig& cfg, const RowMatrixXf& x, const float* output_norm, const float* output,
                          InputRounding rounding = InputRounding::None, int threads = 1);

}  // namespace qk::model
