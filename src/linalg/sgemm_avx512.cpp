// AVX-512F micro-kernel of the f32 GEMM: a 32 x 12 tile of C in 24 zmm accumulators; per k step two loads of A and
// twelve broadcasts of B feed 24 FMAs.
#include <immintrin.h>

#include "sgemm_internal.hpp"

namespace qk::linalg::detail {
namespace {

constexpr int kMr = 32, kNr = 12;

void micro_32x12(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta) {
  __m512 lo[kNr], hi[kNr];
#pragma GCC unroll 12
  for (int j = 0; j < kNr; ++j) lo[j] = hi[j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 a0 = _mm512_loadu_ps(a), a1 = _mm512_loadu_ps(a + 16);
    _mm_prefetch(reinterpret_cast<const char*>(a + 8 * kMr), _MM_HINT_T0);
#pragma GCC unroll 12
    for (int j = 0; j < kNr; ++j) {
      const __m512 bj = _mm512_set1_ps(b[j]);
      lo[j] = _mm512_fmadd_ps(a0, bj, lo[j]);
      hi[j] = _mm512_fmadd_ps(a1, bj, hi[j]);
    }
    a += kMr;
    b += kNr;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 12
    for (int j = 0; j < kNr; ++j) {
      _mm512_storeu_ps(c + j * ldc, _mm512_mul_ps(va, lo[j]));
      _mm512_storeu_ps(c + j * ldc + 16, _mm512_mul_ps(va, hi[j]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int j = 0; j < kNr; ++j) {
      float* cj = c + j * ldc;
      _mm512_storeu_ps(cj, _mm512_fmadd_ps(va, lo[j], _mm512_mul_ps(vb, _mm512_loadu_ps(cj))));
      _mm512_storeu_ps(cj + 16, _mm512_fmadd_ps(va, hi[j], _mm512_mul_ps(vb, _mm512_loadu_ps(cj + 16))));
    }
  }
}

}  // namespace

const SgemmKernel& sgemm_kernel_avx512() {
  static const SgemmKernel k{"qk_sgemm_32x12__avx512", kMr, kNr, micro_32x12, pack_a<kMr>, pack_b<kNr>};
  return k;
}

}  // namespace qk::linalg::detail
