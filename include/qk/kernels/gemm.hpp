#pragma once
// Quantized matrix products: packed int8 GEMM (W8A8) and int4 weight-only GEMM / GEMV.
//
// Weights are row-major [N, K] (out_features x in_features) and are packed once, with their scales and the
// sums the kernels need, into the layout every path (scalar, AVX2, AVX-512, AVX-512 VNNI) reads; docs/kernels.md
// draws the layouts. Activations are row-major [M, K]; outputs row-major [M, N] with a leading dimension.
// Every entry point takes an Exec: `threads` (0 = qk::resolve_threads(0), which honours QK_NUM_THREADS) and an
// optional forced path (default: active_isa()). Work is split over output tiles with OpenMP.
//
// Exactness: int32 results are the exact sums sum_k (a[m,k] - a_zero_point) * w[n,k] on every path (K <= 65536
// keeps every partial sum inside int32). The f32 epilogues use the same operations in the same order on every
// path and are bit-identical to the scalar reference; the f32-activation int4 product sums in a different order
// per path and agrees within the bound stated in docs/kernels.md.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qk/core/quantize.hpp"
#include "qk/kernels/isa.hpp"
#include "qk/kernels/weight_buffer.hpp"

namespace qk::kernels {

// Output columns per packed tile (one zmm of int32 / f32).
inline constexpr int64_t kTileN = 16;
// The largest K whose int32 sums cannot overflow: 255 * 128 * 65536 < 2^31.
inline constexpr int64_t kMaxK = 65536;

// Which kernel family packed weights were laid out for; every kernel checks it before reading.
enum class Layout : uint32_t {
  s8_n16k4 = 1,  // int8: tiles of 16 columns, K in groups of 4 consecutive bytes per column (VNNI order)
  w4_n16k8 = 2,  // int4: tiles of 16 columns, 8 K per column per 64-byte block, two nibbles per byte
};
const char* layout_name(Layout l);

struct Exec {
  int threads = 0;          // 0: qk::resolve_threads(0)
  std::optional<Isa> isa{};  // empty: active_isa(); set: that path (qk::InvalidArgument if the CPU lacks it)
};

// ------------------------------------------------------------------ int8 weights
struct PackedS8 {
  int64_t n = 0, k = 0;
  int64_t k_pad = 0;  // k rounded up to a multiple of 4 (padding weights are 0)
  Layout layout = Layout::s8_n16k4;
  // [n_tiles][k_pad / 4][16 columns][4 consecutive k] bytes; columns past n are zero.
  std::vector<int8_t, WeightAllocator<int8_t>> data;
  std::vector<float> scale;      // [n_tiles * 16] per-output-channel weight scale (1 for padding)
  std::vector<int32_t> col_sum;  // [n_tiles * 16] sum_k w[n, k], for activation zero-point compensation

  int64_t n_tiles() const { return (n + kTileN - 1) / kTileN; }
  int64_t tile_bytes() const { return k_pad * kTileN; }
  int8_t at(int64_t row, int64_t col) const;  // w[row, col] read back from the packed layout
  // Bytes a product streams: codes plus scales.
  size_t weight_bytes() const { return data.size() + scale.size() * sizeof(float); }
};

// Packs int8 weights w[N, K] (row stride ldw) with per-output-channel scales (nullptr: all 1).
PackedS8 pack_s8(const int8_t* w, int64_t n, int64_t k, int64_t ldw, const float* scale = nullptr);
// Packs an 8-bit signed symmetric per-channel (or per-tensor) QuantizedTensor.
PackedS8 pack_s8(const QuantizedTensor& q);

// C[M, N] (int32) = (A[M, K] - a_zero_point) * W^T, with uint8 activations. Every C element is written.
void gemm_s8(const uint8_t* a, int64_t m, int64_t lda, int32_t a_zero_point, const PackedS8& w, int32_t* c,
             int64_t ldc, const Exec& ex = {});
// The same with signed int8 activations (zero-point 0).
void gemm_s8(const int8_t* a, int64_t m, int64_t lda, const PackedS8& w, int32_t* c, int64_t ldc,
             const Exec& ex = {});
// Fused epilogue: C[m, n] = float(acc) * (a_scale[m] * w.scale[n]) + bias[n] (bias may be nullptr).
void gemm_s8_f32(const uint8_t* a, int64_t m, int64_t lda, int32_t a_zero_point, const float* a_scale,
                 const PackedS8& w, const float* bias, float* c, int64_t ldc, const Exec& ex = {});

// Per-token (per-row) activation quantization to uint8 with zero-point 128: q = clamp(round(x / s), -127, 127)
// + 128 with s = max|x| / 127 (1 for an all-zero row), into q[m, k] (row stride k) and scale[m].
// NaN/Inf input: qk::NumericError.
void quantize_rows_u8(const float* x, int64_t m, int64_t k, int64_t ldx, uint8_t* q, float* scale);
// Y = dynamically quantized X (per row, as above) times W, then scales and bias: the W8A8 linear layer.
void linear_w8a8_dynamic(const float* x, int64_t m, int64_t ldx, const PackedS8& w, const float* bias, float* y,
                         int64_t ldy, const Exec& ex = {});
// Static activation quantization with a given scale and uint8 zero-point: q = clamp(round(x / s) + zp, 0, 255).
void linear_w8a8_static(const float* x, int64_t m, int64_t ldx, float a_scale, int32_t a_zero_point,
                        const PackedS8& w, const float* bias, float* y, int64_t ldy, const Exec& ex = {});

// ------------------------------------------------------------------ int4 weights
struct PackedW4 {
  int64_t n = 0, k = 0, group = 0;
  bool has_zero = false;  // false: every zero-point is 8 (symmetric codes -8..7 stored as 0..15)
  Layout layout = Layout::w4_n16k8;
  // [n_tiles][k / 8][64]: byte 4c + j of block b holds, for column c of the tile, code(k = 8b + j) in its low
  // nibble and code(k = 8b + 4 + j) in its high nibble. Codes are 0..15; w = scale * (code - zero).
  std::vector<uint8_t, WeightAllocator<uint8_t>> data;
  std::vector<uint16_t> scale;  // fp16 [n_tiles][groups][16]
  std::vector<uint8_t> zero;    // [n_tiles][groups][16] when has_zero, else empty
  // GPTQ act-order: packed column j is input column perm[j], ordered so that every group is contiguous (packed
  // column j is in group j / group). Empty: the identity. The products gather the activations' columns in this
  // order before quantizing them; code() and the other accessors take packed positions.
  std::vector<int32_t> perm;

  int64_t n_tiles() const { return (n + kTileN - 1) / kTileN; }
  int64_t groups() const { return k / group; }
  int64_t tile_bytes() const { return k * kTileN / 2; }
  int code(int64_t row, int64_t col) const;
  float scale_at(int64_t row, int64_t g) const;
  int zero_at(int64_t row, int64_t g) const;
  size_t weight_bytes() const { return data.size() + scale.size() * sizeof(uint16_t) + zero.size(); }
};

// Packs 4-bit codes[N, K] (one code 0..15 per byte, row stride ldc) with per-group scales[N, K/group] (rounded
// to fp16) and optional zero-points[N, K/group] in 0..15 (nullptr: 8). group: a multiple of 8 dividing K
// (32, 64, 128 in practice).
PackedW4 pack_w4(const uint8_t* codes, int64_t n, int64_t k, int64_t ldc, int64_t group, const float* scales,
                 const uint8_t* zeros = nullptr);
// The same with act-order group indices (GPTQ desc_act): g_idx[j] is the group (0 .. K/group - 1) of input
// column j, and scales / zeros are indexed by group id. Each group must hold exactly `group` columns. The columns
// are reordered by group (stably), and the order is recorded in PackedW4::perm. g_idx nullptr: as above.
PackedW4 pack_w4(const uint8_t* codes, int64_t n, int64_t k, int64_t ldc, int64_t group, const float* scales,
                 const uint8_t* zeros, const int32_t* g_idx);
// Packs a 4-bit per-group QuantizedTensor (signed symmetric or unsigned asymmetric codes; g_idx honoured).
PackedW4 pack_w4(const QuantizedTensor& q);

// Activations quantized for the int4 kernels: symmetric int8 codes per row or per K-block.
struct QuantizedActs {
  int64_t m = 0, k = 0, groups = 0;  // groups = weight groups per row (k / weight group)
  std::vector<int8_t> q;             // [m, k]
  std::vector<float> scale;          // [m, groups]: the activation scale of each weight group
  std::vector<int32_t> sum;          // [m, groups]: sum of the codes in each group (zero-point compensation)
  std::vector<int32_t> perm;         // column order of q: q[., j] is x[., perm[j]] (empty: x's own order)
};
enum class ActQuant { per_row, per_group };
// q = clamp(round(x / s), -127, 127), s = max|x| / 127 over the row (per_row) or over each weight group.
QuantizedActs quantize_acts(const float* x, int64_t m, int64_t k, int64_t ldx, int64_t group, ActQuant mode);
// The same for the weights w: gathers x's columns in w.perm's order first when w has one (act-order). gemm_w4
// with act-order weights needs activations quantized this way (it checks QuantizedActs::perm).
QuantizedActs quantize_acts(const float* x, int64_t m, int64_t ldx, const PackedW4& w, ActQuant mode);

// Y[m, n] = sum_g float(dot_g - zero[n,g] * sum_g) * (w_scale[n,g] * a_scale[m,g]), accumulated over g in order
// with fused multiply-adds, then + bias[n]. M = 1 runs the dedicated GEMV kernel.
void gemm_w4(const QuantizedActs& a, const PackedW4& w, const float* bias, float* y, int64_t ldy,
             const Exec& ex = {});
// Quantizes X dynamically (mode) and calls the above.
void gemm_w4(const float* x, int64_t m, int64_t ldx, const PackedW4& w, const float* bias, float* y, int64_t ldy,
             ActQuant mode = ActQuant::per_row, const Exec& ex = {});
// f32 activations, weights dequantized on the fly: Y = X * dequant(W)^T + bias.
void gemm_w4_f32(const float* x, int64_t m, int64_t ldx, const PackedW4& w, const float* bias, float* y,
                 int64_t ldy, const Exec& ex = {});

}  // namespace qk::kernels
