#pragma once
// Private to src/kernels: the f32 GEMM micro-kernels each ISA file exports (qk/kernels/sgemm.hpp).
//
// A micro-kernel multiplies a packed MR x kc panel of A (kc steps of MR consecutive floats) by a packed kc x NR panel
// of B (kc steps of NR floats) and writes the MR x NR tile to column-major C (leading dimension ldc):
//   C = alpha · acc + beta · C, where beta == 0 does not read C.
#include <cstdint>

namespace qk::kernels::detail {

using SgemmMicroFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                              float beta);

struct SgemmKernel {
  const char* name;
  int mr, nr;
  SgemmMicroFn fn;
};

const SgemmKernel& sgemm_kernel_avx2();
const SgemmKernel& sgemm_kernel_avx512();

}  // namespace qk::kernels::detail
