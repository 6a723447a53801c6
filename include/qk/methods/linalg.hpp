#pragma once
// Dense linear algebra the methods share, multithreaded with OpenMP over Eigen GEMMs:
//  - gram_accumulate: S += Xᵀ X (lower triangle) tile by tile, the tiles spread over threads;
//  - parallel_gemm_rows: C.middleRows -= A.middleRows · B by row slices (each slice an Eigen GEMM);
//  - inverse_cholesky_upper: the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), as GPTQ needs it.
// Inside an OpenMP parallel region Eigen runs its own GEMMs on one thread, so the thread count of every call is
// the `threads` argument; calls made outside a region run under OmpThreadsScope, which sets the calling thread's
// OpenMP thread count for the scope and restores it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <omp.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"

namespace qk::detail {

class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int n) : old_(omp_get_max_threads()) { omp_set_num_threads(std::max(1, n)); }
  ~OmpThreadsScope() { omp_set_num_threads(old_); }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int old_;
};

// [begin, end) of part `i` of `n` near-equal parts of `total`, aligned to `align` elements.
inline void split_range(int64_t total, int n, int i, int64_t& begin, int64_t& end, int64_t align = 16) {
  const int64_t chunks = (total + align - 1) / align;
  const int64_t b = chunks * i / n, e = chunks * (i + 1) / n;
  begin = std::min(total, b * align);
  end = std::min(total, e * align);
}

// S (k x k, lower triangle kept) += Xᵀ X for X (t x k).
template <typename XType>
void gram_accumulate(Eigen::MatrixXf& S, const XType& X, int threads) {
  const int64_t k = X.cols();
  const int64_t tile = k <= 256 ? k : 256;
  const int64_t nt = (k + tile - 1) / tile;
  std::vector<std::pair<int64_t, int64_t>> tiles;
  for (int64_t i = 0; i < nt; ++i)
    for (int64_t j = 0; j <= i; ++j) tiles.emplace_back(i, j);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && tiles.size() > 1)
  for (size_t t = 0; t < tiles.size(); ++t) {
    const int64_t i0 = tiles[t].first * tile, j0 = tiles[t].second * tile;
    const int64_t ni = std::min(tile, k - i0), nj = std::min(tile, k - j0);
    S.block(i0, j0, ni, nj).noalias() += X.middleCols(i0, ni).transpose() * X.middleCols(j0, nj);
  }
}

// Copies the lower triangle of S onto its upper triangle.
inline void symmetrize_lower(Eigen::MatrixXf& S) {
  const int64_t k = S.rows();
  for (int64_t j = 0; j < k; ++j)
    for (int64_t i = j + 1; i < k; ++i) S(j, i) = S(i, j);
}

// C.rightCols(...) -= A * B with the rows of C (and A) split over threads.
template <typename CType, typename AType, typename BType>
void parallel_sub_product(CType&& C, const AType& A, const BType& B, int threads) {
  const int64_t rows = C.rows();
  if (threads <= 1 || rows < 64) {
    C.noalias() -= A * B;
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    int64_t r0, r1;
    split_range(rows, omp_get_num_threads(), omp_get_thread_num(), r0, r1);
    if (r1 > r0) C.middleRows(r0, r1 - r0).noalias() -= A.middleRows(r0, r1 - r0) * B;
  }
}

// Lower Cholesky factor of A in place (lower triangle; the strict upper triangle is left as it was), blocked
// right-looking: factor a diagonal block, solve the panel below it, update the trailing matrix; the panel solve and
// the trailing update (the O(n³) part) are spread over threads. Returns false when A is not positive definite.
inline bool cholesky_lower_inplace(Eigen::MatrixXf& A, int threads) {
  const int64_t n = A.rows();
  const int64_t bs = 192;
  for (int64_t k = 0; k < n; k += bs) {
    const int64_t kb = std::min(bs, n - k), r = n - k - kb;
    Eigen::Ref<Eigen::MatrixXf> diag = A.block(k, k, kb, kb);
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXf>, Eigen::Lower> llt(diag);
    if (llt.info() != Eigen::Success) return false;
    for (int64_t i = k; i < k + kb; ++i)
      if (!(A(i, i) > 0) || !std::isfinite(A(i, i))) return false;
    if (r == 0) break;
    const auto L11 = A.block(k, k, kb, kb);
    // Panel: A21 <- A21 L11⁻ᵀ, rows split over threads.
#pragma omp parallel num_threads(threads) if (threads > 1 && r >= 128)
    {
      int64_t r0, r1;
      split_range(r, omp_get_num_threads(), omp_get_thread_num(), r0, r1);
      if (r1 > r0) {
        auto P = A.block(k + kb + r0, k, r1 - r0, kb);
        L11.triangularView<Eigen::Lower>().transpose().solveInPlace<Eigen::OnTheRight>(P);
      }
    }
    // Trailing update of the lower triangle: A22 -= A21 A21ᵀ, tile by tile.
    const int64_t t = 256, nt = (r + t - 1) / t;
    std::vector<std::pair<int64_t, int64_t>> tiles;
    for (int64_t i = 0; i < nt; ++i)
      for (int64_t j = 0; j <= i; ++j) tiles.emplace_back(i, j);
    const int64_t base = k + kb;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && tiles.size() > 1)
    for (size_t q = 0; q < tiles.size(); ++q) {
      const int64_t i0 = tiles[q].first * t, j0 = tiles[q].second * t;
      const int64_t ni = std::min(t, r - i0), nj = std::min(t, r - j0);
      A.block(base + i0, base + j0, ni, nj).noalias() -=
          A.block(base + i0, k, ni, kb) * A.block(base + j0, k, nj, kb).transpose();
    }
  }
  return true;
}

// Inverse of a lower-triangular L in place (recursive blocking: [[A,0],[B,C]]⁻¹ = [[A⁻¹,0],[-C⁻¹BA⁻¹,C⁻¹]]); the
// two triangular products of each level are split over threads (rows of B A⁻¹, columns of C⁻¹ T).
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
  Eigen::MatrixXf T(n2, n1);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    int64_t a, b;
    split_range(n2, omp_get_num_threads(), omp_get_thread_num(), a, b);
    if (b > a)
      T.middleRows(a, b - a).noalias() =
          L.block(n1 + a, 0, b - a, n1) * L.topLeftCorner(n1, n1).triangularView<Eigen::Lower>();
#pragma omp barrier
    split_range(n1, omp_get_num_threads(), omp_get_thread_num(), a, b);
    if (b > a)
      L.block(n1, a, n2, b - a).noalias() =
          -(L.bottomRightCorner(n2, n2).triangularView<Eigen::Lower>() * T.middleCols(a, b - a));
  }
  L.topRightCorner(n1, n2).setZero();
}

// U upper triangular with H⁻¹ = Uᵀ U, the factor GPTQ's reference obtains as cholesky(cholesky_inverse(
// cholesky(H)), upper=True). Computed with one Cholesky and one triangular inverse: with J the reversal
// permutation, J H J = L Lᵀ gives H⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J), and J L⁻¹ J is upper triangular with a positive
// diagonal, hence the (unique) factor. Returns false when H is not positive definite.
inline bool inverse_cholesky_upper(const Eigen::MatrixXf& H, Eigen::MatrixXf& U, int threads) {
  Eigen::MatrixXf A = H.reverse();  // J H J
  if (!cholesky_lower_inplace(A, threads)) return false;
  A.triangularView<Eigen::StrictlyUpper>().setZero();
  invert_lower_inplace(A, threads);
  U = A.reverse();
  return U.allFinite();
}

}  // namespace qk::detail
