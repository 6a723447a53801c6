// AVX2 path of the ggml block products (also run for the avxvnni and avx512 paths). One block of 32 codes is one
// ymm: vpmaddubsw multiplies unsigned by signed bytes into int16 pairs and vpmaddwd(.., 1) widens them to eight
// int32 partial sums, all exact:
//   Q4_0: the nibbles 0..15 as the unsigned operand, pairs <= 2 * 15 * 127; subtracting 8 times the sum of the
//         four activations each lane meets (the same two instructions on set1(8)) leaves in every lane exactly
//         its four products q * a (a single -8 * sum(a) per block would give the same integer sum, but lanes
//         that cancel, and float rounding relative to 8 * |sum a| instead of to the products).
//   Q8_0: |w| as the unsigned operand and a with w's sign as the signed one (|w| * sign(a, w) = w * a), pairs
//         <= 2 * 128 * 127 < 2^15 because the activations are -127..127 (ggml_dot.cpp refuses -128).
// The eight partials of a block become floats (exact) and meet d_w * d_a in one fused multiply-add per block, so
// each output keeps eight float partial sums, added at the end.
#include <immintrin.h>

#include <cstring>

#include "ggml_dot_internal.hpp"

namespace qk::kernels::detail {
namespace ggml_avx2 {
namespace {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Rows [m0, m0 + MR) x W rows [n0, n0 + NR), all blocks.
template <int MR, int NR, bool Q4>
void block(const GgmlDotProblem& p, int64_t m0, int64_t n0) {
  constexpr int64_t kBlockBytes = Q4 ? 18 : 34;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  [[maybe_unused]] const __m256i eight = _mm256_set1_epi8(8);
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < p.nb; ++b) {
    __m256i wv[NR], wabs[NR];
    float dw[NR];
    for (int j = 0; j < NR; ++j) {
      const uint8_t* blk = p.w + (n0 + j) * p.row_bytes + b * kBlockBytes;
      dw[j] = _cvtsh_ss(load_u16(blk));
      if constexpr (Q4) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
        wv[j] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), low4);
      } else {
        wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
        wabs[j] = _mm256_abs_epi8(wv[j]);
      }
    }
    for (int i = 0; i < MR; ++i) {
      const int64_t m = m0 + i;
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.qa + m * p.k + b * 32));
      const float da = p.da[m * p.nb + b];
      [[maybe_unused]] __m256i corr;
      if constexpr (Q4) corr = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, av), ones);
      for (int j = 0; j < NR; ++j) {
        __m256i s32;
        if constexpr (Q4) {
          s32 = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv[j], av), ones), corr);
        } else {
          s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs[j], _mm256_sign_epi8(av, wv[j])), ones);
        }
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_set1_ps(dw[j] * da), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) p.y[(m0 + i) * p.ldy + n0 + j] = hsum(acc[i][j]);
}

// M = 1: one W row at a time (the matrix read as one sequential stream, as in the AVX-512 VNNI path) with four
// accumulators over consecutive blocks.
template <bool Q4>
void gemv_row(const GgmlDotProblem& p, int64_t n) {
  constexpr int U = 4;
  constexpr int64_t kBlockBytes = Q4 ? 18 : 34;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i eight = _mm256_set1_epi8(8);
  const uint8_t* row = p.w + n * p.row_bytes;
  // acc += float(exact lane sums of block b's w * a) * (d_w * d_a)
  auto step = [&](__m256 acc, int64_t b) {
    const uint8_t* blk = row + b * kBlockBytes;
    const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.qa + b * 32));
    __m256i s32;
    if constexpr (Q4) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
      const __m256i wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), low4);
      s32 = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv, av), ones),
                             _mm256_madd_epi16(_mm256_maddubs_epi16(eight, av), ones));
    } else {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv)), ones);
    }
    const float d = _cvtsh_ss(load_u16(blk)) * p.da[b];
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_set1_ps(d), acc);
  };
  __m256 acc[U];
  for (int u = 0; u < U; ++u) acc[u] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + U <= p.nb; b += U)
    for (int u = 0; u < U; ++u) acc[u] = step(acc[u], b + u);
  for (; b < p.nb; ++b) acc[0] = step(acc[0], b);
  p.y[n] = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

template <int MR, int NR, bool Q4>
void columns(const GgmlDotProblem& p, int64_t n) {
  int64_t m = 0;
  for (; m + MR <= p.m; m += MR) block<MR, NR, Q4>(p, m, n);
  for (; m < p.m; ++m) block<1, NR, Q4>(p, m, n);
}

// M > 1: 2 x 2 blocks, each W row read once per pair of activation rows (16 ymm registers bound the block).
template <bool Q4>
void product(const GgmlDotProblem& p, int64_t n0, int64_t n1) {
  if (p.m == 1) {
    for (int64_t n = n0; n < n1; ++n) gemv_row<Q4>(p, n);
    return;
  }
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) columns<2, 2, Q4>(p, n);
  for (; n < n1; ++n) columns<2, 1, Q4>(p, n);
}

void q4_0(const GgmlDotProblem& p, int64_t n0, int64_t n1) { product<true>(p, n0, n1); }
void q8_0(const GgmlDotProblem& p, int64_t n0, int64_t n1) { product<false>(p, n0, n1); }

}  // namespace
}  // namespace ggml_avx2

const GgmlDotTable& ggml_dot_avx2() {
  static const GgmlDotTable t{Isa::avx2, true, nullptr, "qk_ggml_q4_0q8_0_2x2__avx2", ggml_avx2::q4_0,
                              "qk_ggml_q8_0q8_0_2x2__avx2", ggml_avx2::q8_0};
  return t;
}

}  // namespace qk::kernels::detail
