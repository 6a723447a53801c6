// AVX-512 VNNI path of the ggml block products. Two blocks of 32 codes fill one zmm (Q8_0 lanes 0-7: block b,
// lanes 8-15: block b + 1; Q4_0 interleaves the two by 16 bytes, see weight_pair) and one vpdpbusd (unsigned x
// signed bytes, four products per int32 lane, exact) does their integer dot:
//   Q4_0: the nibbles 0..15 as the unsigned operand; sum (q + 8) * a = sum q * a + 8 * sum a.
//   Q8_0: w XOR 0x80 = w + 128 as the unsigned operand (any int8 weight, -128 included);
//         sum (w + 128) * a = sum w * a + 128 * sum a.
// The correction starts the accumulator lane by lane: -c times the sum of the four activations the lane meets
// (itself one vpdpbusd of set1(c) with the activations, computed once per call by prepare), so every int32 lane
// holds exactly its four products w * a. (One correction -c * sum(a) per block in a single lane would make the
// same integer sum, but its lanes then cancel, and the float rounding below would be relative to c * |sum a|
// instead of to the products.) The lanes become floats (exact) and meet d_w * d_a in one fused multiply-add per
// block pair: each output keeps sixteen float partial sums per accumulator chain, added at the end.
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* self-initialisation, GCC bug 105593, fixed in
// GCC 13) wherever intrinsics such as _mm512_shuffle_f32x4 inline; the warnings are about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cstring>
#include <memory>
#include <vector>

#include "ggml_dot_internal.hpp"

namespace qk::kernels::detail {
namespace ggml_avx512vnni {
namespace {

// acc += u8 . s8 per int32 lane (inline asm for the reason given in avx512_vnni.cpp).
inline __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

inline uint32_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The sum of the sixteen lanes, in a fixed order.
inline float hsum(__m512 v) {
  const __m512 h = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));
  __m128 s = _mm_add_ps(_mm512_castps512_ps128(h), _mm512_castps512_ps128(_mm512_shuffle_f32x4(h, h, 0x01)));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <bool Q4>
struct Consts {
  static constexpr int64_t kBlockBytes = Q4 ? 18 : 34;
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(Q4 ? 8 : 0x80));  // c as unsigned bytes
  // Which block of the pair each int32 lane belongs to (see weight_pair): Q8_0 lanes 0-7 / 8-15, Q4_0 lanes
  // 0-3 and 8-11 / 4-7 and 12-15.
  const __m512i idx01 = Q4 ? _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)
                           : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
};

// Blocks b and b + 1 of a weight row (blk points at block b; pair false: b alone, block b + 1 zero with zero
// scale) as the unsigned operand wv and their scales dw, lane by lane as idx01 says. Q4_0 bytes: 0-15 block b
// elements 0-15 (low nibbles), 16-31 block b + 1 elements 0-15, 32-47 block b elements 16-31 (high nibbles),
// 48-63 block b + 1 elements 16-31: [x0 | x1 | x0 >> 4 | x1 >> 4] costs one insert and one shift; expand_acts
// orders the activations to match. Q8_0 bytes: block b, then block b + 1.
template <bool Q4>
inline void weight_pair(const Consts<Q4>& c, const uint8_t* blk, bool pair, __m512i& wv, __m512& dw) {
  constexpr int64_t kBB = Consts<Q4>::kBlockBytes;
  const uint32_t h = load_u16(blk) | (pair ? load_u16(blk + kBB) << 16 : 0u);
  dw = _mm512_permutexvar_ps(c.idx01, _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h)))));
  if constexpr (Q4) {
    const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i x1 = pair ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kBB + 2)) : _mm_setzero_si128();
    const __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(x0), x1, 1);
    wv = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1), c.low4);
  } else {
    const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    const __m256i y1 = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kBB + 2)) : _mm256_setzero_si256();
    wv = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(y0), y1, 1), c.bias);
  }
}

// The activations of one call, expanded once before the threads start (prepare; M * K / 64 entries of 192
// bytes, O(M * K) next to the O(M * N * K) product): per row m and block pair q, the codes av (zero-padded after an odd
// last block), the scales dav (lanes 0-7: d_a[2q], lanes 8-15: d_a[2q + 1], or 0) and the lane-wise correction
// corr = -c * (sum of the four activations each lane meets), one vpdpbusd of set1(c) with the codes.
struct ActPair {
  __m512i av, corr;
  __m512 dav;
};
struct ActPanel {
  int64_t pairs = 0;
  std::vector<ActPair> e;  // [m][pairs]
  const ActPair& at(int64_t m, int64_t q) const { return e[static_cast<size_t>(m * pairs + q)]; }
};

template <bool Q4>
ActPanel expand_acts(const Consts<Q4>& c, const GgmlDotProblem& p) {
  ActPanel a;
  a.pairs = (p.nb + 1) / 2;
  a.e.resize(static_cast<size_t>(p.m * a.pairs));
  for (int64_t m = 0; m < p.m; ++m)
    for (int64_t q = 0; q < a.pairs; ++q) {
      const int64_t b = 2 * q;
      const int8_t* qa = p.qa + m * p.k + b * 32;
      const float* da = p.da + m * p.nb + b;
      __m512i av;
      __m128 da2;
      if (b + 1 < p.nb) {
        av = _mm512_loadu_si512(qa);
        da2 = _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(da)));
      } else {  // the last, odd block: lanes 8-15 see zero activations and zero scale
        av = _mm512_maskz_loadu_epi8(0xffffffffULL, qa);
        da2 = _mm_set_ss(da[0]);
      }
      if constexpr (Q4) av = _mm512_shuffle_i64x2(av, av, _MM_SHUFFLE(3, 1, 2, 0));  // weight_pair's order
      ActPair& e = a.e[static_cast<size_t>(m * a.pairs + q)];
      e.av = av;
      e.dav = _mm512_permutexvar_ps(c.idx01, _mm512_zextps128_ps512(da2));
      e.corr = _mm512_sub_epi32(_mm512_setzero_si512(), dpbusd(_mm512_setzero_si512(), c.offset, av));
    }
  return a;
}

// acc += float(exact lane sums of w * a) * (d_w * d_a)
inline __m512 pair_fma(__m512 acc, __m512i corr, __m512i wv, __m512i av, __m512 dw, __m512 dav) {
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(dpbusd(corr, wv, av)), _mm512_mul_ps(dw, dav), acc);
}

// Rows [m0, m0 + MR) x W rows [n0, n0 + NR), all blocks, two at a time (the last one alone when nb is odd).
template <int MR, int NR, bool Q4>
void block(const Consts<Q4>& c, const ActPanel& a, const GgmlDotProblem& p, int64_t m0, int64_t n0) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < p.nb; b += 2) {
    const bool pair = b + 1 < p.nb;
    __m512i wv[NR];
    __m512 dw[NR];
    for (int j = 0; j < NR; ++j)
      weight_pair(c, p.w + (n0 + j) * p.row_bytes + b * Consts<Q4>::kBlockBytes, pair, wv[j], dw[j]);
    for (int i = 0; i < MR; ++i) {
      const ActPair& e = a.at(m0 + i, b / 2);
      for (int j = 0; j < NR; ++j) acc[i][j] = pair_fma(acc[i][j], e.corr, wv[j], e.av, dw[j], e.dav);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) p.y[(m0 + i) * p.ldy + n0 + j] = hsum(acc[i][j]);
}

// M = 1: one W row at a time, so the whole matrix is read as one sequential stream (the hardware prefetcher's
// best case: four rows side by side made four short streams per group and halved the DRAM rate), with U
// independent accumulators over consecutive block pairs for the latency of the chains. Measured (4096 x 4096,
// one thread, loaded machine): see docs/kernels.md.
template <bool Q4>
void gemv_row(const Consts<Q4>& c, const ActPanel& a, const GgmlDotProblem& p, int64_t n) {
  constexpr int U = 4;
  const uint8_t* row = p.w + n * p.row_bytes;
  __m512 acc[U];
  for (int u = 0; u < U; ++u) acc[u] = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 2 * U <= p.nb; b += 2 * U) {
    for (int u = 0; u < U; ++u) {
      __m512i wv;
      __m512 dw;
      weight_pair(c, row + (b + 2 * u) * Consts<Q4>::kBlockBytes, true, wv, dw);
      const ActPair& e = a.at(0, b / 2 + u);
      acc[u] = pair_fma(acc[u], e.corr, wv, e.av, dw, e.dav);
    }
  }
  for (; b < p.nb; b += 2) {
    const bool pair = b + 1 < p.nb;
    __m512i wv;
    __m512 dw;
    weight_pair(c, row + b * Consts<Q4>::kBlockBytes, pair, wv, dw);
    const ActPair& e = a.at(0, b / 2);
    acc[0] = pair_fma(acc[0], e.corr, wv, e.av, dw, e.dav);
  }
  p.y[n] = hsum(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

template <int MR, int NR, bool Q4>
void columns(const Consts<Q4>& c, const ActPanel& a, const GgmlDotProblem& p, int64_t n) {
  int64_t m = 0;
  for (; m + MR <= p.m; m += MR) block<MR, NR, Q4>(c, a, p, m, n);
  for (; m < p.m; ++m) block<1, NR, Q4>(c, a, p, m, n);
}

// M = 1: gemv_row. M > 1: four W rows at a time, each read once per four activation rows (4 x 4 float
// accumulators).
template <bool Q4>
void product(const GgmlDotProblem& p, int64_t n0, int64_t n1) {
  const Consts<Q4> c;
  const ActPanel& a = *static_cast<const ActPanel*>(p.work);
  if (p.m == 1) {
    for (int64_t n = n0; n < n1; ++n) gemv_row<Q4>(c, a, p, n);
    return;
  }
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) columns<4, 4, Q4>(c, a, p, n);
  for (; n < n1; ++n) columns<4, 1, Q4>(c, a, p, n);
}

std::shared_ptr<const void> prepare(const GgmlDotProblem& p, bool q4) {
  return q4 ? std::make_shared<const ActPanel>(expand_acts(Consts<true>{}, p))
            : std::make_shared<const ActPanel>(expand_acts(Consts<false>{}, p));
}

void q4_0(const GgmlDotProblem& p, int64_t n0, int64_t n1) { product<true>(p, n0, n1); }
void q8_0(const GgmlDotProblem& p, int64_t n0, int64_t n1) { product<false>(p, n0, n1); }

}  // namespace
}  // namespace ggml_avx512vnni

const GgmlDotTable& ggml_dot_avx512vnni() {
  static const GgmlDotTable t{Isa::avx512vnni,
                              true,
                              ggml_avx512vnni::prepare,
                              "qk_ggml_q4_0q8_0_4x4__avx512vnni",
                              ggml_avx512vnni::q4_0,
                              "qk_ggml_q8_0q8_0_4x4__avx512vnni",
                              ggml_avx512vnni::q8_0};
  return t;
}

}  // namespace qk::kernels::detail
