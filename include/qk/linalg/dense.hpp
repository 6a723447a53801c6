#pragma once
// Dense linear algebra the methods share, on qk's own f32 GEMM (qk/linalg/sgemm.hpp: AVX-512 / AVX2 / portable
// micro-kernels chosen at run time, so the speed does not depend on the build's -march), multithreaded with OpenMP:
//  - gemm / trmm_right_lower / trmm_left_lower: products of Eigen blocks (any storage order, no copies);
//  - gram_accumulate: S += Xᵀ X (lower triangle), one symmetric rank-k update (ssyrk_lower);
//  - copy_blocked / symmetric_from_lower: storage-order copies and symmetrization in cache-sized tiles;
//  - inverse_cholesky_upper: the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), as GPTQ needs it, from a blocked
//    Cholesky and a blocked triangular inverse whose O(n³) parts are GEMMs.
// Inside an OpenMP parallel region every product runs on the calling thread; the thread count of a call made
// outside is its `threads` argument. Calls into Eigen's own products (small ones) run under detail::OmpThreadsScope.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <omp.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/detail/omp.hpp"
#include "qk/linalg/sgemm.hpp"

namespace qk::linalg {

// [begin, end) of part `i` of `n` near-equal parts of `total`, aligned to `align` elements.
inline void split_range(int64_t total, int n, int i, int64_t& begin, int64_t& end, int64_t align = 16) {
  const int64_t chunks = (total + align - 1) / align;
  const int64_t b = chunks * i / n, e = chunks * (i + 1) / n;
  begin = std::min(total, b * align);
  end = std::min(total, e * align);
}

// M = zeros(rows, cols), written page by page. A zero matrix the compiler turns into calloc() is backed by the shared
// zero page until written; when the GEMM then loads and stores its tiles, every first store is a copy-on-write fault
// whose TLB flush interrupts the other cores (a quarter of the 2-thread Hessian's time). Writing the zeros here
// (through a volatile pointer, which the compiler cannot fold into calloc) maps real pages up front.
inline void zero_touched(Eigen::MatrixXf& M, int64_t rows, int64_t cols) {
  M.resize(rows, cols);
  volatile float* p = M.data();
  const int64_t n = rows * cols;
  for (int64_t i = 0; i < n; i += 1024) p[i] = 0.0f;  // one store per 4 KiB page maps it
  M.setZero();
}

// Strided views of Eigen blocks (direct-access expressions: matrices, blocks, Refs, their transposes).
template <typename M>
SgemmView view(const M& m) {
  if constexpr (M::IsRowMajor) return {m.data(), m.outerStride(), m.innerStride()};
  else return {m.data(), m.innerStride(), m.outerStride()};
}
template <typename M>
SgemmMutView mut_view(M&& m) {
  using D = std::decay_t<M>;
  if constexpr (D::IsRowMajor) return {m.data(), m.outerStride(), m.innerStride()};
  else return {m.data(), m.innerStride(), m.outerStride()};
}

// C = alpha · A · B + beta · C (beta == 0: C is not read). tri: A or B is triangular (its zero triangle stored).
template <typename CType, typename AType, typename BType>
void gemm(CType&& C, const AType& A, const BType& B, float alpha, float beta, int threads = 1,
          SgemmTriangle tri = SgemmTriangle::none) {
  if (A.rows() != C.rows() || B.cols() != C.cols() || A.cols() != B.rows())
    fail<ShapeError>("gemm: {}x{} times {}x{} into {}x{}", A.rows(), A.cols(), B.rows(), B.cols(), C.rows(), C.cols());
  sgemm(C.rows(), C.cols(), A.cols(), alpha, view(A), view(B), beta, mut_view(C), threads, tri);
}

// C = alpha · B · L + beta · C with L lower triangular (zeros stored above the diagonal).
template <typename CType, typename BType, typename LType>
void trmm_right_lower(CType&& C, const BType& B, const LType& L, float alpha, float beta, int threads = 1) {
  gemm(C, B, L, alpha, beta, threads, SgemmTriangle::b_lower);
}

// C = alpha · L · B + beta · C with L lower triangular (zeros stored above the diagonal).
template <typename CType, typename LType, typename BType>
void trmm_left_lower(CType&& C, const LType& L, const BType& B, float alpha, float beta, int threads = 1) {
  gemm(C, L, B, alpha, beta, threads, SgemmTriangle::a_lower);
}

// S (k x k, lower triangle kept) += Xᵀ X for X (t x k): one symmetric rank-t update on qk's GEMM kernels.
template <typename XType>
void gram_accumulate(Eigen::MatrixXf& S, const XType& X, int threads) {
  ssyrk_lower(X.cols(), X.rows(), 1.0f, view(X.transpose()), 1.0f, mut_view(S), threads);
}

// dst = src between storage orders (row-major <-> column-major), in 32 x 32 tiles walked along dst's storage order,
// so that both sides stay in cache and the TLB (a plain transposing assignment is ~5x slower on 4096²).
template <typename Dst, typename Src>
void copy_blocked(Dst& dst, const Src& src) {
  const int64_t r = src.rows(), c = src.cols(), b = 32;
  dst.resize(r, c);
  for (int64_t i0 = 0; i0 < r; i0 += b)
    for (int64_t j0 = 0; j0 < c; j0 += b) {
      const int64_t i1 = std::min(r, i0 + b), j1 = std::min(c, j0 + b);
      if constexpr (std::decay_t<Dst>::IsRowMajor) {
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) dst(i, j) = src(i, j);
      } else {
        for (int64_t j = j0; j < j1; ++j)
          for (int64_t i = i0; i < i1; ++i) dst(i, j) = src(i, j);
      }
    }
}

// The symmetric matrix whose lower triangle is scale · (lower triangle of S), in one blocked pass.
inline Eigen::MatrixXf symmetric_from_lower(const Eigen::MatrixXf& S, float scale) {
  const int64_t k = S.rows(), b = 32;
  Eigen::MatrixXf H(k, k);
  for (int64_t j0 = 0; j0 < k; j0 += b)
    for (int64_t i0 = j0; i0 < k; i0 += b) {
      const int64_t j1 = std::min(k, j0 + b), i1 = std::min(k, i0 + b);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = std::max(i0, j); i < i1; ++i) H(i, j) = S(i, j) * scale;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < std::min(j1, i); ++j) H(j, i) = H(i, j);
    }
  return H;
}

// Lower Cholesky factor of A in place (lower triangle; the strict upper triangle is left as it was), blocked
// right-looking: factor a diagonal block, solve the panel below it, update the trailing matrix; the panel solve and
// the trailing update (the O(n³) part) are spread over threads. Returns false when A is not positive definite.
inline bool cholesky_lower_inplace(Eigen::MatrixXf& A, int threads) {
  const int64_t n = A.rows();
  // Wider panels for big matrices: the trailing update reads and writes the whole trailing matrix once per panel.
  const int64_t bs = std::clamp<int64_t>(n / 24 / 64 * 64, 192, 512);
  for (int64_t k = 0; k < n; k += bs) {
    const int64_t kb = std::min(bs, n - k), r = n - k - kb;
    Eigen::Ref<Eigen::MatrixXf> diag = A.block(k, k, kb, kb);
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXf>, Eigen::Lower> llt(diag);
    if (llt.info() != Eigen::Success) return false;
    for (int64_t i = k; i < k + kb; ++i)
      if (!(A(i, i) > 0) || !std::isfinite(A(i, i))) return false;
    if (r == 0) break;
    // Panel: A21 <- A21 L11⁻ᵀ, as a product with the (small) inverse of L11 so that it runs on the GEMM.
    Eigen::MatrixXf Linv = Eigen::MatrixXf::Identity(kb, kb);
    A.block(k, k, kb, kb).triangularView<Eigen::Lower>().solveInPlace(Linv);
    Linv.triangularView<Eigen::StrictlyUpper>().setZero();
    Eigen::MatrixXf P = A.block(k + kb, k, r, kb);
    gemm(A.block(k + kb, k, r, kb), P, Linv.transpose(), 1.0f, 0.0f, threads);
    // Trailing update of the lower triangle: A22 -= A21 A21ᵀ, tile by tile.
    const int64_t t = 256, nt = (r + t - 1) / t;
    std::vector<std::pair<int64_t, int64_t>> tiles;
    for (int64_t i = 0; i < nt; ++i)
      for (int64_t j = 0; j <= i; ++j) tiles.emplace_back(i, j);
    const int64_t base = k + kb;
    qk::detail::FirstException errors;  // nothing may leave the region (qk/detail/omp.hpp)
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && tiles.size() > 1)
    for (size_t q = 0; q < tiles.size(); ++q) {
      const int64_t i0 = tiles[q].first * t, j0 = tiles[q].second * t;
      const int64_t ni = std::min(t, r - i0), nj = std::min(t, r - j0);
      errors.run([&] {
        gemm(A.block(base + i0, base + j0, ni, nj), A.block(base + i0, k, ni, kb),
             A.block(base + j0, k, nj, kb).transpose(), -1.0f, 1.0f);
      });
    }
    errors.rethrow();
  }
  return true;
}

// Inverse of a lower-triangular L in place (recursive blocking: [[A,0],[B,C]]⁻¹ = [[A⁻¹,0],[-C⁻¹BA⁻¹,C⁻¹]]); the
// two triangular products of each level (B A⁻¹, then C⁻¹ T) are blocked GEMMs over threads. The strict upper
// triangle of L ends up zero.
inline void invert_lower_inplace(Eigen::Ref<Eigen::MatrixXf> L, int threads) {
  const int64_t n = L.rows();
  if (n <= 128) {
    Eigen::MatrixXf I = Eigen::MatrixXf::Identity(n, n);
    L.triangularView<Eigen::Lower>().solveInPlace(I);
    L = I.triangularView<Eigen::Lower>();
    return;
  }
  const int64_t n1 = ((n / 2) + 31) / 32 * 32, n2 = n - n1;
  invert_lower_inplace(L.topLeftCorner(n1, n1), threads);
  invert_lower_inplace(L.bottomRightCorner(n2, n2), threads);
  L.topRightCorner(n1, n2).setZero();
  Eigen::MatrixXf T(n2, n1);
  trmm_right_lower(T, L.block(n1, 0, n2, n1), L.topLeftCorner(n1, n1), 1.0f, 0.0f, threads);
  trmm_left_lower(L.block(n1, 0, n2, n1), L.bottomRightCorner(n2, n2), T, -1.0f, 0.0f, threads);
}

// U upper triangular with H⁻¹ = Uᵀ U, the factor GPTQ's reference obtains as cholesky(cholesky_inverse(
// cholesky(H)), upper=True). Computed with one Cholesky and one triangular inverse: with J the reversal
// permutation, J H J = L Lᵀ gives H⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J), and J L⁻¹ J is upper triangular with a positive
// diagonal, hence the (unique) factor. diag_add is added to the diagonal of H first (GPTQ's damping) without a copy
// of H. Returns false when H + diag_add·I is not positive definite.
inline bool inverse_cholesky_upper(const Eigen::MatrixXf& H, Eigen::MatrixXf& U, int threads, float diag_add = 0.0f) {
  U = H.reverse();  // J H J (+ diag_add I), factored and inverted in place in U: no other n x n buffer
  if (diag_add != 0.0f) U.diagonal().array() += diag_add;
  if (!cholesky_lower_inplace(U, threads)) return false;
  U.triangularView<Eigen::StrictlyUpper>().setZero();
  invert_lower_inplace(U, threads);
  U.reverseInPlace();
  return U.allFinite();
}

}  // namespace qk::linalg
