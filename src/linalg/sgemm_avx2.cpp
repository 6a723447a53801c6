// AVX2+FMA micro-kernel of the f32 GEMM: a 16 x 6 tile of C in 12 ymm accumulators.
#include <immintrin.h>

#include "sgemm_internal.hpp"

namespace qk::linalg::detail {
namespace {

constexpr int kMr = 16, kNr = 6;

void micro_16x6(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta) {
  __m256 lo[kNr], hi[kNr];
#pragma GCC unroll 6
  for (int j = 0; j < kNr; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 a0 = _mm256_loadu_ps(a), a1 = _mm256_loadu_ps(a + 8);
#pragma GCC unroll 6
    for (int j = 0; j < kNr; ++j) {
      const __m256 bj = _mm256_broadcast_ss(b + j);
      lo[j] = _mm256_fmadd_ps(a0, bj, lo[j]);
      hi[j] = _mm256_fmadd_ps(a1, bj, hi[j]);
    }
    a += kMr;
    b += kNr;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 6
    for (int j = 0; j < kNr; ++j) {
      _mm256_storeu_ps(c + j * ldc, _mm256_mul_ps(va, lo[j]));
      _mm256_storeu_ps(c + j * ldc + 8, _mm256_mul_ps(va, hi[j]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int j = 0; j < kNr; ++j) {
      float* cj = c + j * ldc;
      _mm256_storeu_ps(cj, _mm256_fmadd_ps(va, lo[j], _mm256_mul_ps(vb, _mm256_loadu_ps(cj))));
      _mm256_storeu_ps(cj + 8, _mm256_fmadd_ps(va, hi[j], _mm256_mul_ps(vb, _mm256_loadu_ps(cj + 8))));
    }
  }
}

}  // namespace

const SgemmKernel& sgemm_kernel_avx2() {
  static const SgemmKernel k{"qk_sgemm_16x6__avx2", kMr, kNr, micro_16x6, pack_a<kMr>, pack_b<kNr>};
  return k;
}

}  // namespace qk::linalg::detail
