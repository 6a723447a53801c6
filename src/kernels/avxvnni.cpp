// AVX-VNNI path (VEX-encoded vpdpbusd on ymm, with AVX2 + FMA + F16C): CPUs with AVX-VNNI but without AVX-512
// (Alder Lake and later client parts) and those that have both. vpdpbusd adds the 4 products u8 x s8 of each
// int32 lane exactly (no saturation), so int8 x int8 needs no widening (unlike the avx2 path) and int4 codes
// (0..15, unsigned) meet the int8 activations directly. Same packed layouts as every path: a 64-byte k-quad of a
// 16-column tile is two ymm of 8 columns x 4 k, exactly vpdpbusd's lane shape.
// The tile stores and the int4 products are shared with the avx2 path (ymm_common.inc).
#include <immintrin.h>

#include <algorithm>

#include "internal.hpp"

namespace qk::kernels::detail {
namespace avxvnni {
namespace {

// acc += u8 . s8 per int32 lane (inline asm for the reason given in avx512_vnni.cpp: GCC 12 copies the
// accumulator of the builtin through a spare register in register-blocked loops).
inline __m256i dpbusd(__m256i acc, __m256i u8, __m256i s8) {
  __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u8), "x"(s8));
  return acc;
}

// int4 codes (0..15, the unsigned operand) x int8 activations.
inline __m256i dp(__m256i acc, __m256i u8, __m256i s8) { return dpbusd(acc, u8, s8); }

#include "ymm_common.inc"

// ---- int8: rows [m, m+MR) x tiles [t, t+NT); acc[i][j][h]: columns 8h..8h+7 of tile j.
template <int MR, int NT>
void s8_block(const S8Problem& p, int64_t m, int64_t t) {
  const PackedS8& w = *p.w;
  const int64_t kq = w.k_pad / 4, tb = w.tile_bytes();  // A rows are readable up to k_pad (see dispatch)
  const int8_t* wp = w.data.data() + t * tb;
  const uint8_t* ar[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) ar[i] = p.a + (m + i) * p.lda;
  __m256i acc[MR][NT][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_si256();
  for (int64_t q = 0; q < kq; ++q) {
    __m256i wv[NT][2];
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      wv[j][0] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + j * tb + q * 64));
      wv[j][1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + j * tb + q * 64 + 32));
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i av = _mm256_set1_epi32(static_cast<int>(load_u32(ar[i] + 4 * q)));
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        acc[i][j][0] = dpbusd(acc[i][j][0], av, wv[j][0]);
        acc[i][j][1] = dpbusd(acc[i][j][1], av, wv[j][1]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) {
    __m256i sum[MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) sum[i][0] = acc[i][j][0], sum[i][1] = acc[i][j][1];
    s8_tile_epilogue<MR>(p, sum, m, (t + j) * kTileN);
  }
}

template <int MR, int NT>
void s8_block_fn(const S8Problem& p, int64_t m, int64_t t) {
  s8_block<MR, NT>(p, m, t);
}
using S8BlockFn = void (*)(const S8Problem&, int64_t, int64_t);

// GEMM: 6 rows x 1 tile (12 accumulators, 2 weight registers, 1 broadcast: 15 of the 16 ymm); GEMV: 1 row x 4
// tiles (8 accumulators). 6 x 1 measured 446 / 457 GOPS at M = 128 / 512 (4096², one thread) against 408 for 4 x 1.
void gemm_s8(const S8Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  if (m1 - m0 == 1) {
    static constexpr S8BlockFn gemv[4] = {s8_block_fn<1, 1>, s8_block_fn<1, 2>, s8_block_fn<1, 3>, s8_block_fn<1, 4>};
    for (int64_t t = t0; t < t1; t += 4) gemv[std::min<int64_t>(4, t1 - t) - 1](p, m0, t);
    return;
  }
  static constexpr S8BlockFn rows[6] = {s8_block_fn<1, 1>, s8_block_fn<2, 1>, s8_block_fn<3, 1>,
                                        s8_block_fn<4, 1>, s8_block_fn<5, 1>, s8_block_fn<6, 1>};
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t m = m0; m < m1; m += 6) rows[std::min<int64_t>(6, m1 - m) - 1](p, m, t);
}

}  // namespace
}  // namespace avxvnni

const KernelTable& table_avxvnni() {
  static const KernelTable t{Isa::avxvnni,
                             "qk_gemm_u8s8s32_6x16c4__avxvnni",
                             "qk_gemv_u8s8s32_1x64c4__avxvnni",
                             avxvnni::gemm_s8,
                             "qk_gemm_s8w4f32_2x16c8__avxvnni",
                             avxvnni::gemm_w4,
                             "qk_gemv_s8w4f32_1x16c8__avxvnni",
                             avxvnni::gemv_w4,
                             "qk_gemm_f32w4f32_1x16c8__avxvnni",
                             avxvnni::gemm_w4_f32};
  return t;
}

}  // namespace qk::kernels::detail
