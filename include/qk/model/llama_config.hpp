#pragma once
// The Llama architecture's hyper-parameters and tensor names, as GGUF files made by llama.cpp carry them
// (llama.* metadata, "blk.N.<name>.weight" tensors), and the groups of linear layers that read the same input.
//
// Architecture (as llama2.c's run.c and llama.cpp's LLM_ARCH_LLAMA with rope type "norm"): token embedding;
// per layer RMSNorm -> Q, K, V projections -> RoPE on adjacent pairs (theta 10000, head_dim dimensions) ->
// causal grouped-query attention -> output projection, residual; RMSNorm -> SwiGLU FFN down(silu(gate x) * up x),
// residual; final RMSNorm and the output projection (the embedding when output.weight is absent).
#include <string>
#include <string_view>
#include <vector>

#include "qk/io/tensor_file.hpp"

namespace qk::model {

struct LlamaConfig {
  int dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab = 0, context = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tied_output = false;  // no output.weight: the token embedding is the output projection
  int head_dim() const { return dim / n_heads; }
  int kv_dim() const { return head_dim() * n_kv_heads; }
};

// Reads the llama.* metadata and the token embedding's shape, and checks them (positive sizes, heads dividing the
// width, a positive finite RMSNorm epsilon and RoPE base): FormatError naming the file and the value otherwise.
LlamaConfig read_llama_config(const io::TensorFile& file);

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
// The RMSNorm whose output `in` is ("attn_norm", "ffn_norm"), or "" when the input comes from elsewhere.
std::string norm_name(LinearInput in);
// "blk.<layer>.<name>.weight"
std::string layer_weight_name(int layer, std::string_view name);

}  // namespace qk::model
