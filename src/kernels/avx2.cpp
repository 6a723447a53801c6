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

// int4 codes (0..15) x int8 through vpmaddubsw + vpmaddwd(1): exact, 15 * 127 * 2 < 32767.
inline __m256i dp(__m256i acc, __m256i u8, __m256i s8) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1)));
}

#include "ymm_common.inc"

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
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) {
    __m256i sum[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      sum[i][0] = fold_pairs(acc[i][j][0], acc[i][j][1]);
      sum[i][1] = fold_pairs(acc[i][j][2], acc[i][j][3]);
    }
    s8_tile_epilogue<MR>(p, sum, m, (t + j) * kTileN);
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
