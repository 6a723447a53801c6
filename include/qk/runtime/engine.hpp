#pragma once
// Quantized inference of a Llama GGUF on qk's own kernels: the runtime floor.
//
// Engine::load maps the file and keeps its Q4_0 and Q8_0 linear weights quantized, read in place from the mapping
// (no copy, no repacking: ggml_gemm of qk/kernels/ggml_dot.hpp reads GGUF's blocks as stored). With
// EngineOptions::repack_q4_0, Q4_0 weights are instead repacked once at load into the packed int4 layout of
// qk/kernels/gemm.hpp (repack_q4_0, lossless) and multiplied by gemm_w4 on the same Q8_0 activation codes. Their products take
// dynamic int8 activations as llama.cpp's CPU backend does: each input row is quantized to Q8_0 blocks of 32
// (Q8Rounding, llama.cpp's x86 rounding by default) and multiplied block by block in int32. Weights of any other
// type (F32, F16, BF16, the K-quants, ...) are dequantized to float32 at load for now and multiplied as the model
// floor does, their inputs rounded as llama.cpp rounds them (InputRounding of qk/model/llama_layer.hpp). The token
// embedding stays in the file; only the rows of the decoded ids are read.
//
// Everything else (RMSNorm, RoPE, attention, SwiGLU, the KV cache) is the model floor's code
// (qk::model::layer_forward with BlockLinears), so the engine computes what LlamaModel computes with
// LoadOptions::llama_rounding, up to float summation order in the quantized products (and, with the x86 rounding,
// an activation code now and then; tests/runtime states the agreement measured). Results do not depend on the
// thread count.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "qk/io/tensor_file.hpp"
#include "qk/kernels/ggml_dot.hpp"
#include "qk/model/generate.hpp"
#include "qk/model/llama_config.hpp"
#include "qk/model/llama_layer.hpp"
#include "qk/model/llama_model.hpp"

namespace qk::runtime {

using model::KvCache;
using model::RowMatrixXf;

struct EngineOptions {
  // How Q8_0 activation codes are rounded for the quantized products: ggml_x86 is what llama.cpp runs on x86
  // (its logits); reference is ggml's reference quantizer, the rounding the model floor emulates.
  kernels::Q8Rounding rounding = kernels::Q8Rounding::ggml_x86;
  int threads = 0;  // 0: qk::resolve_threads(0)
  // Q4_0 weights repacked at load for the packed int4 kernels (a copy of those weights in memory) instead of read
  // in place from the mapping; the same products up to float summation order.
  bool repack_q4_0 = false;
};

// One linear weight [out, in] as the engine holds it: quantized in the mapping, or float32 (owned).
struct EngineWeight {
  int64_t out = 0, in = 0;
  bool quantized = false;
  ggml::Type type = ggml::Type::Q8_0;  // when quantized: Q4_0 or Q8_0
  const void* blocks = nullptr;        // when quantized: out rows of ggml::row_size(type, in) bytes in the mapping
  kernels::PackedW4 packed;            // Q4_0 repacked at load (EngineOptions::repack_q4_0), else empty
  bool repacked = false;
  RowMatrixXf values;                  // otherwise
  model::InputRounding rounding = model::InputRounding::None;  // otherwise: llama.cpp's input rounding
};

class Engine {
 public:
  // Opens a Llama GGUF (the model floor's checks: FormatError naming the file and tensor for a missing tensor, a
  // wrong shape, NaN/Inf in a dequantized weight).
  static Engine load(const std::filesystem::path& path, const EngineOptions& options = {});

  const model::LlamaConfig& config() const { return cfg_; }
  const io::TensorFile& file() const { return *file_; }  // the mapped model (its vocabulary, metadata)
  const EngineOptions& options() const { return opt_; }
  // Linear weights kept quantized / dequantized at load (the output projection counted).
  int quantized_weights() const { return n_quantized_; }
  int float_weights() const { return n_float_; }

  // Appends tokens at positions cache.length.. and returns their logits [tokens, vocab] (a fresh KvCache starts at
  // position 0), as LlamaModel::decode. InvalidArgument for an id outside the vocabulary or a cache of another
  // model.
  RowMatrixXf decode(std::span<const int32_t> tokens, KvCache& cache) const;

  // Text generation as qk::model::generate, over this engine.
  std::vector<int32_t> generate(std::span<const int32_t> prompt, const model::GenerateOptions& o,
                                const model::TokenCallback& on_token = {}) const;

  // y = x · Wᵀ + beta·y for one weight as the engine multiplies it (beta 0 resizes y), and the weights (InvalidArgument
  // for a layer out of range): exposed for tests and benchmarks.
  void linear(const EngineWeight& w, RowMatrixXf& y, const RowMatrixXf& x, float beta) const;
  const EngineWeight& weight(int layer, model::LinearId which) const;
  const EngineWeight& output_weight() const { return output_; }

 private:
  struct Layer {
    Eigen::VectorXf attn_norm, ffn_norm;
    EngineWeight w[7];  // by model::LinearId
  };
  class Linears;

  std::unique_ptr<io::TensorFile> file_;
  model::LlamaConfig cfg_;
  EngineOptions opt_;
  Eigen::VectorXf output_norm_;
  EngineWeight output_;
  std::vector<Layer> layers_;
  int n_quantized_ = 0, n_float_ = 0;
};

}  // namespace qk::runtime
