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
//
// Calibration (model-mode GPTQ/AWQ): the pass is also available layer by layer (embed, forward_layer, logits), a
// ForwardObserver sees the input of every group of linear layers as it is computed, and set_weight replaces a weight
// (e.g. by its quantized value) so that later layers are calibrated on the partly quantized model. sample() draws
// token sequences from the model itself (incremental decoding with a KV cache).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "qk/io/tensor_file.hpp"

namespace qk::model {

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

// The four groups of linear layers of a block that read the same input, in the order the block computes them.
enum class LinearInput {
  AttnQkv,     // attn_q, attn_k, attn_v: the attention RMSNorm's output [tokens, dim]
  AttnOutput,  // attn_output: the attention heads' output [tokens, dim]
  FfnGateUp,   // ffn_gate, ffn_up: the FFN RMSNorm's output [tokens, dim]
  FfnDown,     // ffn_down: silu(gate x) * up x [tokens, hidden]
};
inline constexpr LinearInput kLinearInputs[] = {LinearInput::AttnQkv, LinearInput::AttnOutput, LinearInput::FfnGateUp,
                                                LinearInput::FfnDown};
// GGUF tensor names (without "blk.N." and ".weight") of the weights that read `in`: "attn_q", "attn_k", ...
std::vector<std::string> linear_names(LinearInput in);
// "blk.<layer>.<name>.weight"
std::string layer_weight_name(int layer, std::string_view name);

// Sees the inputs of the linear layers during a forward pass. x is [tokens, in_features] and only valid during the
// call. The pass itself keeps no state between calls: observers carry their own.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  virtual void on_linear_input(int layer, LinearInput in, const RowMatrixXf& x) = 0;
};

// Keys and values of the positions decoded so far (LlamaModel::decode); one [positions, kv_dim] pair per layer.
struct KvCache {
  std::vector<RowMatrixXf> k, v;
  int64_t length = 0;
};

class LlamaModel {
 public:
  // Reads the llama.* metadata and every weight (dequantizing block types). FormatError naming the file and
  // tensor when something is missing or has the wrong shape.
  static LlamaModel load(const io::TensorFile& file);
  static LlamaModel load(const std::filesystem::path& path);

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

 private:
  RowMatrixXf* find_weight(const std::string& name);
  void layer_pass(int layer, RowMatrixXf& x, int64_t pos0, RowMatrixXf* kc, RowMatrixXf* vc,
                  ForwardObserver* observer) const;
  bool tied_output_ = false;  // output_ is a copy of tok_embd_ (no output.weight)

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

struct SampleOptions {
  int samples = 32;          // sequences
  int length = 128;          // tokens per sequence, the first one `bos`
  uint64_t seed = 1;
  float temperature = 1.0f;  // > 0
  int bos = 1;
  int threads = 0;
};

// Draws `samples` sequences from the model (ancestral sampling from softmax(logits / temperature)), concatenated:
// samples * length ids. Each sequence has its own generator seeded from (seed, index), so the result does not
// depend on the thread count.
std::vector<int32_t> sample(const LlamaModel& m, const SampleOptions& o);

// Writes token ids as little-endian int32 (the format read_tokens reads), through a temporary file and a rename.
void write_tokens(const std::filesystem::path& path, std::span<const int32_t> tokens);

// Reads a file of little-endian int32 token ids. FormatError for a size that is not a multiple of 4.
std::vector<int32_t> read_tokens(const std::filesystem::path& path);

}  // namespace qk::model
