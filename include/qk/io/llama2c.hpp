#pragma once
// llama2.c checkpoints (Karpathy's llama2.c: run.c's memory_map_weights, export.py's legacy "version 0" export),
// presented as a TensorFile with GGUF tensor names and llama.* metadata, memory-mapped and zero-copy.
//
// Layout: a header of 7 little-endian int32 — dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
// (vocab_size negative: the classifier is stored separately at the end; positive: it is the token embedding) —
// then float32 arrays, each row-major [out, in], layers stacked:
//   token embedding [vocab, dim]; rms_att [layers, dim]; wq [layers, dim, dim]; wk, wv [layers, kv_dim, dim];
//   wo [layers, dim, dim]; rms_ffn [layers, dim]; w1 [layers, hidden, dim]; w2 [layers, dim, hidden];
//   w3 [layers, hidden, dim]; rms_final [dim]; freq_cis_real, freq_cis_imag [seq_len, head_dim / 2] each;
//   and the classifier [vocab, dim] when vocab_size < 0.
// kv_dim = dim * n_kv_heads / n_heads, head_dim = dim / n_heads. This is GGUF's layout already (llama.cpp's
// convert-llama2c-to-ggml copies every array element by element, in order; RoPE works on adjacent pairs in both),
// so every tensor is a span of the file: token_embd.weight, blk.N.{attn_q, attn_k, attn_v, attn_output, attn_norm,
// ffn_gate (w1), ffn_down (w2), ffn_up (w3), ffn_norm}.weight, output_norm.weight, and output.weight only when the
// classifier is separate. The RoPE tables are not presented (a reader computes them).
//
// Metadata, as llama.cpp's converter writes it: general.architecture "llama", general.name (the file's stem),
// llama.context_length (seq_len), llama.embedding_length, llama.feed_forward_length, llama.attention.head_count,
// llama.attention.head_count_kv, llama.block_count, llama.rope.dimension_count (head_dim) and
// llama.attention.layer_norm_rms_epsilon (1e-5, llama2.c's constant).
//
// The format has no magic. TensorFile::open takes a file for a llama2.c checkpoint only when its header is
// plausible (positive sizes within bounds, heads dividing dim, kv heads dividing heads) and the size it implies
// equals the file's size exactly; open_llama2c() says why a file is not one. The newer export versions (magic
// "ak42") are recognised and refused with a message saying so.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "qk/io/tensor_file.hpp"

namespace qk::io {

struct Llama2cConfig {
  int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0;
  int32_t vocab_size = 0;          // always positive here
  bool shared_classifier = true;   // the header's vocab_size was positive: the embedding is the classifier
  int32_t seq_len = 0;

  int32_t head_dim() const { return dim / n_heads; }
  int32_t kv_dim() const { return dim / n_heads * n_kv_heads; }
  // Header plus every array (the classifier included when separate): the exact size of a valid file.
  uint64_t file_size() const;
};

inline constexpr size_t kLlama2cHeaderBytes = 28;

// Reads and checks the header: FormatError "<name>: ..." saying which field is implausible, or that `data` is
// shorter than the header. Does not compare the file size (see open_llama2c).
Llama2cConfig parse_llama2c_header(std::span<const std::byte> data, const std::string& name);

// True when `data` is a llama2.c version-0 checkpoint by the rule above (plausible header, exact size). Never throws.
bool looks_like_llama2c(std::span<const std::byte> data);

// Opens a llama2.c checkpoint whatever its first bytes: FormatError naming the file when the header is implausible
// or the file's size is not the size the header implies (truncated, trailing bytes, another format).
std::unique_ptr<TensorFile> open_llama2c(const std::filesystem::path& path);
// The same over bytes already in memory (no copy: `data` must outlive the TensorFile); `name` stands for the file.
std::unique_ptr<TensorFile> open_llama2c_memory(std::span<const std::byte> data, std::string name = "<memory>");

}  // namespace qk::io
