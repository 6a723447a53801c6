#pragma once
// Private to src/kernels: the f32 GEMM micro-kernels each ISA file exports (qk/linalg/sgemm.hpp).
//
// A micro-kernel multiplies a packed MR x kc panel of A (kc steps of MR consecutive floats) by a packed kc x NR panel
// of B (kc steps of NR floats) and writes the MR x NR tile to column-major C (leading dimension ldc):
//   C = alpha · acc + beta · C, where beta == 0 does not read C.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "qk/linalg/sgemm.hpp"

namespace qk::linalg::detail {

using SgemmMicroFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                              float beta);

using SgemmPackAFn = void (*)(const SgemmView& A, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst);
using SgemmPackBFn = void (*)(const SgemmView& B, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst);

struct SgemmKernel {
  const char* name;
  int mr, nr;
  SgemmMicroFn fn;
  SgemmPackAFn pack_a;  // instantiated in the ISA's own file, so the copies use its vector width
  SgemmPackBFn pack_b;
};

const SgemmKernel& sgemm_kernel_avx2();
const SgemmKernel& sgemm_kernel_avx512();

inline constexpr int64_t kPackStep = 16;  // depth of one strip of a transposing pack

// The packing routines are instantiated in each ISA's file (internal linkage, so the copies compiled with
// different flags never merge), with the tile size as a constant so the copies vectorise.
namespace {

// Packs rows [i0, i0+mc) x depth [p0, p0+kc) of A into MR-row micro-panels (kc steps of MR floats, zero-padded).
// Column-major A is read one column segment at a time (contiguous); otherwise a transposing copy in strips.
template <int mr>
void pack_a(const SgemmView& A, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  const int64_t panels = (mc + mr - 1) / mr, full = mc / mr, tail = mc - full * mr;
  if (A.rs == 1) {
    for (int64_t p = 0; p < kc; ++p) {
      const float* s = A.p + i0 + (p0 + p) * A.cs;
      float* d = dst + p * mr;
      for (int64_t ib = 0; ib < full; ++ib) std::memcpy(d + ib * kc * mr, s + ib * mr, sizeof(float) * mr);
      if (tail) {
        float* dt = d + full * kc * mr;
        for (int64_t i = 0; i < mr; ++i) dt[i] = i < tail ? s[full * mr + i] : 0.0f;
      }
    }
    return;
  }
  for (int64_t ib = 0; ib < panels; ++ib) {
    const int64_t rows = std::min<int64_t>(mr, mc - ib * mr);
    const float* src = A.p + (i0 + ib * mr) * A.rs + p0 * A.cs;
    float* pd = dst + ib * kc * mr;
    for (int64_t q0 = 0; q0 < kc; q0 += kPackStep) {
      const int64_t pe = std::min<int64_t>(kPackStep, kc - q0);
      for (int64_t i = 0; i < rows; ++i) {
        const float* s = src + i * A.rs + q0 * A.cs;
        float* d = pd + q0 * mr + i;
        for (int64_t p = 0; p < pe; ++p) d[p * mr] = s[p * A.cs];
      }
      for (int64_t i = rows; i < mr; ++i)
        for (int64_t p = 0; p < pe; ++p) pd[(q0 + p) * mr + i] = 0.0f;
    }
  }
}

// Packs depth [p0, p0+kc) x columns [j0, j0+nc) of B into NR-column micro-panels (kc steps of NR floats): the
// columns of B are the rows of Bᵀ, so this is pack_a on the transposed view (row-major B takes the contiguous path).
template <int nr>
void pack_b(const SgemmView& B, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  pack_a<nr>(SgemmView{B.p, B.cs, B.rs}, j0, nc, p0, kc, dst);
}

}  // namespace
}  // namespace qk::linalg::detail
