#pragma once
// Internal pieces of the ggml block encodings shared by ggml.cpp (rows), ggml_encode_legacy.cpp / ggml_encode_k.cpp (blocks) and
// ggml_grid.cpp (GgmlGrid). Not installed.
#include <bit>
#include <cstdint>

#include "qk/core/half.hpp"
#include "qk/formats/ggml.hpp"

namespace qk::ggml::detail {

// Round to nearest (ties to even) through the float magic number 1.5 * 2^23, valid for |x| <= 2^22 - 1; the
// helper ggml-quants.c uses (nearest_int), reproduced because bit-exactness depends on it.
inline int nearest_int(float x) {
  const float v = x + 12582912.f;
  const int32_t i = std::bit_cast<int32_t>(v);
  return (i & 0x007fffff) - 0x00400000;
}

// roundf (halves away from zero) as an integer, for |x| < 2^31, without a libm call: x - trunc(x) is exact.
inline int round_half_away(float x) {
  int i = static_cast<int>(x);
  const float f = x - static_cast<float>(i);
  if (f >= 0.5f) ++i;
  else if (f <= -0.5f) --i;
  return i;
}

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }
inline uint16_t f2h(float f) { return fp32_to_fp16(f); }

// What a 32-element block type rounds with: code = f(x * id (+ offset)), see GgmlGrid.
struct LegacyAux {
  float id = 0.0f;  // inverse step used for the codes
  float mn = 0.0f;  // the minimum subtracted first (Q4_1, Q5_1)
};

// One block each. qw: nullptr for ggml's reference quantizer (quantize_row_<t>_ref), else the block's
// importance weights (the quantize_row_<t>_impl path); sigma2 is the row statistic the impl path needs.
void encode_q4_0(const float* x, const float* qw, float sigma2, BlockQ4_0* y, LegacyAux* aux);
void encode_q4_1(const float* x, const float* qw, float sigma2, BlockQ4_1* y, LegacyAux* aux);
void encode_q5_0(const float* x, const float* qw, float sigma2, BlockQ5_0* y, LegacyAux* aux);
void encode_q5_1(const float* x, const float* qw, float sigma2, BlockQ5_1* y, LegacyAux* aux);
void encode_q8_0(const float* x, BlockQ8_0* y, LegacyAux* aux);
void encode_iq4_nl(const float* x, const float* qw, BlockIQ4_NL* y, LegacyAux* aux);
void encode_q2_K(const float* x, const float* qw, BlockQ2_K* y);
void encode_q3_K(const float* x, const float* qw, BlockQ3_K* y);
void encode_q4_K(const float* x, const float* qw, BlockQ4_K* y);
void encode_q5_K(const float* x, const float* qw, BlockQ5_K* y);
// Two consecutive super-blocks at once (the same bytes as two single calls, faster); qw covers both.
void encode_q4_K_pair(const float* x, const float* qw, BlockQ4_K* y);
void encode_q5_K_pair(const float* x, const float* qw, BlockQ5_K* y);
void encode_q6_K(const float* x, const float* qw, BlockQ6_K* y);
void encode_q8_K(const float* x, BlockQ8_K* y);

// Test hooks: the one-group scale searches (the scalar oracle, make_qkx2/3_quants and make_qx_quants) and their
// batched forms over 16 groups of n (16 or 32) values; see ggml_search_batch.hpp.
float search_affine_one(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, float rmin,
                        float rdelta, int nstep, bool use_mad, bool strict);
void search_affine_lanes(int n, int nmax, const float* x, const float* w, uint8_t* L, float* scales, float* mins,
                         float rmin, float rdelta, int nstep, bool use_mad, bool strict);
float search_sym_one(int n, int nmax, const float* x, int8_t* L, const float* qw);
void search_sym_lanes(int nmax, const float* x, int8_t* L, const float* qw, float* scales);

// One row (n a multiple of the block), importance optional (n weights).
void quantize_row(Type t, const float* x, int64_t n, void* y, const float* importance);
void dequantize_row(Type t, const void* x, int64_t n, float* y);
// False when the encoded row y of x does not hold x: it decodes to a non-finite value (a block scale beyond fp16)
// or a block's largest weight lost more than half its magnitude. Cheap for blocks whose |x| stay inside the fp16
// range; allocates nothing and never throws (it runs inside parallel regions).
bool encoded_row_finite(Type t, const float* x, int64_t n, const void* y) noexcept;

// Index of the nearest entry of a sorted 16-entry table; between two entries the lower one unless the upper is
// strictly closer (ggml-quants.c best_index_int8). ggml bisects; counting the entries not above x finds the same
// bracket [ml, ml + 1] (also for NaN, which bisection sends to the top) without unpredictable branches.
inline int nearest_index(const int8_t* val, float x) {
  if (x <= static_cast<float>(val[0])) return 0;
  if (x >= static_cast<float>(val[15])) return 15;
  int ml = 0;
  for (int k = 1; k < 15; ++k) ml += !(x < static_cast<float>(val[k]));
  const int mu = ml + 1;
  return x - static_cast<float>(val[ml]) < static_cast<float>(val[mu]) - x ? ml : mu;
}

// 6-bit scale and min j (0..7) of Q4_K / Q5_K (ggml-quants.c get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// 6-bit signed scale j (0..15) of Q3_K, minus 32.
inline int8_t scale_q3_K(int j, const uint8_t* s) {
  const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return static_cast<int8_t>((lo | (hi << 4)) - 32);
}

}  // namespace qk::ggml::detail
