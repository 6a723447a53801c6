#pragma once
// A small random Llama GGUF made by the test itself (llama.* metadata, every block tensor), for pipeline tests that
// must not depend on the bundled models: shapes chosen per test (rows of 256 exercise the K-quants, 96-wide rows
// their fallbacks).
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "qk/io/gguf.hpp"

namespace qk::test {

struct TinyLlama {
  int64_t dim = 256, ffn = 96, blocks = 2, heads = 4, kv_heads = 2, vocab = 300, ctx = 64;
  bool tied = false;  // no output.weight
  uint64_t seed = 7;
};

inline void write_tiny_llama(const std::filesystem::path& path, const TinyLlama& s) {
  io::GgufWriter w(path);
  w.set("general.architecture", std::string("llama"));
  w.set("llama.context_length", static_cast<uint32_t>(s.ctx));
  w.set("llama.embedding_length", static_cast<uint32_t>(s.dim));
  w.set("llama.feed_forward_length", static_cast<uint32_t>(s.ffn));
  w.set("llama.block_count", static_cast<uint32_t>(s.blocks));
  w.set("llama.attention.head_count", static_cast<uint32_t>(s.heads));
  w.set("llama.attention.head_count_kv", static_cast<uint32_t>(s.kv_heads));
  w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set("tokenizer.ggml.bos_token_id", uint32_t{1});
  struct T {
    std::string name;
    std::vector<int64_t> shape;
    bool norm;
  };
  const int64_t kv = s.dim / s.heads * s.kv_heads;
  std::vector<T> ts = {{"token_embd.weight", {s.vocab, s.dim}, false}, {"output_norm.weight", {s.dim}, true}};
  if (!s.tied) ts.push_back({"output.weight", {s.vocab, s.dim}, false});
  for (int64_t b = 0; b < s.blocks; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    ts.push_back({p + "attn_norm.weight", {s.dim}, true});
    ts.push_back({p + "attn_q.weight", {s.dim, s.dim}, false});
    ts.push_back({p + "attn_k.weight", {kv, s.dim}, false});
    ts.push_back({p + "attn_v.weight", {kv, s.dim}, false});
    ts.push_back({p + "attn_output.weight", {s.dim, s.dim}, false});
    ts.push_back({p + "ffn_norm.weight", {s.dim}, true});
    ts.push_back({p + "ffn_gate.weight", {s.ffn, s.dim}, false});
    ts.push_back({p + "ffn_up.weight", {s.ffn, s.dim}, false});
    ts.push_back({p + "ffn_down.weight", {s.dim, s.ffn}, false});
  }
  for (const auto& t : ts) w.add_tensor(t.name, 0, t.shape);
  std::mt19937_64 rng(s.seed);
  for (const auto& t : ts) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    // embeddings larger than the rest so the model's distributions are far from uniform
    std::normal_distribution<float> d(t.norm ? 1.0f : 0.0f, t.norm ? 0.1f : (t.name.starts_with("token") ? 1.0f : 0.08f));
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    w.write_tensor(t.name, std::as_bytes(std::span<const float>(v)));
  }
  w.commit();
}

}  // namespace qk::test
