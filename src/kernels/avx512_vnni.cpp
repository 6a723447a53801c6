// AVX-512 VNNI path: vpdpbusd multiplies 4 unsigned bytes (activations, or int4 codes) by 4 signed bytes and adds
// the 4 products into an int32 lane exactly (no saturation), which is the whole inner loop of both products.
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* self-initialisation, GCC bug 105593, fixed in
// GCC 13) wherever intrinsics such as _mm512_cvtph_ps inline; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "internal.hpp"

namespace qk::kernels::detail {
namespace avx512vnni {
namespace {

// acc += u8 . s8 per int32 lane. Written as inline asm because GCC 12 copies the accumulator of the
// _mm512_dpbusd_epi32 builtin through a spare register on every iteration of a register-blocked loop (two
// extra moves per instruction, measured in the 8x32 kernel); the asm ties the accumulator in place.
inline __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(s8));
  return acc;
}

// Epilogue of an MR x NT block: subtract zp * column sums, then either store int32 or scale (+ bias) to f32.
template <int MR, int NT>
inline void s8_epilogue(const S8Problem& p, const __m512i (&acc)[MR][NT], int64_t m, int64_t t) {
  const PackedS8& w = *p.w;
  const __m512i zp = _mm512_set1_epi32(p.a_zp);
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) {
    const int64_t n0 = (t + j) * kTileN;
    const __mmask16 mask = static_cast<__mmask16>((1u << std::min<int64_t>(kTileN, w.n - n0)) - 1u);
    const __m512i corr = _mm512_mullo_epi32(zp, _mm512_loadu_si512(w.col_sum.data() + n0));
    if (p.c32) {
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i)
        _mm512_mask_storeu_epi32(p.c32 + (m + i) * p.ldc + n0, mask, _mm512_sub_epi32(acc[i][j], corr));
    } else {
      const __m512 sw = _mm512_loadu_ps(w.scale.data() + n0);
      const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(p.a_scale[m + i]), sw);
        __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], corr)), s);
        if (p.bias) y = _mm512_add_ps(y, bias);
        _mm512_mask_storeu_ps(p.cf + (m + i) * p.ldc + n0, mask, y);
      }
    }
  }
}

// ---- int8 x int8 -> int32: rows [m, m+MR) x tiles [t, t+NT); a broadcast 4-byte slice of each row meets
// one 64-byte k-quad of each tile.
// `ap` is the rows' panel packed by pack_panel: [k_pad / 4][MR][4 bytes], so the MR broadcasts of a k-quad
// read one contiguous run (a single row is its own panel).
template <int MR, int NT>
void s8_block(const S8Problem& p, const uint8_t* ap, int64_t m, int64_t t) {
  const PackedS8& w = *p.w;
  const int64_t kq = w.k_pad / 4, tb = w.tile_bytes();
  const int8_t* wp = w.data.data() + t * tb;
  __m512i acc[MR][NT];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_si512();

  for (int64_t q = 0; q < kq; ++q) {
    __m512i wv[NT];
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) wv[j] = _mm512_loadu_si512(wp + j * tb + q * 64);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi32(static_cast<int>(load_u32(ap + (q * MR + i) * 4)));
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) acc[i][j] = dpbusd(acc[i][j], av, wv[j]);
    }
  }
  s8_epilogue<MR, NT>(p, acc, m, t);
}

// ---- GEMV (M = 1): NT tiles, the k-quads of each split round-robin over U accumulators (int32 sums are exact,
// so the split changes nothing): few weight streams (NT) with NT * U vpdpbusd chains in flight. Measured (cold
// 11008 x 4096 and 4096 x 4096, one thread, under load): 2 x 4 gave 42-46 GB/s where 8 tiles x 1 (the previous
// kernel, 8 streams) gave 36-40 and 1 x 8 39-44; hot 4096 x 4096 was unchanged. Rechecked on the current
// instance, one thread, weight GB/s: 2 x 4 hot 4096^2 98, cold 46 / 41; 4 x 2 91, 43 / 35; 1 x 8 87, 44 / 35.
// No software prefetch: it was worth +10% on the first instance, but on the current one a 2048-byte lead costs
// 5-20% (hot 4096^2 94 -> 80-85 GB/s, 11008 x 4096 52 -> 46) and gains nothing cold; bench_peak's plain
// streaming read shows the same (39.3 GB/s without, 36.1 with).
template <int NT, int U>
void s8_gemv_block(const S8Problem& p, const uint8_t* a, int64_t m, int64_t t) {
  const PackedS8& w = *p.w;
  const int64_t kq = w.k_pad / 4, tb = w.tile_bytes();
  const int8_t* wp = w.data.data() + t * tb;
  __m512i acc[U][NT];
#pragma GCC unroll 8
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[u][j] = _mm512_setzero_si512();
  int64_t q = 0;
  for (; q + U <= kq; q += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      const __m512i av = _mm512_set1_epi32(static_cast<int>(load_u32(a + (q + u) * 4)));
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) acc[u][j] = dpbusd(acc[u][j], av, _mm512_loadu_si512(wp + j * tb + (q + u) * 64));
    }
  }
  for (; q < kq; ++q) {
    const __m512i av = _mm512_set1_epi32(static_cast<int>(load_u32(a + q * 4)));
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) acc[0][j] = dpbusd(acc[0][j], av, _mm512_loadu_si512(wp + j * tb + q * 64));
  }
  __m512i sum[1][NT];
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) {
    sum[0][j] = acc[0][j];
#pragma GCC unroll 8
    for (int u = 1; u < U; ++u) sum[0][j] = _mm512_add_epi32(sum[0][j], acc[u][j]);
  }
  s8_epilogue<1, NT>(p, sum, m, t);
}

template <int MR, int NT>
void s8_block_fn(const S8Problem& p, const uint8_t* ap, int64_t m, int64_t t) {
  s8_block<MR, NT>(p, ap, m, t);
}
using S8BlockFn = void (*)(const S8Problem&, const uint8_t*, int64_t, int64_t);

// Interleaves rows [m, m + mr) (readable up to k_pad, see dispatch) by k-quads into dst.
void pack_panel(const S8Problem& p, int64_t m, int64_t mr, uint8_t* dst) {
  const int64_t kq = p.w->k_pad / 4;
  for (int64_t i = 0; i < mr; ++i) {
    const uint8_t* src = p.a + (m + i) * p.lda;
    for (int64_t q = 0; q < kq; ++q) std::memcpy(dst + (q * mr + i) * 4, src + 4 * q, 4);
  }
}

constexpr int kMR = 8, kNT = 3;  // GEMM tile: 8 rows x 48 columns, 24 accumulators

template <int NT, int... I>
constexpr auto row_fns(std::integer_sequence<int, I...>) {
  return std::array<S8BlockFn, sizeof...(I)>{s8_block_fn<I + 1, NT>...};
}

void gemm_s8(const S8Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  const int64_t m = m1 - m0;
  if (m == 1) {
    const uint8_t* row = p.a + m0 * p.lda;
    // Two tiles (two weight streams) at a time, 4 accumulators each; a last odd tile alone with 8.
    int64_t t = t0;
    for (; t + 2 <= t1; t += 2) s8_gemv_block<2, 4>(p, row, m0, t);
    if (t < t1) s8_gemv_block<1, 8>(p, row, m0, t);
    return;
  }
  // Pack every row block of [m0, m1) once; all column tiles reuse the panels. Tile choice, measured at
  // M = 16, N = K = 4096 on the loaded reference machine: 8 x 48 (24 accumulators) 368-416 GOPS, 8 x 32
  // 308-398 GOPS, 16 x 16 (weights read once) 211 GOPS.
  std::vector<uint8_t> panels(static_cast<size_t>(m * p.w->k_pad));
  for (int64_t r = m0; r < m1; r += kMR) pack_panel(p, r, std::min<int64_t>(kMR, m1 - r), panels.data() + (r - m0) * p.w->k_pad);
  auto panel = [&](int64_t r) { return panels.data() + (r - m0) * p.w->k_pad; };
  static constexpr std::array<std::array<S8BlockFn, kMR>, kNT> fns = {
      row_fns<1>(std::make_integer_sequence<int, kMR>{}), row_fns<2>(std::make_integer_sequence<int, kMR>{}),
      row_fns<3>(std::make_integer_sequence<int, kMR>{})};
  for (int64_t t = t0; t < t1; t += kNT) {
    const auto& f = fns[static_cast<size_t>(std::min<int64_t>(kNT, t1 - t) - 1)];
    for (int64_t r = m0; r < m1; r += kMR) f[static_cast<size_t>(std::min<int64_t>(kMR, m1 - r) - 1)](p, panel(r), r, t);
  }
}

// int4 kernels: vpdpbusd takes the codes (0..15) as the unsigned operand and the int8 activations as the signed.
inline __m512i dp(__m512i acc, __m512i u8, __m512i s8) { return dpbusd(acc, u8, s8); }

#include "w4_avx512.inc"

}  // namespace
}  // namespace avx512vnni

const KernelTable& table_avx512vnni() {
  static const KernelTable t{Isa::avx512vnni,
                             "qk_gemm_u8s8s32_8x48c4__avx512vnni",
                             "qk_gemv_u8s8s32_1x32c4__avx512vnni",
                             avx512vnni::gemm_s8,
                             "qk_gemm_s8w4f32_4x32c8__avx512vnni",
                             avx512vnni::gemm_w4,
                             "qk_gemv_s8w4f32_1x64c8__avx512vnni",
                             avx512vnni::gemv_w4,
                             "qk_gemm_f32w4f32_1x16c8__avx512vnni",
                             avx512vnni::gemm_w4_f32};
  return t;
}

}  // namespace qk::kernels::detail
