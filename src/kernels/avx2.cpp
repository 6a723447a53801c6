// AVX2 + FMA + F16C path (ymm registers, 16 of them).
// int8: operands widened to 16 bits and multiplied with vpmaddwd (exact; vpmaddubsw would saturate on u8 x s8).
// int4: codes 0..15 times int8 through vpmaddubsw + vpmaddwd(1), exact because 15 * 127 * 2 < 32767.
// The packed layouts are the 16-column ones of gemm.hpp; a 64-byte block is read as two 32-byte halves.
#include <immintrin.h>

#include <algorithm>

#include "internal.hpp"

namespace qk::kernels::detail {
namespace avx2 {
namespace {

inline __m256i widen4(uint32_t a) { return _mm256_set1_epi64x(static_cast<long long>(_pdep_u64(a, 0x00ff00ff00ff00ffULL))); }

// Pairs of partial sums (2 per column) of columns 0-3 (a) and 4-7 (b) -> the 8 column sums in order.
inline __m256i fold_pairs(__m256i a, __m256i b) {
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(a, b), _MM_SHUFFLE(3, 1, 2, 0));
}

// Stores the first `valid` of 16 int32 / f32 values held in two registers.
inline void store16(int32_t* dst, __m256i lo, __m256i hi, int64_t valid) {
  if (valid == kTileN) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8), hi);
    return;
  }
  alignas(32) int32_t tmp[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), lo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(tmp + 8), hi);
  std::copy(tmp, tmp + valid, dst);
}
inline void store16(float* dst, __m256 lo, __m256 hi, int64_t valid) {
  if (valid == kTileN) {
    _mm256_storeu_ps(dst, lo);
    _mm256_storeu_ps(dst + 8, hi);
    return;
  }
  alignas(32) float tmp[16];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  std::copy(tmp, tmp + valid, dst);
}
// Bias of a tile, zero past the end of the row.
inline void load_bias16(const float* bias, int64_t valid, __m256& lo, __m256& hi) {
  alignas(32) float tmp[16] = {};
  std::copy(bias, bias + valid, tmp);
  lo = _mm256_load_ps(tmp);
  hi = _mm256_load_ps(tmp + 8);
}

// ---- int8: rows [m, m+MR) x tiles [t, t+NT); acc[i][j][h]: columns 4h..4h+3 of tile j, two lanes per column.
template <int MR, int NT>
void s8_block(const S8Problem& p, int64_t m, int64_t t) {
  const PackedS8& w = *p.w;
  const int64_t kq = w.k_pad / 4, tb = w.tile_bytes();  // A rows are readable up to k_pad (see dispatch)
  const int8_t* wp = w.data.data() + t * tb;
  const uint8_t* ar[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) ar[i] = p.a + (m + i) * p.lda;
  __m256i acc[MR][NT][4];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
      for (int h = 0; h < 4; ++h) acc[i][j][h] = _mm256_setzero_si256();

  auto step = [&](int64_t q, const uint32_t* a4) {
    __m256i wv[NT][4];
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const int8_t* src = wp + j * tb + q * 64;
#pragma GCC unroll 4
      for (int h = 0; h < 4; ++h)
        wv[j][h] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16 * h)));
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i av = widen4(a4[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
        for (int h = 0; h < 4; ++h) acc[i][j][h] = _mm256_add_epi32(acc[i][j][h], _mm256_madd_epi16(wv[j][h], av));
    }
  };
  uint32_t a4[MR];
  for (int64_t q = 0; q < kq; ++q) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) a4[i] = load_u32(ar[i] + 4 * q);
    step(q, a4);
  }
  const __m256i zp = _mm256_set1_epi32(p.a_zp);
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) {
    const int64_t n0 = (t + j) * kTileN, valid = std::min<int64_t>(kTileN, w.n - n0);
    const __m256i c0 = _mm256_mullo_epi32(zp, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.col_sum.data() + n0)));
    const __m256i c1 = _mm256_mullo_epi32(zp, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.col_sum.data() + n0 + 8)));
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    if (p.bias) load_bias16(p.bias + n0, valid, b0, b1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i v0 = _mm256_sub_epi32(fold_pairs(acc[i][j][0], acc[i][j][1]), c0);
      const __m256i v1 = _mm256_sub_epi32(fold_pairs(acc[i][j][2], acc[i][j][3]), c1);
      if (p.c32) {
        store16(p.c32 + (m + i) * p.ldc + n0, v0, v1, valid);
      } else {
        const __m256 sa = _mm256_set1_ps(p.a_scale[m + i]);
        const __m256 s0 = _mm256_mul_ps(sa, _mm256_loadu_ps(w.scale.data() + n0));
        const __m256 s1 = _mm256_mul_ps(sa, _mm256_loadu_ps(w.scale.data() + n0 + 8));
        __m256 y0 = _mm256_mul_ps(_mm256_cvtepi32_ps(v0), s0), y1 = _mm256_mul_ps(_mm256_cvtepi32_ps(v1), s1);
        if (p.bias) {
          y0 = _mm256_add_ps(y0, b0);
          y1 = _mm256_add_ps(y1, b1);
        }
        store16(p.cf + (m + i) * p.ldc + n0, y0, y1, valid);
      }
    }
  }
}

template <int MR, int NT>
void s8_block_fn(const S8Problem& p, int64_t m, int64_t t) {
  s8_block<MR, NT>(p, m, t);
}
using S8BlockFn = void (*)(const S8Problem&, int64_t, int64_t);

// GEMM: 2 rows x 1 tile (8 accumulators); GEMV: 1 row x 2 tiles.
void gemm_s8(const S8Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  if (m1 - m0 == 1) {
    for (int64_t t = t0; t < t1; t += 2) (t1 - t >= 2 ? s8_block_fn<1, 2> : s8_block_fn<1, 1>)(p, m0, t);
    return;
  }
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t m = m0; m < m1; m += 2) (m1 - m >= 2 ? s8_block_fn<2, 1> : s8_block_fn<1, 1>)(p, m, t);
}

// ---- int4 x int8: rows [m, m+MR) x one tile; acc[i][h]: columns 8h..8h+7.
inline __m256i dp(__m256i acc, __m256i u8, __m256i s8) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1)));
}

template <int MR>
void w4_block(const W4Problem& p, int64_t m, int64_t t) {
  const PackedW4& w = *p.w;
  const int64_t G = w.groups(), bpg = w.group / 8;
  const uint8_t* wp = w.data.data() + t * w.tile_bytes();
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  __m256 facc[MR][2];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) facc[i][0] = facc[i][1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256i acc[MR][2];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    for (int64_t b = g * bpg; b < (g + 1) * bpg; ++b) {
      const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + b * 64));
      const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + b * 64 + 32));
      const __m256i l0 = _mm256_and_si256(v0, low4), h0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), low4);
      const __m256i l1 = _mm256_and_si256(v1, low4), h1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), low4);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const int8_t* a = p.qa + (m + i) * p.lda + 8 * b;
        const __m256i alo = _mm256_set1_epi32(static_cast<int>(load_u32(a)));
        const __m256i ahi = _mm256_set1_epi32(static_cast<int>(load_u32(a + 4)));
        acc[i][0] = dp(dp(acc[i][0], l0, alo), h0, ahi);
        acc[i][1] = dp(dp(acc[i][1], l1, alo), h1, ahi);
      }
    }
    const int64_t off = (t * G + g) * kTileN;
    __m256i z0 = _mm256_set1_epi32(8), z1 = z0;
    if (w.has_zero) {
      z0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.zero.data() + off)));
      z1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.zero.data() + off + 8)));
    }
    const __m256 sw0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scale.data() + off)));
    const __m256 sw1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scale.data() + off + 8)));
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const int64_t ag = (m + i) * G + g;
      const __m256i asum = _mm256_set1_epi32(p.a_sum[ag]);
      const __m256 sa = _mm256_set1_ps(p.a_scale[ag]);
      const __m256i d0 = _mm256_sub_epi32(acc[i][0], _mm256_mullo_epi32(z0, asum));
      const __m256i d1 = _mm256_sub_epi32(acc[i][1], _mm256_mullo_epi32(z1, asum));
      facc[i][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_mul_ps(sw0, sa), facc[i][0]);
      facc[i][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_mul_ps(sw1, sa), facc[i][1]);
    }
  }
  const int64_t n0 = t * kTileN, valid = std::min<int64_t>(kTileN, w.n - n0);
  __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
  if (p.bias) load_bias16(p.bias + n0, valid, b0, b1);
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    __m256 y0 = facc[i][0], y1 = facc[i][1];
    if (p.bias) {
      y0 = _mm256_add_ps(y0, b0);
      y1 = _mm256_add_ps(y1, b1);
    }
    store16(p.c + (m + i) * p.ldc + n0, y0, y1, valid);
  }
}

void gemm_w4(const W4Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t m = m0; m < m1; m += 2) (m1 - m >= 2 ? w4_block<2> : w4_block<1>)(p, m, t);
}

void gemv_w4(const W4Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  for (int64_t m = m0; m < m1; ++m)
    for (int64_t t = t0; t < t1; ++t) w4_block<1>(p, m, t);
}

// ---- int4 x f32. Chunk q of a 64-byte block (8 bytes) is columns 2q, 2q+1 x 4 k; accumulator q keeps its
// 8 lanes (column, k-phase) until the end of the group, where lanes are folded per column.
void w4f32_tile(const W4F32Problem& p, int64_t m, int64_t t) {
  const PackedW4& w = *p.w;
  const int64_t G = w.groups(), bpg = w.group / 8;
  const uint8_t* wp = w.data.data() + t * w.tile_bytes();
  const float* a = p.a + m * p.lda;
  float out[16] = {};
  alignas(32) float lanes[64];
  for (int64_t g = 0; g < G; ++g) {
    __m256 acc[8];
    for (int q = 0; q < 8; ++q) acc[q] = _mm256_setzero_ps();
    __m256 asum = _mm256_setzero_ps();
    for (int64_t b = g * bpg; b < (g + 1) * bpg; ++b) {
      const uint8_t* src = wp + b * 64;
      const __m256 alo = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(a + 8 * b));
      const __m256 ahi = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(a + 8 * b + 4));
      asum = _mm256_add_ps(asum, _mm256_blend_ps(alo, ahi, 0xf0));
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) {
        const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 8 * q)));
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(c, _mm256_set1_epi32(0x0f)));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(c, 4));
        acc[q] = _mm256_fmadd_ps(hi, ahi, _mm256_fmadd_ps(lo, alo, acc[q]));
      }
    }
    for (int q = 0; q < 8; ++q) _mm256_store_ps(lanes + 8 * q, acc[q]);
    alignas(32) float as[8];
    _mm256_store_ps(as, asum);
    // sum of the group's activations: lanes 0-3 hold the low-nibble phases, 4-7 the high-nibble phases.
    const float a_total = ((as[0] + as[1]) + (as[2] + as[3])) + ((as[4] + as[5]) + (as[6] + as[7]));
    for (int c = 0; c < 16; ++c) {
      const float dot = (lanes[4 * c] + lanes[4 * c + 1]) + (lanes[4 * c + 2] + lanes[4 * c + 3]);
      const int64_t row = t * kTileN + c;
      if (row >= w.n) break;
      out[c] += (dot - static_cast<float>(w.zero_at(row, g)) * a_total) * w.scale_at(row, g);
    }
  }
  const int64_t n0 = t * kTileN, valid = std::min<int64_t>(kTileN, w.n - n0);
  for (int64_t c = 0; c < valid; ++c) p.c[m * p.ldc + n0 + c] = p.bias ? out[c] + p.bias[n0 + c] : out[c];
}

void gemm_w4_f32(const W4F32Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t m = m0; m < m1; ++m) w4f32_tile(p, m, t);
}

}  // namespace
}  // namespace avx2

const KernelTable& table_avx2() {
  static const KernelTable t{Isa::avx2,
                             "qk_gemm_u8s8s32_2x16c4__avx2",
                             "qk_gemv_u8s8s32_1x32c4__avx2",
                             avx2::gemm_s8,
                             "qk_gemm_s8w4f32_2x16c8__avx2",
                             avx2::gemm_w4,
                             "qk_gemv_s8w4f32_1x16c8__avx2",
                             avx2::gemv_w4,
                             "qk_gemm_f32w4f32_1x16c8__avx2",
                             avx2::gemm_w4_f32};
  return t;
}

}  // namespace qk::kernels::detail
