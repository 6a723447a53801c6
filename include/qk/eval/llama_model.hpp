#pragma once
// A small, exact Llama forward pass (float32) over weights from any TensorFile (GGUF llama architecture), used to
// measure what quantization costs in model quality: perplexity, KL divergence against the base model, top-1
// agreement. Quantized tensors are dequantized once at load; the model is meant for small models (the bundled
// stories260K) and for evaluating quantized files, not for fast inference.
//
// Architecture (as llama2.c's run.c and llama.cpp's LLM_ARCH_LLAMA with rope type "norm"): token embedding;
// per layer RMSNorm -> Q, K, V projections -> RoPE on adjacent pairs (theta 10000, head_dim dimensions) ->
// causal grouped-query attention -> output projection, residual; RMSNorm -> SwiGLU FFN down(silu(gate x) * up x),
// residual; final RMSNorm and the output projection (the embedding when output.weight is absent).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "qk/io/tensor_file.hpp"

namespace qk::eval {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct LlamaConfig {
  int dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0, context = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
};

struct LlamaLayer {
  Eigen::VectorXf attn_norm, ffn_norm;
  RowMatrixXf wq, wk, wv, wo;   // [out, in]
  RowMatrixXf w_gate, w_up, w_down;
};

class LlamaModel {
 public:
  // Reads the llama.* metadata and every weight (dequantizing block types). FormatError naming the file and
  // tensor when something is missing or has the wrong shape.
  static LlamaModel load(const io::TensorFile& file);
  static LlamaModel load(const std::filesystem::path& path);

  const LlamaConfig& config() const { return cfg_; }

  // Logits [tokens.size(), vocab] for one sequence starting at position 0 (causal attention within it).
  RowMatrixXf forward(std::span<const int32_t> tokens) const;

 private:
  LlamaConfig cfg_;
  RowMatrixXf tok_embd_, output_;
  Eigen::VectorXf output_norm_;
  std::vector<LlamaLayer> layers_;
};

struct PerplexityOptions {
  int context = 128;      // chunk length; every chunk is scored independently
  int bos = 1;            // the first token of every chunk is replaced by this id (-1: keep)
  int first = -1;         // first scored position; -1 = context / 2 (llama.cpp's perplexity tool)
  int max_chunks = 0;     // 0 = all
  int threads = 0;
};

struct PerplexityResult {
  double ppl = 0, nll = 0;  // exp(mean NLL), mean NLL (nats)
  int64_t scored = 0;       // predictions scored
  int chunks = 0;
};

// Scores tokens the way llama.cpp's perplexity tool does: split into chunks of `context`, set the first token to
// BOS, run each chunk, and average -log p(token[j+1] | token[..j]) for j in [first, context - 2].
PerplexityResult perplexity(const LlamaModel& m, std::span<const int32_t> tokens, const PerplexityOptions& o = {});

struct CompareResult {
  PerplexityResult base, candidate;
  double kld = 0;          // mean KL(base || candidate) over the scored positions (nats)
  double top1_agree = 0;   // fraction of scored positions whose argmax agrees
};

// Scores both models on the same chunks and compares their next-token distributions.
CompareResult compare(const LlamaModel& base, const LlamaModel& candidate, std::span<const int32_t> tokens,
                      const PerplexityOptions& o = {});

// Reads a file of little-endian int32 token ids. FormatError for a size that is not a multiple of 4.
std::vector<int32_t> read_tokens(const std::filesystem::path& path);

}  // namespace qk::eval
