#pragma once
// GPTQ (Frantar, Ashkboos, Hoefler, Alistarh: "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", ICLR 2023, arXiv:2210.17323), following the algorithm of the reference
// implementation (IST-DASLab/gptq, GPTQ.fasterquant) step by step:
//  1. per-channel grids are fitted once on the original W;
//  2. dead inputs (H_ii = 0): H_ii = 1 and W[:, i] = 0;
//  3. static groups: every group fitted up front on W (in the original column order);
//  4. act-order (desc_act): columns visited by decreasing H_ii (the permutation is kept: result.perm, and the
//     integer grid's g_idx);
//  5. damping: λ = damp · mean(diag H) added to the diagonal; when the Cholesky fails λ is raised tenfold
//     (at most max_damp_retries times, each one reported in result.warnings);
//  6. U = upper Cholesky factor of H⁻¹;
//  7. columns in lazy blocks of block_size: inside a block each column is rounded onto the grid, its error
//     e = (w - q) / U_jj spread over the block's remaining columns, and after the block the rest of W is updated
//     with one GEMM, W[:, i2:] -= E · U[i1:i2, i2:]; dynamic groups are fitted when their first column is reached,
//     from the weight as updated by the previous blocks (the reference's "outer" W).
// Any WeightGrid works; act-order with dynamic groups forms groups of permuted columns, which only an IntGrid can
// record (g_idx); other grids need static groups for act-order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include <omp.h>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/core/threads.hpp"
#include "qk/detail/omp.hpp"
#include "qk/methods/grid.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/linalg/dense.hpp"
#include "qk/methods/rtn.hpp"

namespace qk {

struct GptqOptions {
  double damp = 0.01;        // percdamp: fraction of the mean Hessian diagonal added to it
  int64_t block_size = 128;  // lazy-batch block
  bool act_order = false;    // desc_act
  bool static_groups = false;
  int max_damp_retries = 4;  // damping raised x10 at most this many times when H + λI is not positive definite
  int threads = 0;           // 0 = qk::resolve_threads default
};

struct GptqResult {
  RowMatrixXf dequantized;         // Ŵ, in the original column order
  std::vector<int32_t> perm;       // act-order: perm[j] = weight column quantized j-th (empty without act-order)
  double loss = 0;                 // Σ (w - q)² / U_jj² / 2, the reference's "error"
  double damp = 0;                 // damping fraction finally used
  int64_t dead_columns = 0;        // inputs with H_ii = 0
  std::vector<std::string> warnings;
};

// Quantizes W (rows x cols) onto `grid` with the Hessian H (cols x cols) of its inputs. This overload works in H's
// storage (a temporary, e.g. HessianAccumulator::hessian(), is consumed without a copy).
inline GptqResult gptq(const Eigen::Ref<const RowMatrixXf>& W, Eigen::MatrixXf&& H, WeightGrid& grid,
                       const GptqOptions& o = {}) {
  const int64_t rows = W.rows(), cols = W.cols();
  if (H.rows() != cols || H.cols() != cols)
    fail<ShapeError>("GPTQ: Hessian is {}x{}, the weight has {} input columns", H.rows(), H.cols(), cols);
  if (o.block_size <= 0) fail<InvalidArgument>("GPTQ: block size must be positive, got {}", o.block_size);
  if (!(o.damp >= 0) || !std::isfinite(o.damp)) fail<InvalidArgument>("GPTQ: damping {} is not >= 0", o.damp);
  for (Eigen::Index r = 0; r < rows; ++r)
    if (!detail::all_finite(W.row(r).data(), cols)) detail::report_non_finite(W, "GPTQ: W");
  if (!H.allFinite()) fail<NumericError>("GPTQ: the Hessian has non-finite values");
  const int nt = resolve_threads(o.threads);
  detail::OmpThreadsScope scope(nt);  // Eigen's own GEMM threads outside our parallel regions
  // The column loop synchronizes threads at every group (integer grids) or at every column (other grids, whose
  // column rounding runs on one thread): worth it only with enough rows.
  const bool int_grid = dynamic_cast<IntGrid*>(&grid) != nullptr;
  const int nt_rows = std::max(1, std::min(nt, static_cast<int>(rows / (int_grid ? 128 : 2048))));

  GptqResult res;
  Eigen::MatrixXf Wc;  // column-major working copy
  linalg::copy_blocked(Wc, W);
  Eigen::MatrixXf Hd = std::move(H);
  grid.reset(rows, cols);
  const int64_t gs = grid.block_size();
  if (gs <= 0 || cols % gs != 0)
    fail<InvalidArgument>("GPTQ: grid {} block {} does not divide {} columns", grid.name(), gs, cols);
  const bool per_channel = gs >= cols;
  IntGrid* ig = dynamic_cast<IntGrid*>(&grid);

  if (per_channel) grid.fit(0, Wc, nullptr);  // before the dead-column zeroing, as the reference
  for (int64_t i = 0; i < cols; ++i)
    if (Hd(i, i) == 0.0f) {
      Hd(i, i) = 1.0f;
      Wc.col(i).setZero();
      ++res.dead_columns;
    }
  // every input column dead: the reference's rule would zero the whole weight, which is no quantization of it
  if (cols > 0 && res.dead_columns == cols)
    fail<NumericError>("GPTQ: the Hessian is zero (no calibration input, or inputs that are all zero): it says nothing "
                       "about the layer");
  if (o.static_groups && !per_channel)
    for (int64_t c0 = 0; c0 < cols; c0 += gs) grid.fit(c0, Wc.middleCols(c0, gs), nullptr);

  const bool permuted_grid = o.act_order && !o.static_groups && !per_channel;
  if (permuted_grid && !ig)
    fail<InvalidArgument>("GPTQ: act-order with dynamic groups needs an integer grid; use static groups with {}",
                          grid.name());
  std::vector<int32_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (o.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return Hd(a, a) > Hd(b, b); });
    Eigen::MatrixXf Wp(rows, cols), Hp(cols, cols);
    for (int64_t j = 0; j < cols; ++j) Wp.col(j) = Wc.col(perm[j]);
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t i = 0; i < cols; ++i) Hp(i, j) = Hd(perm[i], perm[j]);
    Wc.swap(Wp);
    Hd.swap(Hp);
    res.perm = perm;
  }
  // Grid column of the j-th visited column: weight columns, except for permuted (dynamic act-order) groups.
  auto grid_col = [&](int64_t j) -> int64_t { return (o.act_order && !permuted_grid) ? perm[j] : j; };

  // Damping and the upper Cholesky factor of H⁻¹.
  const double mean_diag = static_cast<double>(Hd.diagonal().cast<double>().mean());
  double damp = o.damp;
  Eigen::MatrixXf U;
  for (int attempt = 0;; ++attempt) {
    if (linalg::inverse_cholesky_upper(Hd, U, nt, static_cast<float>(damp * mean_diag))) break;
    if (attempt >= o.max_damp_retries || (damp == 0.0 && mean_diag == 0.0))
      fail<NumericError>("GPTQ: the Hessian is not positive definite even with damping {} of its mean diagonal",
                         damp);
    const double next = damp > 0 ? damp * 10 : 0.01;
    res.warnings.push_back(fmt::format("Cholesky failed with damping {}; retrying with {}", damp, next));
    damp = next;
  }
  res.damp = damp;
  Hd = Eigen::MatrixXf();  // U is all the column loop needs: give back in² floats before Q is allocated

  Eigen::MatrixXf Q(rows, cols);
  double loss = 0;
  const int64_t bsz = o.block_size;
  for (int64_t i1 = 0; i1 < cols; i1 += bsz) {
    const int64_t i2 = std::min(i1 + bsz, cols), count = i2 - i1;
    Eigen::MatrixXf W1 = Wc.middleCols(i1, count);
    Eigen::MatrixXf Q1(rows, count), E1(rows, count);
    const Eigen::MatrixXf U1 = U.block(i1, i1, count, count);
    double block_loss = 0;
    const bool generic = ig == nullptr;
    constexpr int64_t kSub = 32;
// An exception (a grid that cannot hold a column) may not leave the region: the first one is kept and
    // rethrown after it; the threads still meet at every barrier.
    qk::detail::FirstException errors;
#pragma omp parallel num_threads(nt_rows) reduction(+ : block_loss)
    {
      int64_t r0, r1;
      linalg::split_range(rows, omp_get_num_threads(), omp_get_thread_num(), r0, r1);
      const int64_t n = r1 - r0;
      for (int64_t i = 0; i < count; ++i) {
        const int64_t j = i1 + i;
        const bool refit = !per_channel && !o.static_groups && j % gs == 0;
        if (generic) {
#pragma omp barrier
#pragma omp single
          errors.run([&] {
            if (refit) grid.fit(j, Wc.middleCols(j, gs), nullptr);
            grid.quantize_column(grid_col(j), W1.col(i), Q1.col(i));
          });
        } else {
          if (refit) {
#pragma omp single
            errors.run([&] { grid.fit(j, Wc.middleCols(j, gs), nullptr); });
          }
          if (n > 0)
            errors.run([&] { ig->quantize_rows(grid_col(j), r0, r1, W1.col(i).data() + r0, Q1.col(i).data() + r0); });
        }
        if (n <= 0 || errors.failed()) continue;
        const float d = U1(i, i);
        float* e = E1.col(i).data() + r0;
        const float* w = W1.col(i).data() + r0;
        const float* q = Q1.col(i).data() + r0;
        float acc = 0;
        for (int64_t r = 0; r < n; ++r) {
          e[r] = (w[r] - q[r]) / d;
          acc += e[r] * e[r];
        }
        if (!std::isfinite(acc))  // finite weights whose error feedback leaves float's range (|w| near 1e38)
          errors.run([&] {
            int64_t r = 0;
            while (r < n && std::isfinite(e[r] * e[r])) ++r;
            fail<NumericError>("GPTQ: row {}, column {}: the quantization error {} overflows float in the error "
                               "feedback (weights too large for GPTQ)",
                               r0 + std::min(r, n - 1), grid_col(j), w[std::min(r, n - 1)] - q[std::min(r, n - 1)]);
          });
        block_loss += acc;
        // The error of column i goes to the rest of its sub-block now, and to the block's later sub-blocks with
        // one GEMM when the sub-block is done (the lazy-batch idea once more, so the updated columns stay in cache).
        const int64_t s0 = i / kSub * kSub, s1 = std::min(s0 + kSub, count);
        for (int64_t k = i + 1; k < s1; ++k) {
          const float h = U1(i, k);
          float* wk = W1.col(k).data() + r0;
          for (int64_t r = 0; r < n; ++r) wk[r] -= e[r] * h;
        }
        if (i + 1 == s1 && s1 < count)
          errors.run([&] {
            linalg::gemm(W1.block(r0, s1, n, count - s1), E1.block(r0, s0, n, s1 - s0),
                         U1.block(s0, s1, s1 - s0, count - s1), -1.0f, 1.0f);
          });
      }
#pragma omp barrier
      if (n > 0 && i2 < cols && !errors.failed())
        errors.run([&] {
          linalg::gemm(Wc.block(r0, i2, n, cols - i2), E1.middleRows(r0, n), U.block(i1, i2, count, cols - i2), -1.0f,
                       1.0f);
        });
    }
    errors.rethrow();
    Q.middleCols(i1, count) = Q1;
    loss += block_loss / 2;
  }
  res.loss = loss;

  if (o.act_order) {
    res.dequantized.resize(rows, cols);
    for (int64_t j = 0; j < cols; ++j) res.dequantized.col(perm[j]) = Q.col(j);
    if (permuted_grid) ig->set_permutation(perm);
  } else {
    linalg::copy_blocked(res.dequantized, Q);
  }
  return res;
}

inline GptqResult gptq(const Eigen::Ref<const RowMatrixXf>& W, const Eigen::MatrixXf& H, WeightGrid& grid,
                       const GptqOptions& o = {}) {
  return gptq(W, Eigen::MatrixXf(H), grid, o);
}

inline GptqResult gptq(const Eigen::Ref<const RowMatrixXf>& W, const HessianAccumulator& acc, WeightGrid& grid,
                       const GptqOptions& o = {}) {
  if (acc.samples() == 0) fail<InvalidArgument>("GPTQ: the Hessian accumulator has no samples");
  return gptq(W, acc.hessian(), grid, o);
}

// GPTQ onto an integer scheme: the QuantizedTensor (with g_idx for act-order with dynamic groups).
inline QuantizedTensor gptq_quantize(const Eigen::Ref<const RowMatrixXf>& W, Eigen::MatrixXf&& H,
                                     const QuantScheme& s, const GptqOptions& o = {}, GptqResult* info = nullptr) {
  IntGrid grid(s);
  GptqResult r = gptq(W, std::move(H), grid, o);
  if (info) *info = std::move(r);
  return grid.to_tensor();
}
inline QuantizedTensor gptq_quantize(const Eigen::Ref<const RowMatrixXf>& W, const Eigen::MatrixXf& H,
                                     const QuantScheme& s, const GptqOptions& o = {}, GptqResult* info = nullptr) {
  return gptq_quantize(W, Eigen::MatrixXf(H), s, o, info);
}

}  // namespace qk
