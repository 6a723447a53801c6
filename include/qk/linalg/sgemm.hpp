#pragma once
// Single-precision GEMM with the same run-time ISA choice as the integer kernels (qk/kernels/isa.hpp):
//
//   C = alpha · A · B + beta · C        A: m x k, B: k x n, C: m x n
//
// Every operand is a strided view: element (i, j) lives at p[i * rs + j * cs], so column-major, row-major and
// transposed blocks (of Eigen matrices, say) are all passed without copies. beta == 0 never reads C (it may hold
// garbage or NaN). The product is blocked for the caches and packed (Goto / BLIS scheme: B panels for L3, A
// blocks for L2, a register-tile micro-kernel), with one micro-kernel per path: AVX-512F (32x12 tile), AVX2+FMA
// (16x6) and a portable one (8x4) that the compiler vectorises with baseline flags. The methods (GPTQ's Hessian,
// its Cholesky, inverse and lazy-batch updates; AWQ) call it so their speed does not depend on the build's -march.
//
// Results differ between paths in the last bits (FMA contraction and summation order), never more than a
// straightforward float dot product of length k would.
#include <cstdint>

namespace qk::linalg {

struct SgemmView {
  const float* p = nullptr;
  int64_t rs = 0, cs = 0;  // row and column stride in elements
};
struct SgemmMutView {
  float* p = nullptr;
  int64_t rs = 0, cs = 0;
};

// A square operand known to be triangular: the blocks of the product that only meet its zero triangle are
// skipped (about half the work). The zero triangle must really hold zeros: blocks that straddle the diagonal are
// multiplied in full.
enum class SgemmTriangle {
  none,
  a_lower,  // A(i, p) = 0 for p > i
  a_upper,  // A(i, p) = 0 for p < i
  b_lower,  // B(p, j) = 0 for p < j
  b_upper,  // B(p, j) = 0 for p > j
};

// threads: 0 = qk::resolve_threads default; the work is split over the larger dimension of C when it is large
// enough. Throws qk::InvalidArgument for negative sizes, null pointers with non-empty operands, or a triangular
// operand that is not square.
void sgemm(int64_t m, int64_t n, int64_t k, float alpha, SgemmView A, SgemmView B, float beta, SgemmMutView C,
           int threads = 1, SgemmTriangle tri = SgemmTriangle::none);

// Symmetric rank-k update of a lower triangle: C = alpha · A · Aᵀ + beta · C for i >= j (A: n x k, C: n x n); the
// strict upper triangle of C is neither read nor written. Each depth slice of A is packed once (as the left and the
// right operand) and shared by the threads, which take row blocks of the triangle.
void ssyrk_lower(int64_t n, int64_t k, float alpha, SgemmView A, float beta, SgemmMutView C, int threads = 1);

// Name of the micro-kernel active_isa() selects, e.g. "qk_sgemm_32x12__avx512".
const char* sgemm_kernel_name();

}  // namespace qk::linalg
