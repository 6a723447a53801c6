// AVX-512 (F/BW/DQ/VL, no VNNI) path.
// int8: vpmaddubsw would saturate (255 * 127 * 2 > 32767), so both operands are widened to 16 bits and
// multiplied with vpmaddwd, which is exact: each k-quad gives two int32 partial sums per column, added at the end.
// int4: codes are 0..15, so vpmaddubsw cannot saturate (15 * 127 * 2 < 32767) and vpmaddubsw + vpmaddwd(1)
// reproduce vpdpbusd exactly.
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* self-initialisation, GCC bug 105593, fixed in
// GCC 13) wherever intrinsics such as _mm512_cvtph_ps inline; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "internal.hpp"

namespace qk::kernels::detail {
namespace avx512 {
namespace {

// Four activation bytes a0..a3 as the 16-bit pattern (a0, a1, a2, a3) repeated over the register.
inline __m512i widen4(uint32_t a) { return _mm512_set1_epi64(static_cast<long long>(_pdep_u64(a, 0x00ff00ff00ff00ffULL))); }

template <int MR, int NT>
void s8_block(const S8Problem& p, int64_t m, int64_t t) {
  const PackedS8& w = *p.w;
  const int64_t kq = w.k_pad / 4, tb = w.tile_bytes();  // A rows are readable up to k_pad (see dispatch)
  const int8_t* wp = w.data.data() + t * tb;
  const uint8_t* ar[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) ar[i] = p.a + (m + i) * p.lda;
  // lo: columns 0..7 (two lanes each), hi: columns 8..15.
  __m512i lo[MR][NT], hi[MR][NT];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) lo[i][j] = hi[i][j] = _mm512_setzero_si512();

  auto step = [&](int64_t q, const uint32_t* a4) {
    __m512i wl[NT], wh[NT];
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const __m512i v = _mm512_loadu_si512(wp + j * tb + q * 64);
      wl[j] = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(v));
      wh[j] = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(v, 1));
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i av = widen4(a4[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        lo[i][j] = _mm512_add_epi32(lo[i][j], _mm512_madd_epi16(wl[j], av));
        hi[i][j] = _mm512_add_epi32(hi[i][j], _mm512_madd_epi16(wh[j], av));
      }
    }
  };
  uint32_t a4[MR];
  for (int64_t q = 0; q < kq; ++q) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) a4[i] = load_u32(ar[i] + 4 * q);
    step(q, a4);
  }
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i zp = _mm512_set1_epi32(p.a_zp);
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) {
    const int64_t n0 = (t + j) * kTileN;
    const __mmask16 mask = static_cast<__mmask16>((1u << std::min<int64_t>(kTileN, w.n - n0)) - 1u);
    const __m512i corr = _mm512_mullo_epi32(zp, _mm512_loadu_si512(w.col_sum.data() + n0));
    const __m512 sw = _mm512_loadu_ps(w.scale.data() + n0);
    const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i sum = _mm512_add_epi32(_mm512_permutex2var_epi32(lo[i][j], even, hi[i][j]),
                                           _mm512_permutex2var_epi32(lo[i][j], odd, hi[i][j]));
      const __m512i v = _mm512_sub_epi32(sum, corr);
      if (p.c32) {
        _mm512_mask_storeu_epi32(p.c32 + (m + i) * p.ldc + n0, mask, v);
      } else {
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(p.a_scale[m + i]), sw);
        __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
        if (p.bias) y = _mm512_add_ps(y, bias);
        _mm512_mask_storeu_ps(p.cf + (m + i) * p.ldc + n0, mask, y);
      }
    }
  }
}

template <int MR, int NT>
void s8_block_fn(const S8Problem& p, int64_t m, int64_t t) {
  s8_block<MR, NT>(p, m, t);
}
using S8BlockFn = void (*)(const S8Problem&, int64_t, int64_t);

// GEMM: 4 rows x 2 tiles (16 accumulators); GEMV: 1 row x 4 tiles (8 accumulators).
void gemm_s8(const S8Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  if (m1 - m0 == 1) {
    static constexpr S8BlockFn fns[4] = {s8_block_fn<1, 1>, s8_block_fn<1, 2>, s8_block_fn<1, 3>, s8_block_fn<1, 4>};
    for (int64_t t = t0; t < t1; t += 4) fns[std::min<int64_t>(4, t1 - t) - 1](p, m0, t);
    return;
  }
  static constexpr S8BlockFn fns[4][2] = {{s8_block_fn<1, 1>, s8_block_fn<1, 2>},
                                          {s8_block_fn<2, 1>, s8_block_fn<2, 2>},
                                          {s8_block_fn<3, 1>, s8_block_fn<3, 2>},
                                          {s8_block_fn<4, 1>, s8_block_fn<4, 2>}};
  for (int64_t t = t0; t < t1; t += 2) {
    const int64_t nt = std::min<int64_t>(2, t1 - t);
    for (int64_t m = m0; m < m1; m += 4) fns[std::min<int64_t>(4, m1 - m) - 1][nt - 1](p, m, t);
  }
}

inline __m512i dp(__m512i acc, __m512i u8, __m512i s8) {
  return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u8, s8), _mm512_set1_epi16(1)));
}

#include "w4_avx512.inc"

}  // namespace
}  // namespace avx512

const KernelTable& table_avx512() {
  static const KernelTable t{Isa::avx512,
                             "qk_gemm_u8s8s32_4x32c4__avx512bw",
                             "qk_gemv_u8s8s32_1x64c4__avx512bw",
                             avx512::gemm_s8,
                             "qk_gemm_s8w4f32_4x32c8__avx512bw",
                             avx512::gemm_w4,
                             "qk_gemv_s8w4f32_1x64c8__avx512bw",
                             avx512::gemv_w4,
                             "qk_gemm_f32w4f32_1x16c8__avx512bw",
                             avx512::gemm_w4_f32};
  return t;
}

}  // namespace qk::kernels::detail
