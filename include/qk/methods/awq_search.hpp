#pragma once
// AWQ's scale search scored on a block's output, as the reference implementation scores it (mit-han-lab/llm-awq,
// auto_scale.py: the scales of q/k/v are judged by the attention module's output, those of gate/up by the MLP's),
// rather than each linear layer's own output error as awq() does. The weights that read the same input are searched
// together, so one scale vector serves them all and folds into the norm that produces their input.
//
// For α = 0, 1/n_grid, ..., (n_grid-1)/n_grid: s = awq_scale_vector(x̄, α); every weight becomes
// Ŵ(α) = Q(W·diag(s))·diag(s)⁻¹; score(Ŵ(α)) runs the block with it and returns the squared output error; the α
// with the smallest score wins (the first of equal scores). The caller owns the block and the scoring, so the same
// search serves any architecture.
#include <functional>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/methods/awq.hpp"
#include "qk/methods/grid.hpp"

namespace qk {

struct AwqScaleSearch {
  Eigen::VectorXf scales;      // the best s
  double ratio = 0;            // its α
  std::vector<double> losses;  // score of each α tried
};

// W: the group's weights stacked [rows_total, cols]; xmean: mean |x| of each input column (cols); grid: the grid
// every weight of the group is quantized onto (reset to rows_total x cols by the search). score(D) receives the
// stacked effective weights Ŵ(α) and returns the block's output error (non-negative; NaN is an error).
inline AwqScaleSearch awq_search_scales(const RowMatrixXf& W, const Eigen::VectorXf& xmean, WeightGrid& grid,
                                        const std::function<double(const RowMatrixXf& D)>& score, int n_grid = 20) {
  if (xmean.size() != W.cols())
    fail<ShapeError>("AWQ scale search: {} activation means for {} input columns", xmean.size(), W.cols());
  if (n_grid <= 0) fail<InvalidArgument>("AWQ scale search: n_grid must be positive, got {}", n_grid);
  if (!xmean.allFinite()) fail<NumericError>("AWQ scale search: non-finite activation means");
  AwqScaleSearch r;
  r.scales = Eigen::VectorXf::Ones(W.cols());
  double best = std::numeric_limits<double>::infinity();
  Eigen::MatrixXf Q;
  for (int a = 0; a < n_grid; ++a) {
    const double ratio = static_cast<double>(a) / n_grid;
    const Eigen::VectorXf s = awq_scale_vector(xmean, ratio);
    grid.reset(W.rows(), W.cols());
    const Eigen::MatrixXf Wsc = W * s.asDiagonal();
    detail::grid_round(Wsc, grid, Q);
    const RowMatrixXf D = Q * s.cwiseInverse().asDiagonal();
    const double loss = score(D);
    if (std::isnan(loss)) fail<NumericError>("AWQ scale search: the block's output error is NaN at ratio {}", ratio);
    r.losses.push_back(loss);
    if (loss < best) {
      best = loss;
      r.scales = s;
      r.ratio = ratio;
    }
  }
  return r;
}

}  // namespace qk
