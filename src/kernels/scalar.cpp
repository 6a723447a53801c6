// The scalar reference: the oracle every SIMD path is tested against. Plain loops straight from the definitions
// in gemm.hpp, one output element at a time, reading the packed layouts through their accessors. Never optimise.
#include <cmath>

#include "internal.hpp"
#include "qk/core/half.hpp"

namespace qk::kernels::detail {
namespace {

void gemm_s8_ref(const S8Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  const PackedS8& w = *p.w;
  const int64_t n_end = std::min(t1 * kTileN, w.n);
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t n = t0 * kTileN; n < n_end; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < w.k; ++k)
        acc += (static_cast<int32_t>(p.a[m * p.lda + k]) - p.a_zp) * static_cast<int32_t>(w.at(n, k));
      if (p.c32) {
        p.c32[m * p.ldc + n] = acc;
      } else {
        const float s = p.a_scale[m] * w.scale[static_cast<size_t>(n)];
        float y = static_cast<float>(acc) * s;
        if (p.bias) y = y + p.bias[n];
        p.cf[m * p.ldc + n] = y;
      }
    }
  }
}

void gemm_w4_ref(const W4Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  const PackedW4& w = *p.w;
  const int64_t n_end = std::min(t1 * kTileN, w.n);
  const int64_t G = w.groups();
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t n = t0 * kTileN; n < n_end; ++n) {
      float acc = 0.0f;
      for (int64_t g = 0; g < G; ++g) {
        int32_t dot = 0;
        for (int64_t k = g * w.group; k < (g + 1) * w.group; ++k)
          dot += static_cast<int32_t>(p.qa[m * p.lda + k]) * w.code(n, k);
        const int32_t d = dot - w.zero_at(n, g) * p.a_sum[m * G + g];
        const float s = w.scale_at(n, g) * p.a_scale[m * G + g];
        acc = std::fma(static_cast<float>(d), s, acc);
      }
      if (p.bias) acc = acc + p.bias[n];
      p.c[m * p.ldc + n] = acc;
    }
  }
}

void gemm_w4_f32_ref(const W4F32Problem& p, int64_t m0, int64_t m1, int64_t t0, int64_t t1) {
  const PackedW4& w = *p.w;
  const int64_t n_end = std::min(t1 * kTileN, w.n);
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t n = t0 * kTileN; n < n_end; ++n) {
      float acc = 0.0f;
      for (int64_t g = 0; g < w.groups(); ++g) {
        float dot = 0.0f;
        for (int64_t k = g * w.group; k < (g + 1) * w.group; ++k)
          dot += p.a[m * p.lda + k] * static_cast<float>(w.code(n, k) - w.zero_at(n, g));
        acc += dot * w.scale_at(n, g);
      }
      if (p.bias) acc = acc + p.bias[n];
      p.c[m * p.ldc + n] = acc;
    }
  }
}

}  // namespace

const KernelTable& table_scalar() {
  static const KernelTable t{Isa::scalar,
                             "qk_gemm_u8s8s32_1x1__scalar",
                             "qk_gemv_u8s8s32_1x1__scalar",
                             gemm_s8_ref,
                             "qk_gemm_s8w4f32_1x1__scalar",
                             gemm_w4_ref,
                             "qk_gemv_s8w4f32_1x1__scalar",
                             gemm_w4_ref,
                             "qk_gemm_f32w4f32_1x1__scalar",
                             gemm_w4_f32_ref};
  return t;
}

}  // namespace qk::kernels::detail
