#pragma once
// ggml block encodings (the tensor types of GGUF files): block layouts, the type table, encoders that give the
// same bytes as ggml's reference quantizer, decoders that give the same floats as ggml's to_float, and GgmlGrid,
// a WeightGrid through which GPTQ/AWQ/RTN can quantize onto these types.
//
// Layouts and constants: ggml/src/ggml-common.h (block_* structs), ggml/src/ggml.c (type_traits),
// ggml/src/ggml-quants.c (quantize_row_*_ref, quantize_*, dequantize_row_*), llama.cpp commit c392e50.
// Layouts are documented in docs/formats.md ("ggml block types").
//
// A row of `cols` floats is encoded as cols / block_elems consecutive blocks; a [rows, cols] matrix as its rows
// one after the other, which is exactly how a GGUF tensor with ne = {cols, rows} stores it.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "qk/methods/grid.hpp"

namespace qk::ggml {

inline constexpr int QK_K = 256;  // super-block of the K-quants

// ggml type ids (ggml.h enum ggml_type).
enum class Type : uint32_t {
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,  // activations only (dot products); not a storage type of GGUF files
  IQ4_NL = 20,
};

// ---------------------------------------------------------------- blocks (fp16 fields held as raw uint16_t)
// x = d * (q - 8)
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];  // byte j: element j (low nibble), element j + 16 (high nibble)
};
// x = d * q + m
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
// x = d * (q - 16), q = low nibble | bit j of qh << 4
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // bit j (little-endian u32): fifth bit of element j
  uint8_t qs[16];
};
// x = d * q + m
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
// x = d * q
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
// 16 sub-blocks of 16: x = d * (sc & 15) * q - dmin * (sc >> 4), q 2-bit
struct BlockQ2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4), sc 6-bit, q 3-bit (2 low bits in qs, high bit in hmask)
struct BlockQ3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 8 sub-blocks of 32: x = d * sc * q - dmin * m, sc and m 6-bit, q 4-bit
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[QK_K / 2];
};
// 8 sub-blocks of 32: as Q4_K with a fifth bit per element in qh
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
// 16 sub-blocks of 16: x = d * sc * (q - 32), sc int8, q 6-bit (4 low bits in ql, 2 high bits in qh)
struct BlockQ6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;
};
// x = d * q with a float d; bsums = sums of 16 consecutive q (for dot products)
struct BlockQ8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};
// x = d * kvalues_iq4nl[q]
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);

// The non-uniform 4-bit table of IQ4_NL (ggml-quants.c kvalues_iq4nl).
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// ---------------------------------------------------------------- type table
struct TypeInfo {
  Type type;
  std::string_view name;  // ggml's spelling: "q4_0", "q4_K", "iq4_nl"
  int64_t block_elems;    // elements per block
  int64_t block_bytes;    // bytes per block
  double bits_per_weight;
  bool storage;           // a weight type GGUF files hold (false for Q8_K)
  bool uses_importance;   // the encoder takes an importance vector (ggml's quant_weights)
};

std::span<const TypeInfo> types();
const TypeInfo& info(Type t);
inline uint32_t type_id(Type t) { return static_cast<uint32_t>(t); }
// Case-insensitive ggml name ("q4_k", "Q4_K"); nullopt when unknown.
std::optional<Type> type_from_name(std::string_view name);
std::optional<Type> type_from_id(uint32_t id);

// Bytes of one encoded row of `cols` elements. InvalidArgument when cols is not a positive multiple of the block.
int64_t row_size(Type t, int64_t cols);

// Encodes rows x cols floats (row-major) into rows * row_size(t, cols) bytes at dst.
// importance: nullptr for ggml's reference (round-to-nearest) quantizer, or `cols` non-negative weights, one per
// column, as llama.cpp's imatrix passes them (quantize_<type>(..., quant_weights)); Q8_0 and Q8_K ignore it.
// threads: 0 = qk::resolve_threads default. Throws InvalidArgument (shape, negative/non-finite importance) and
// NumericError (NaN/Inf input).
void quantize_rows(Type t, const float* src, int64_t rows, int64_t cols, void* dst, const float* importance = nullptr,
                   int threads = 0);
// The same into a new buffer of rows * row_size(t, cols) bytes.
std::vector<uint8_t> quantize(Type t, const float* src, int64_t rows, int64_t cols, const float* importance = nullptr,
                              int threads = 0);
// Alias of quantize() (a literal nullptr as fifth argument is ambiguous here: use quantize() for that).
inline std::vector<uint8_t> quantize_rows(Type t, const float* src, int64_t rows, int64_t cols,
                                          const float* importance = nullptr, int threads = 0) {
  return quantize(t, src, rows, cols, importance, threads);
}
// Decodes rows * row_size(t, cols) bytes into rows x cols floats (exactly ggml's to_float).
void dequantize_rows(Type t, const void* src, int64_t rows, int64_t cols, float* dst, int threads = 0);

// ---------------------------------------------------------------- GgmlGrid
// WeightGrid over a ggml block type (all types above but Q8_K). fit() encodes each row's block (or super-block)
// of the current weights exactly as quantize_rows would (with importance: the importance-weighted search; for the
// 32-element types sigma2 then comes from the block unless set_row_statistics gave the whole rows) and keeps its
// scales;
// quantize_column() rounds a column onto those scales with ggml's own final rounding rule and writes the codes into
// the block. encode() returns the [rows, cols] tensor bytes; dequantize_rows of them reproduces every value
// quantize_column returned. Without weight updates (pure RTN) and without importance, encode() equals
// quantize_rows byte for byte.
class GgmlGrid final : public WeightGrid {
 public:
  explicit GgmlGrid(Type t);
  int64_t block_size() const override;
  void reset(int64_t rows, int64_t cols) override;
  void fit(int64_t c0, const Eigen::Ref<const Eigen::MatrixXf>& W, const float* importance) override;
  void quantize_column(int64_t c, const Eigen::Ref<const Eigen::VectorXf>& w,
                       Eigen::Ref<Eigen::VectorXf> out) override;
  const char* name() const override;

  Type type() const { return type_; }
  // Optional, after reset(): the whole [rows, cols] row-major weight, from which the 32-element types' importance-
  // weighted fit takes sigma2 = mean(x^2) over each entire row, as quantize_rows does (fit() alone sees only the
  // block), so the fitted scales equal quantize_rows(..., importance)'s. (Their codes are still rounded onto those
  // scales; ggml keeps the codes of its search's best trial there.)
  void set_row_statistics(const float* W);
  // The encoded tensor (rows * row_size bytes). InvalidArgument when a block was never fitted.
  std::vector<uint8_t> encode() const;

 private:
  Type type_;
  int64_t rows_ = 0, cols_ = 0, nblocks_ = 0, row_bytes_ = 0, nsub_ = 1;
  std::vector<uint8_t> bytes_;
  std::vector<uint8_t> fitted_;  // per block column
  // Per (row, block, sub-block): the rounding parameters (a, b) of that type's rule and the decode (dl, ml).
  std::vector<float> a_, b_, dl_, ml_;
  std::vector<float> row_sigma2_;  // empty unless set_row_statistics was called
};

}  // namespace qk::ggml
