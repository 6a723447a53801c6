#pragma once
// The Hugging Face GPTQ checkpoint layout (AutoGPTQ / GPTQModel "gptq" format, read by transformers and vLLM):
// export a QuantizedTensor into the four tensors of one linear layer and import them back.
//
// Layout (AutoGPTQ qlinear pack(); facts in docs/formats.md). K = in_features, N = out_features, b = bits,
// g = group size (per-channel: one group of K), G = ceil(K / g):
//   qweight int32 [K·b/32, N]  codes packed along the INPUT dimension: for each output column n the K codes form
//                              a little-endian bit stream (code k at stream bits [k·b, k·b + b)), and word r of
//                              column n holds stream bits [32r, 32r + 32). For b = 2, 4, 8 word r holds inputs
//                              p·r .. p·r + p - 1 (p = 32/b) from the least significant bits up; for b = 3 codes
//                              cross word boundaries (32 codes in 3 words), exactly AutoGPTQ's 3-bit packing.
//   qzeros  int32 [G, N·b/32]  zero-points packed the same way along the OUTPUT dimension.
//   scales  fp16  [G, N]
//   g_idx   int32 [K]          group of each input column (k / g, or GPTQ act-order's assignment).
// Dequantization: W[n, k] = scales[g_idx[k], n] · (q[k, n] - zero[g_idx[k], n]), codes unsigned in [0, 2^b).
// Zero-point convention: format "gptq" (v1, the published checkpoints) stores zero - 1, so a symmetric 4-bit zero
// of 8 is stored as 7; "gptq_v2" (GPTQModel) stores the zero itself. A zero of 0 cannot be written in v1 (it would
// be stored as -1, i.e. all ones, and read back as 2^b): pack() refuses it with a FormatError naming the group.
//
// A QuantizedTensor [N, K] (rows = outputs) maps onto this with code = u (the stored unsigned code q - qmin) and
// zero = zero_point - qmin, so signed and unsigned schemes both export; import gives an unsigned scheme.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/core/pack.hpp"
#include "qk/core/quantize.hpp"

namespace qk::gptq_hf {

enum class ZeroFormat { V1, V2 };  // "gptq" stores zero - 1; "gptq_v2" stores zero

// quantize_config.json of a GPTQ checkpoint.
struct QuantizeConfig {
  int bits = 4;
  int64_t group_size = 128;  // -1: one group per output channel
  bool desc_act = false;
  bool sym = true;
  bool static_groups = false;
  bool true_sequential = true;
  double damp_percent = 0.01;
  std::string quant_method = "gptq";
  std::string checkpoint_format = "gptq";  // "gptq" (v1 zeros) or "gptq_v2"

  ZeroFormat zero_format() const { return checkpoint_format == "gptq_v2" ? ZeroFormat::V2 : ZeroFormat::V1; }
  void validate() const;
};

// JSON text of the config (the keys AutoGPTQ, GPTQModel and transformers read).
std::string to_json(const QuantizeConfig& c);
// Parses quantize_config.json (or the "quantization_config" object of a config.json). Unknown keys are ignored;
// a missing "bits" or "group_size", a wrong value type or bad JSON: FormatError naming `what`.
QuantizeConfig config_from_json(std::string_view json, std::string_view what = "quantize_config.json");

// One linear layer in checkpoint layout (row-major arrays, shapes in the comments above).
struct PackedLinear {
  int bits = 4;
  int64_t in_features = 0;   // K
  int64_t out_features = 0;  // N
  int64_t group_size = 128;  // g as in the config (-1: per channel)
  bool sym = true;           // informational: carried into the imported scheme
  std::vector<int32_t> qweight;
  std::vector<int32_t> qzeros;
  std::vector<uint16_t> scales;  // fp16 bits
  std::vector<int32_t> g_idx;

  int64_t group_span() const { return group_size <= 0 ? in_features : group_size; }
  int64_t groups() const { return (in_features + group_span() - 1) / group_span(); }
  int64_t qweight_rows() const { return in_features * bits / 32; }
  int64_t qzeros_cols() const { return out_features * bits / 32; }
  // Checks bits, shapes against in/out features and group size, and g_idx values; FormatError naming `what`.
  void validate(std::string_view what = "gptq layer") const;
};

namespace detail {

// Writes a b-bit code into element `i` of a column of 32-bit words that are `stride` apart (LSB-first stream).
inline void put_code(int32_t* words, int64_t stride, int64_t i, int bits, uint32_t code) {
  const int64_t pos = i * bits;
  const int64_t w = pos / 32;
  const int shift = static_cast<int>(pos % 32);
  auto* lo = reinterpret_cast<uint32_t*>(words + w * stride);
  *lo |= code << shift;
  if (shift + bits > 32) {
    auto* hi = reinterpret_cast<uint32_t*>(words + (w + 1) * stride);
    *hi |= code >> (32 - shift);
  }
}

inline uint32_t get_code(const int32_t* words, int64_t stride, int64_t i, int bits) {
  const int64_t pos = i * bits;
  const int64_t w = pos / 32;
  const int shift = static_cast<int>(pos % 32);
  uint64_t v = static_cast<uint32_t>(words[w * stride]);
  if (shift + bits > 32) v |= static_cast<uint64_t>(static_cast<uint32_t>(words[(w + 1) * stride])) << 32;
  return static_cast<uint32_t>((v >> shift) & ((1u << bits) - 1u));
}

inline void check_bits(int bits, std::string_view what) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    fail<FormatError>("{}: GPTQ checkpoints hold 2, 3, 4 or 8-bit codes, not {}", what, bits);
}

}  // namespace detail

inline void QuantizeConfig::validate() const {
  detail::check_bits(bits, "quantize_config");
  if (group_size == 0 || group_size < -1)
    fail<FormatError>("quantize_config: group_size must be positive or -1, got {}", group_size);
  if (quant_method != "gptq") fail<FormatError>("quantize_config: quant_method is '{}', not 'gptq'", quant_method);
  if (checkpoint_format != "gptq" && checkpoint_format != "gptq_v2")
    fail<FormatError>("quantize_config: checkpoint_format '{}' is neither 'gptq' nor 'gptq_v2'", checkpoint_format);
}

inline void PackedLinear::validate(std::string_view what) const {
  detail::check_bits(bits, what);
  if (in_features <= 0 || out_features <= 0)
    fail<FormatError>("{}: empty shape [{}, {}]", what, out_features, in_features);
  if ((in_features * bits) % 32 != 0)
    fail<FormatError>("{}: {} input features of {} bits do not fill whole 32-bit words", what, in_features, bits);
  if ((out_features * bits) % 32 != 0)
    fail<FormatError>("{}: {} output features of {} bits do not fill whole 32-bit zero words", what, out_features,
                      bits);
  if (group_size == 0 || group_size < -1) fail<FormatError>("{}: bad group size {}", what, group_size);
  const auto expect = [&](size_t got, int64_t want, const char* name) {
    if (got != static_cast<size_t>(want))
      fail<FormatError>("{}: {} has {} elements, expected {}", what, name, got, want);
  };
  expect(qweight.size(), qweight_rows() * out_features, "qweight");
  expect(qzeros.size(), groups() * qzeros_cols(), "qzeros");
  expect(scales.size(), groups() * out_features, "scales");
  expect(g_idx.size(), in_features, "g_idx");
  for (size_t k = 0; k < g_idx.size(); ++k)
    if (g_idx[k] < 0 || g_idx[k] >= groups())
      fail<FormatError>("{}: g_idx[{}] = {} is outside [0, {})", what, k, g_idx[k], groups());
}

// Exports q (rows = out_features N, cols = in_features K) to checkpoint layout. Scales are rounded to fp16 (the
// codes are kept: quantize with fp16-representable scales, as qtool does, for an exact round trip).
// Throws FormatError when the shape cannot be packed, a scale is not representable in fp16, or (v1) a zero is 0.
inline PackedLinear pack(const QuantizedTensor& q, ZeroFormat zf = ZeroFormat::V1, std::string_view what = "tensor") {
  detail::check_bits(q.scheme.bits, what);
  PackedLinear p;
  p.bits = q.scheme.bits;
  p.in_features = q.cols;
  p.out_features = q.rows;
  p.sym = q.scheme.symmetric;
  const bool grouped = q.scheme.granularity == Granularity::PerGroup;
  p.group_size = grouped ? q.scheme.group_size : -1;
  const int64_t K = q.cols, N = q.rows, b = q.scheme.bits;
  if (K <= 0 || N <= 0) fail<FormatError>("{}: empty shape [{}, {}]", what, N, K);
  if ((K * b) % 32 != 0)
    fail<FormatError>("{}: {} input features of {} bits do not fill whole 32-bit words", what, K, b);
  if ((N * b) % 32 != 0)
    fail<FormatError>("{}: {} output features of {} bits do not fill whole 32-bit words", what, N, b);
  const int64_t G = p.groups();
  // group of each input column
  p.g_idx.resize(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    const int64_t g = q.g_idx.empty() ? (grouped ? k / q.scheme.group_size : 0) : q.g_idx[static_cast<size_t>(k)];
    if (g < 0 || g >= G) fail<FormatError>("{}: column {} has group {}, outside [0, {})", what, k, g, G);
    p.g_idx[static_cast<size_t>(k)] = static_cast<int32_t>(g);
  }
  const int64_t prow_n = q.params.rows(), pcols = q.params.cols();
  if (pcols < G && q.scheme.granularity != Granularity::PerTensor)
    fail<FormatError>("{}: {} parameter columns for {} groups", what, pcols, G);
  const int qmin = q.scheme.qmin();
  const int zmax = (1 << b) - 1;
  p.scales.assign(static_cast<size_t>(G * N), 0);
  p.qzeros.assign(static_cast<size_t>(G * p.qzeros_cols()), 0);
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t pr = prow_n == 1 ? 0 : n, pc = pcols == 1 ? 0 : g;
      const float s = q.params.scale(pr, pc);
      const uint16_t h = fp32_to_fp16(s);
      const float back = fp16_to_fp32(h);
      if (!(back > 0.0f) || !std::isfinite(back))
        fail<FormatError>("{}: scale {} of output {} group {} is not a positive finite fp16 value", what, s, n, g);
      p.scales[static_cast<size_t>(g * N + n)] = h;
      int z = q.params.zero_point(pr, pc) - qmin;
      if (z < 0 || z > zmax)
        fail<FormatError>("{}: zero-point {} of output {} group {} is outside [0, {}]", what, z, n, g, zmax);
      if (zf == ZeroFormat::V1) {
        if (z == 0)
          fail<FormatError>(
              "{}: zero-point 0 (output {}, group {}) cannot be stored in the v1 'gptq' format (stored as zero - 1); "
              "use a symmetric scheme or checkpoint_format 'gptq_v2'",
              what, n, g);
        z -= 1;
      }
      detail::put_code(p.qzeros.data() + g * p.qzeros_cols(), 1, n, static_cast<int>(b), static_cast<uint32_t>(z));
    }
  }
  // codes: row n of q is column n of qweight
  p.qweight.assign(static_cast<size_t>(p.qweight_rows() * N), 0);
  std::vector<uint8_t> codes(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    unpack_bits(std::span<const uint8_t>(q.row_data(n), static_cast<size_t>(q.row_bytes())), static_cast<int>(b),
                codes);
    int32_t* col = p.qweight.data() + n;
    for (int64_t k = 0; k < K; ++k) detail::put_code(col, N, k, static_cast<int>(b), codes[static_cast<size_t>(k)]);
  }
  return p;
}

// Imports a layer into an unsigned QuantizedTensor [N, K] (per-group, or per-channel when group_size is -1 or
// covers K). g_idx is kept when it differs from k / g (act-order), and always when K is not a multiple of g.
inline QuantizedTensor unpack(const PackedLinear& p, ZeroFormat zf = ZeroFormat::V1, std::string_view what = "tensor") {
  p.validate(what);
  const int64_t K = p.in_features, N = p.out_features, G = p.groups(), span = p.group_span();
  const int b = p.bits;
  QuantizedTensor q;
  q.rows = N;
  q.cols = K;
  q.scheme.bits = b;
  q.scheme.is_signed = false;
  q.scheme.symmetric = p.sym;
  if (G == 1) {
    q.scheme.granularity = Granularity::PerChannel;
  } else {
    q.scheme.granularity = Granularity::PerGroup;
    q.scheme.group_size = span;
  }
  bool plain = K % span == 0;
  for (int64_t k = 0; plain && k < K; ++k) plain = p.g_idx[static_cast<size_t>(k)] == k / span;
  if (!plain) q.g_idx = p.g_idx;
  q.params = QuantParams(N, G);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      q.params.scale(n, g) = fp16_to_fp32(p.scales[static_cast<size_t>(g * N + n)]);
      const int z = static_cast<int>(detail::get_code(p.qzeros.data() + g * p.qzeros_cols(), 1, n, b));
      q.params.zero_point(n, g) = zf == ZeroFormat::V1 ? z + 1 : z;
    }
  q.packed.assign(static_cast<size_t>(q.row_bytes() * N), 0);
  std::vector<uint8_t> codes(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    const int32_t* col = p.qweight.data() + n;
    for (int64_t k = 0; k < K; ++k) codes[static_cast<size_t>(k)] = static_cast<uint8_t>(detail::get_code(col, N, k, b));
    pack_bits(codes, b, std::span<uint8_t>(q.row_data(n), static_cast<size_t>(q.row_bytes())));
  }
  return q;
}

// Dequantizes a layer straight from checkpoint layout into a float [N, K] matrix (rows = outputs).
inline RowMatrixXf dequantize(const PackedLinear& p, ZeroFormat zf = ZeroFormat::V1, std::string_view what = "tensor") {
  p.validate(what);
  const int64_t K = p.in_features, N = p.out_features;
  const int b = p.bits;
  const int add = zf == ZeroFormat::V1 ? 1 : 0;
  RowMatrixXf W(N, K);
  for (int64_t n = 0; n < N; ++n) {
    const int32_t* col = p.qweight.data() + n;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = p.g_idx[static_cast<size_t>(k)];
      const float s = fp16_to_fp32(p.scales[static_cast<size_t>(g * N + n)]);
      const int z = static_cast<int>(detail::get_code(p.qzeros.data() + g * p.qzeros_cols(), 1, n, b)) + add;
      W(n, k) = static_cast<float>(static_cast<int>(detail::get_code(col, N, k, b)) - z) * s;
    }
  }
  return W;
}

// Tensor names of a layer whose float weight is `<prefix>.weight`: <prefix>.qweight, .qzeros, .scales, .g_idx.
inline std::string layer_prefix(std::string_view weight_name) {
  constexpr std::string_view suffix = ".weight";
  if (weight_name.size() > suffix.size() && weight_name.substr(weight_name.size() - suffix.size()) == suffix)
    return std::string(weight_name.substr(0, weight_name.size() - suffix.size()));
  return std::string(weight_name);
}

}  // namespace qk::gptq_hf
