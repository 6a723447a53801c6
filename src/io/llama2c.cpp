// llama2.c version-0 checkpoints as TensorFile (see qk/io/llama2c.hpp). Facts from llama2.c run.c
// (read_checkpoint, memory_map_weights) and llama.cpp's examples/convert-llama2c-to-ggml (tensor names, metadata).
#include "qk/io/llama2c.hpp"

#include <cstring>

#include "detail.hpp"

namespace qk::io {

namespace {

// Bounds of a plausible header: far above any llama2.c model, low enough that no size computation overflows
// (the largest product, layers * hidden * dim * 4 bytes, stays below 2^60).
constexpr int32_t kMaxDim = 1 << 16, kMaxHidden = 1 << 18, kMaxLayers = 1 << 10, kMaxVocab = 1 << 22,
                  kMaxSeq = 1 << 24;

// The header's fields, or a reason (not empty) why they are not a plausible llama2.c header.
std::string check(const int32_t h[7], Llama2cConfig& c) {
  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  const int32_t limits[7] = {kMaxDim, kMaxHidden, kMaxLayers, kMaxDim, kMaxDim, kMaxVocab, kMaxSeq};
  for (int i = 0; i < 7; ++i) {
    const int64_t v = i == 5 ? (h[i] < 0 ? -int64_t{h[i]} : int64_t{h[i]}) : int64_t{h[i]};
    if (v <= 0 || v > limits[i])
      return fmt::format("{} = {} is outside [1, {}]{}", names[i], h[i], limits[i], i == 5 ? " in magnitude" : "");
  }
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.shared_classifier = h[5] > 0;
  c.vocab_size = h[5] > 0 ? h[5] : -h[5];
  c.seq_len = h[6];
  if (c.dim % c.n_heads != 0) return fmt::format("n_heads = {} does not divide dim = {}", c.n_heads, c.dim);
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    return fmt::format("n_kv_heads = {} does not divide n_heads = {}", c.n_kv_heads, c.n_heads);
  if (c.head_dim() % 2 != 0) return fmt::format("head dimension {} is odd (RoPE rotates pairs)", c.head_dim());
  return {};
}

// "ak42" as the little-endian uint32 0x616b3432 that export.py writes first in versions 1 and 2.
bool has_versioned_magic(std::span<const std::byte> d) { return d.size() >= 4 && std::memcmp(d.data(), "24ka", 4) == 0; }

}  // namespace

uint64_t Llama2cConfig::file_size() const {
  const uint64_t d = static_cast<uint64_t>(dim), h = static_cast<uint64_t>(hidden_dim),
                 L = static_cast<uint64_t>(n_layers), kv = static_cast<uint64_t>(kv_dim()),
                 V = static_cast<uint64_t>(vocab_size);
  uint64_t floats = V * d                         // token embedding
                    + L * d                       // rms_att
                    + L * (d * d + 2 * kv * d + d * d)  // wq, wk, wv, wo
                    + L * d                       // rms_ffn
                    + L * 3 * h * d               // w1, w2, w3
                    + d                           // rms_final
                    + static_cast<uint64_t>(seq_len) * static_cast<uint64_t>(head_dim());  // freq_cis real + imag
  if (!shared_classifier) floats += V * d;
  return kLlama2cHeaderBytes + 4 * floats;
}

Llama2cConfig parse_llama2c_header(std::span<const std::byte> data, const std::string& name) {
  if (has_versioned_magic(data)) {
    int32_t version = -1;
    if (data.size() >= 8) std::memcpy(&version, data.data() + 4, 4);
    fail<FormatError>("{}: a llama2.c checkpoint of export version {} (magic \"ak42\"); only the legacy version-0 "
                      "format is read (export.py --version 0)", name, version);
  }
  if (data.size() < kLlama2cHeaderBytes)
    fail<FormatError>("{}: {} bytes, shorter than a llama2.c header ({} bytes)", name, data.size(),
                      kLlama2cHeaderBytes);
  int32_t h[7];
  std::memcpy(h, data.data(), sizeof h);
  Llama2cConfig c;
  const std::string why = check(h, c);
  if (!why.empty()) fail<FormatError>("{}: not a llama2.c checkpoint: header {}", name, why);
  return c;
}

bool looks_like_llama2c(std::span<const std::byte> data) {
  if (data.size() < kLlama2cHeaderBytes || has_versioned_magic(data)) return false;
  int32_t h[7];
  std::memcpy(h, data.data(), sizeof h);
  Llama2cConfig c;
  return check(h, c).empty() && c.file_size() == data.size();
}

namespace detail {

Parsed parse_llama2c(std::span<const std::byte> data, const std::string& file) {
  const Llama2cConfig c = parse_llama2c_header(data, file);
  const uint64_t want = c.file_size();
  if (want != data.size())
    fail<FormatError>("{}: llama2.c header (dim {}, hidden {}, {} layers, {} heads, {} kv heads, vocab {}{}, seq_len "
                      "{}) implies {} bytes but the file has {}{}", file, c.dim, c.hidden_dim, c.n_layers, c.n_heads,
                      c.n_kv_heads, c.vocab_size, c.shared_classifier ? " shared" : " separate", c.seq_len, want,
                      data.size(), data.size() < want ? " (truncated)" : "");
  const int64_t d = c.dim, hd = c.hidden_dim, kv = c.kv_dim(), V = c.vocab_size, L = c.n_layers;

  // Offsets (in floats) of each array, in file order.
  uint64_t at = kLlama2cHeaderBytes;
  auto take = [&](int64_t n) {
    const uint64_t o = at;
    at += 4 * static_cast<uint64_t>(n);
    return o;
  };
  const uint64_t emb = take(V * d), rms_att = take(L * d), wq = take(L * d * d), wk = take(L * kv * d),
                 wv = take(L * kv * d), wo = take(L * d * d), rms_ffn = take(L * d), w1 = take(L * hd * d),
                 w2 = take(L * d * hd), w3 = take(L * hd * d), rms_final = take(d);
  take(static_cast<int64_t>(c.seq_len) * c.head_dim());  // freq_cis_real, freq_cis_imag
  const uint64_t wcls = c.shared_classifier ? 0 : take(V * d);

  Parsed p;
  auto add = [&](std::string name, std::vector<int64_t> shape, uint64_t offset) {
    TensorInfo t;
    t.name = std::move(name);
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    t.offset = offset;
    t.nbytes = 4 * static_cast<uint64_t>(t.numel());
    p.tensors.push_back(std::move(t));
  };
  // The order of llama.cpp's converted files.
  add("token_embd.weight", {V, d}, emb);
  add("output_norm.weight", {d}, rms_final);
  if (!c.shared_classifier) add("output.weight", {V, d}, wcls);
  for (int64_t l = 0; l < L; ++l) {
    const std::string b = fmt::format("blk.{}.", l);
    const auto u = static_cast<uint64_t>(l);
    add(b + "attn_q.weight", {d, d}, wq + u * 4 * d * d);
    add(b + "attn_k.weight", {kv, d}, wk + u * 4 * kv * d);
    add(b + "attn_v.weight", {kv, d}, wv + u * 4 * kv * d);
    add(b + "attn_output.weight", {d, d}, wo + u * 4 * d * d);
    add(b + "attn_norm.weight", {d}, rms_att + u * 4 * d);
    add(b + "ffn_gate.weight", {hd, d}, w1 + u * 4 * hd * d);
    add(b + "ffn_down.weight", {d, hd}, w2 + u * 4 * d * hd);
    add(b + "ffn_up.weight", {hd, d}, w3 + u * 4 * hd * d);
    add(b + "ffn_norm.weight", {d}, rms_ffn + u * 4 * d);
  }

  std::string stem = std::filesystem::path(file).stem().string();
  if (stem.empty()) stem = "llama";
  auto u32 = [](int64_t v) { return MetaValue(static_cast<uint32_t>(v)); };
  p.metadata = {
      {"general.architecture", MetaValue(std::string("llama"))},
      {"general.name", MetaValue(std::move(stem))},
      {"llama.context_length", u32(c.seq_len)},
      {"llama.embedding_length", u32(c.dim)},
      {"llama.feed_forward_length", u32(c.hidden_dim)},
      {"llama.attention.head_count", u32(c.n_heads)},
      {"llama.attention.head_count_kv", u32(c.n_kv_heads)},
      {"llama.block_count", u32(c.n_layers)},
      {"llama.rope.dimension_count", u32(c.head_dim())},
      {"llama.attention.layer_norm_rms_epsilon", MetaValue(1e-5f)},
  };
  return p;
}

}  // namespace detail

std::unique_ptr<TensorFile> open_llama2c(const std::filesystem::path& path) {
  return detail::open_mapped(path, FileFormat::Llama2c);
}

std::unique_ptr<TensorFile> open_llama2c_memory(std::span<const std::byte> data, std::string name) {
  return detail::open_buffer(data, std::move(name), FileFormat::Llama2c);
}

}  // namespace qk::io
