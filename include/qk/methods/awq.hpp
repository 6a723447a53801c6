#pragma once
// AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han: "AWQ: Activation-aware Weight Quantization for LLM Compression and
// Acceleration", MLSys 2024, arXiv:2306.00978), for one linear layer, following the reference implementation
// (mit-han-lab/llm-awq, awq/quantize/auto_scale.py and auto_clip.py):
//  1. scale search: x̄_j = mean_t |X_tj|; for α = 0, 1/n_grid, ..., (n_grid-1)/n_grid:
//       s = max(x̄^α, 1e-4), s /= sqrt(max(s)·min(s)); Ŵ(α) = Q(W·diag(s))·diag(s)⁻¹;
//     keep the α minimising the layer output error ||X Wᵀ - X Ŵ(α)ᵀ||²;
//  2. the scales are applied (W' = W·diag(s), X' = X·diag(s)⁻¹; s must be folded into the previous operation);
//  3. clip search per output row and group on W': max_val = amax|w_group|·(1 - i/n_grid) for
//     i < max_shrink·n_grid, minimising mean_t (x'_group · (Q(clamp(w, ±max_val)) - w))² over a token sub-sample
//     (every ⌊T/n_sample_tokens⌋-th token, as the reference);
//  4. Q(clamp(W', ±best)) is the quantized weight; Ŵ = Q(...)·diag(s)⁻¹ the effective one.
// Q is "round onto the grid": any WeightGrid (the reference's quantizer is the integer asymmetric per-group grid).
// The output errors are evaluated as quadratic forms: ||X Dᵀ||² = tr(D XᵀX Dᵀ) through a Cholesky factor of XᵀX
// when there are more tokens than features (else through X itself), and the clip errors through each group's
// Gram matrix — the same quantities as the reference's, at a fraction of the arithmetic.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <omp.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/core/threads.hpp"
#include "qk/methods/grid.hpp"
#include "qk/linalg/dense.hpp"
#include "qk/methods/rtn.hpp"

namespace qk {

struct AwqOptions {
  bool search_scale = true;
  bool search_clip = true;
  int n_grid = 20;              // scale exponents α = i / n_grid, i < n_grid; clip shrinks 1 - i / n_grid
  double max_shrink = 0.5;      // clip search down to (1 - max_shrink) of the group's max |w|
  int64_t clip_tokens = 512;    // n_sample_token of the reference
  int threads = 0;
};

struct AwqResult {
  RowMatrixXf dequantized;      // Ŵ = Q(clip(W·diag(s)))·diag(s)⁻¹, the layer's effective weight
  RowMatrixXf scaled_quantized; // Q(clip(W·diag(s))): what the grid encodes; the input must be divided by s
  Eigen::VectorXf scales;       // s (1 where no scale search): fold 1/s into the previous operation
  double ratio = 0;             // chosen α
  Eigen::MatrixXf clip;         // rows x groups: max |w| kept per group (after scaling); +inf without clip search
  std::vector<double> ratio_losses;  // mean squared output error of each α tried
};

namespace detail {

// Sum over rows of ||(D row) · F||² with F (k x m): the output error of weight error D (n x k).
// lower: F is lower triangular (a Cholesky factor, zeros stored above the diagonal), which halves the arithmetic.
// F is taken row-major (its rows are what the GEMM packs), D in slices of 1024 rows, each product on all threads.
inline double quad_error(const Eigen::MatrixXf& D, const RowMatrixXf& F, bool lower, int threads) {
  const int64_t n = D.rows();
  double total = 0;
  Eigen::MatrixXf P(std::min<int64_t>(n, 1024), F.cols());
  for (int64_t a = 0; a < n; a += P.rows()) {
    const int64_t m = std::min<int64_t>(P.rows(), n - a);
    auto Pm = P.topRows(m);
    if (lower) linalg::trmm_right_lower(Pm, D.middleRows(a, m), F, 1.0f, 0.0f, threads);
    else linalg::gemm(Pm, D.middleRows(a, m), F, 1.0f, 0.0f, threads);
    total += Pm.cast<double>().squaredNorm();
  }
  return total;
}

// RTN of Wc (column-major) onto the grid into Q.
inline void grid_round(const Eigen::MatrixXf& Wc, WeightGrid& grid, Eigen::MatrixXf& Q) {
  const int64_t cols = Wc.cols(), bs = grid.block_size();
  Q.resize(Wc.rows(), cols);
  for (int64_t c0 = 0; c0 < cols; c0 += bs) {
    grid.fit(c0, Wc.middleCols(c0, bs), nullptr);
    for (int64_t c = c0; c < c0 + bs; ++c) grid.quantize_column(c, Wc.col(c), Q.col(c));
  }
}

}  // namespace detail

// AWQ's per-input-channel scales for exponent `ratio` (α): s = max(x̄^α, 1e-4), then s /= sqrt(max(s)·min(s)),
// x̄ the mean |x| of each input column. awq() and the block-scored search (awq_search.hpp) both use it.
inline Eigen::VectorXf awq_scale_vector(const Eigen::VectorXf& xmean, double ratio) {
  Eigen::VectorXf s(xmean.size());
  for (Eigen::Index j = 0; j < xmean.size(); ++j)
    s[j] = std::max(static_cast<float>(std::pow(static_cast<double>(xmean[j]), ratio)), 1e-4f);
  s /= std::sqrt(s.maxCoeff() * s.minCoeff());
  return s;
}

// AWQ of W (rows x cols) with calibration activations X (tokens x cols) onto `grid`. The grid ends holding the
// encoding of scaled_quantized.
inline AwqResult awq(const Eigen::Ref<const RowMatrixXf>& W, const Eigen::Ref<const RowMatrixXf>& X, WeightGrid& grid,
                     const AwqOptions& o = {}) {
  const int64_t rows = W.rows(), cols = W.cols(), T = X.rows();
  if (X.cols() != cols) fail<ShapeError>("AWQ: X has {} features, W has {} input columns", X.cols(), cols);
  // calibration that carries nothing is bad data (exit 1), not a usage error: no tokens, or inputs all zero
  if (T == 0) fail<NumericError>("AWQ: no calibration tokens (the calibration set is empty)");
  if (X.cwiseAbs().maxCoeff() == 0.0f)
    fail<NumericError>("AWQ: the calibration activations are all zero: they say nothing about the layer");
  if (o.n_grid <= 0) fail<InvalidArgument>("AWQ: n_grid must be positive, got {}", o.n_grid);
  if (!(o.max_shrink >= 0 && o.max_shrink < 1)) fail<InvalidArgument>("AWQ: max_shrink {} not in [0, 1)", o.max_shrink);
  for (Eigen::Index r = 0; r < rows; ++r)
    if (!detail::all_finite(W.row(r).data(), cols)) detail::report_non_finite(W, "AWQ: W");
  for (Eigen::Index t = 0; t < T; ++t)
    if (!detail::all_finite(X.row(t).data(), cols)) detail::report_non_finite(X, "AWQ: calibration activations X");
  const int nt = resolve_threads(o.threads);
  detail::OmpThreadsScope scope(nt);

  grid.reset(rows, cols);
  const int64_t gs = grid.block_size();
  if (gs <= 0 || cols % gs != 0)
    fail<InvalidArgument>("AWQ: grid {} block {} does not divide {} columns", grid.name(), gs, cols);

  Eigen::MatrixXf Wc;
  linalg::copy_blocked(Wc, W);
  AwqResult res;
  res.scales = Eigen::VectorXf::Ones(cols);
  Eigen::MatrixXf Q;

  // ---- 1. scale search
  if (o.search_scale) {
    Eigen::VectorXf xmean(cols);
    {
      Eigen::VectorXd acc = Eigen::VectorXd::Zero(cols);
      for (int64_t t = 0; t < T; ++t) acc += X.row(t).transpose().cast<double>().cwiseAbs();
      xmean = (acc / static_cast<double>(T)).cast<float>();
    }
    // F with ||X dᵀ||² = ||d F||²: the Cholesky factor of XᵀX (cols x cols) or Xᵀ itself (cols x T).
    Eigen::MatrixXf F;
    bool have_factor = false;
    if (T >= cols) {
      linalg::zero_touched(F, cols, cols);
      linalg::gram_accumulate(F, X, nt);
      have_factor = linalg::cholesky_lower_inplace(F, nt) && F.allFinite();
      if (have_factor) F.triangularView<Eigen::StrictlyUpper>().setZero();
    }
    if (!have_factor) F = X.transpose();
    RowMatrixXf Fr;  // row-major copy for quad_error's products
    linalg::copy_blocked(Fr, F);
    F.resize(0, 0);
    const double norm = static_cast<double>(rows) * static_cast<double>(T);
    double best = std::numeric_limits<double>::infinity();
    Eigen::VectorXf best_s = res.scales;
    Eigen::MatrixXf Ws(rows, cols), D(rows, cols);
    for (int i = 0; i < o.n_grid; ++i) {
      const double ratio = static_cast<double>(i) / o.n_grid;
      const Eigen::VectorXf s = awq_scale_vector(xmean, ratio);
      Ws = Wc * s.asDiagonal();
      detail::grid_round(Ws, grid, Q);
      D = Wc - Q * s.cwiseInverse().asDiagonal();
      const double loss = detail::quad_error(D, Fr, have_factor, nt) / norm;
      res.ratio_losses.push_back(loss);
      if (loss < best) {
        best = loss;
        best_s = s;
        res.ratio = ratio;
      }
    }
    res.scales = best_s;
  }

  // ---- 2. apply the scales
  Eigen::MatrixXf Ws = Wc * res.scales.asDiagonal();
  const int64_t ngroups = cols / gs;
  res.clip = Eigen::MatrixXf::Constant(rows, ngroups, std::numeric_limits<float>::infinity());

  // ---- 3. clip search
  if (o.search_clip) {
    const int64_t step = std::max<int64_t>(1, T / std::max<int64_t>(1, o.clip_tokens));
    const int64_t ns = (T + step - 1) / step;
    Eigen::MatrixXf Xs(ns, cols);  // sub-sampled tokens, divided by the scales
    for (int64_t t = 0; t < ns; ++t) Xs.row(t) = X.row(t * step).cwiseQuotient(res.scales.transpose());
    const int n_shrink = static_cast<int>(o.max_shrink * o.n_grid);
    Eigen::MatrixXf Wb(rows, gs), Qb(rows, gs), Db(rows, gs), Lg;
    Eigen::VectorXf amax(rows), best_err(rows), err(rows);
    for (int64_t g = 0; g < ngroups; ++g) {
      const int64_t c0 = g * gs;
      Eigen::MatrixXf Gg(gs, gs);
      linalg::gemm(Gg, Xs.middleCols(c0, gs).transpose(), Xs.middleCols(c0, gs), 1.0f, 0.0f, nt);
      const auto blk = Ws.middleCols(c0, gs);
      amax = blk.cwiseAbs().rowwise().maxCoeff();
      best_err.setConstant(std::numeric_limits<float>::infinity());
      Eigen::VectorXf best_max = amax;
      for (int i = 0; i < n_shrink; ++i) {
        const Eigen::VectorXf mv = amax * static_cast<float>(1.0 - static_cast<double>(i) / o.n_grid);
        for (int64_t c = 0; c < gs; ++c)
          Wb.col(c) = blk.col(c).cwiseMax(-mv).cwiseMin(mv);
        grid.fit(c0, Wb, nullptr);
        for (int64_t c = 0; c < gs; ++c) grid.quantize_column(c0 + c, Wb.col(c), Qb.col(c));
        Db = Qb - blk;
        // err_r = d_r G d_rᵀ / ns (the reference's mean over sampled tokens)
        Eigen::MatrixXf P(rows, gs);
        linalg::gemm(P, Db, Gg, 1.0f, 0.0f, nt);
        err = (P.cwiseProduct(Db).rowwise().sum()) / static_cast<float>(ns);
        for (int64_t r = 0; r < rows; ++r)
          if (err[r] < best_err[r]) {
            best_err[r] = err[r];
            best_max[r] = mv[r];
          }
      }
      res.clip.col(g) = best_max;
      for (int64_t c = 0; c < gs; ++c) Ws.col(c0 + c) = Ws.col(c0 + c).cwiseMax(-best_max).cwiseMin(best_max);
    }
  }

  // ---- 4. final rounding
  detail::grid_round(Ws, grid, Q);
  res.scaled_quantized = Q;
  res.dequantized = Q * res.scales.cwiseInverse().asDiagonal();
  return res;
}

// AWQ onto an integer scheme: the QuantizedTensor of Q(clip(W·diag(s))) (the input must be divided by s).
inline QuantizedTensor awq_quantize(const Eigen::Ref<const RowMatrixXf>& W, const Eigen::Ref<const RowMatrixXf>& X,
                                    const QuantScheme& s, const AwqOptions& o = {}, AwqResult* info = nullptr) {
  IntGrid grid(s);
  AwqResult r = awq(W, X, grid, o);
  if (info) *info = std::move(r);
  return grid.to_tensor();
}

}  // namespace qk
