// Llama hyper-parameters and tensor names (qk/model/llama_config.hpp).
#include "qk/model/llama_config.hpp"

#include <cmath>
#include <limits>
#include <type_traits>
#include <variant>

#include "qk/core/error.hpp"

namespace qk::model {
namespace {

// Integer or float metadata value as double; NaN when absent or not numeric.
double meta_number(const io::TensorFile& f, std::string_view key) {
  for (const auto& e : f.metadata()) {
    if (e.key != key) continue;
    return std::visit(
        [](const auto& v) -> double {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_arithmetic_v<T>) return static_cast<double>(v);
          else return std::numeric_limits<double>::quiet_NaN();
        },
        e.value);
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// A positive count from the metadata (fallback when absent and fallback >= 0).
int meta_count(const io::TensorFile& f, std::string_view key, int fallback = -1) {
  const double v = meta_number(f, key);
  if (std::isnan(v)) {
    if (fallback >= 0) return fallback;
    fail<FormatError>("{}: metadata '{}' is missing or not a number", f.path().string(), key);
  }
  if (!(v >= 0 && v <= static_cast<double>(std::numeric_limits<int>::max())) || v != std::floor(v))
    fail<FormatError>("{}: metadata '{}' = {} is not a count", f.path().string(), key, v);
  return static_cast<int>(v);
}

}  // namespace

LlamaConfig read_llama_config(const io::TensorFile& f) {
  LlamaConfig c;
  const std::string file = f.path().string();
  c.dim = meta_count(f, "llama.embedding_length");
  c.hidden = meta_count(f, "llama.feed_forward_length");
  c.n_layers = meta_count(f, "llama.block_count");
  c.n_heads = meta_count(f, "llama.attention.head_count");
  c.n_kv_heads = meta_count(f, "llama.attention.head_count_kv", c.n_heads);
  c.context = meta_count(f, "llama.context_length", 0);
  const double eps = meta_number(f, "llama.attention.layer_norm_rms_epsilon");
  if (!std::isnan(eps)) {
    if (!(eps > 0 && eps < 1))
      fail<FormatError>("{}: llama.attention.layer_norm_rms_epsilon = {} is not in (0, 1)", file, eps);
    c.norm_eps = static_cast<float>(eps);
  }
  const double theta = meta_number(f, "llama.rope.freq_base");
  if (!std::isnan(theta)) {
    if (!(theta > 1 && std::isfinite(theta))) fail<FormatError>("{}: llama.rope.freq_base = {} is not > 1", file, theta);
    c.rope_theta = static_cast<float>(theta);
  }
  if (c.dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.dim % c.n_heads != 0 || c.n_heads % c.n_kv_heads != 0 ||
      c.n_layers <= 0 || c.hidden <= 0 || (c.dim / c.n_heads) % 2 != 0)
    fail<FormatError>("{}: inconsistent llama hyper-parameters (dim {}, heads {}/{}, layers {}, ffn {})", file, c.dim,
                      c.n_heads, c.n_kv_heads, c.n_layers, c.hidden);
  const io::TensorInfo* emb = f.find("token_embd.weight");
  if (!emb || emb->shape.size() != 2)
    fail<FormatError>("{}: tensor 'token_embd.weight' is missing or not 2-D", file);
  if (emb->shape[1] != c.dim)
    fail<FormatError>("{}: tensor 'token_embd.weight' is {}, expected rows of {}", file, io::shape_text(emb->shape),
                      c.dim);
  if (emb->shape[0] <= 0 || emb->shape[0] > std::numeric_limits<int>::max())
    fail<FormatError>("{}: tensor 'token_embd.weight' has {} rows", file, emb->shape[0]);
  c.vocab = static_cast<int>(emb->shape[0]);
  c.tied_output = f.find("output.weight") == nullptr;
  return c;
}

std::vector<std::string> linear_names(LinearInput in) {
  switch (in) {
    case LinearInput::AttnQkv: return {"attn_q", "attn_k", "attn_v"};
    case LinearInput::AttnOutput: return {"attn_output"};
    case LinearInput::FfnGateUp: return {"ffn_gate", "ffn_up"};
    case LinearInput::FfnDown: return {"ffn_down"};
  }
  return {};
}

std::string norm_name(LinearInput in) {
  switch (in) {
    case LinearInput::AttnQkv: return "attn_norm";
    case LinearInput::FfnGateUp: return "ffn_norm";
    default: return "";
  }
}

std::string layer_weight_name(int layer, std::string_view name) {
  return "blk." + std::to_string(layer) + "." + std::string(name) + ".weight";
}

}  // namespace qk::model
