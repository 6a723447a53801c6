#pragma once
// Quantization-aware training (QAT): fake quantization with the straight-through estimator (STE), on the core's
// integer schemes and on any WeightGrid (IntGrid, ggml block types), for weights and activations. Learned step
// sizes (LSQ, LSQ+) are in qk/methods/lsq.hpp, which this header includes.
//
// The forward pass computes y = Q(x), the value a quantized layer computes with (qk::fake_quant for schemes, the
// grid's rounding for grids). Q is piecewise constant, so its true derivative is 0 almost everywhere; the STE
// (Bengio, Léonard & Courville 2013, arXiv:1308.3432) replaces round() by the identity in the backward pass and
// keeps the clamp, as QAT with fake quantization does (Jacob et al. 2018, arXiv:1712.05877; Esser et al. 2020,
// arXiv:1902.08153, eq. 5):
//
//   dL/dx = dL/dy   where x lies inside the clipping range of its parameter group,
//   dL/dx = 0       outside.
//
// Clipping range of a scheme group with scale s and zero-point z: [(qmin - z)·s, (qmax - z)·s], i.e.
// qmin - z <= x / s <= qmax - z on the unrounded quotient (the LSQ convention; the boundary counts as inside).
// PyTorch's FakeQuantize tests the rounded quotient instead, which passes up to half a step more on each side.
// The parameters are constants of the backward pass: when they come from the data (min/max, a dynamic
// per-token range) no gradient flows through them, as with PyTorch's observers.
//
// Weights are [out_features, in_features]: PerChannel = one range per output row, PerGroup = per row and group of
// input columns. Activations are [tokens, features]: PerTensor with calibrated parameters (an observer's
// params(), qk/calib) is static quantization, PerChannel computed from the data is per-token dynamic
// quantization, PerGroup per token and group of features.
//
// Grids are taken through the WeightGrid interface only (methods never see formats): fake_quant_ste(W, grid) fits
// every block from W (or keeps the last fit), rounds every column, and finds each element's clipping range by
// probing the grid: quantize_column on a column of large positive and negative values gives the largest and
// smallest value the grid can represent in that row and column (for IntGrid exactly (qmax - z)·s and (qmin - z)·s;
// for ggml types the clamped extreme codes of the element's block or sub-block). An element passes the gradient
// when it lies between the two. The column is quantized for real last, so the grid records the true codes and
// can be encoded afterwards (IntGrid::to_tensor, GgmlGrid::encode).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/methods/grid.hpp"
#include "qk/methods/lsq.hpp"

namespace qk {

// 1 where the gradient passes, 0 where it is stopped; the shape of the quantized matrix.
using PassMask = Eigen::Matrix<uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// dL/dx = dL/dy masked by `pass` (the STE backward). ShapeError when the shapes differ.
template <typename Derived>
RowMatrixXf ste_backward(const PassMask& pass, const Eigen::MatrixBase<Derived>& grad_y) {
  if (grad_y.rows() != pass.rows() || grad_y.cols() != pass.cols())
    fail<ShapeError>("ste_backward: gradient is [{}, {}], the quantized matrix [{}, {}]", grad_y.rows(),
                     grad_y.cols(), pass.rows(), pass.cols());
  RowMatrixXf g(grad_y.rows(), grad_y.cols());
  for (Eigen::Index r = 0; r < g.rows(); ++r)
    for (Eigen::Index c = 0; c < g.cols(); ++c)
      g(r, c) = pass(r, c) ? static_cast<float>(grad_y(r, c)) : 0.0f;
  return g;
}

// Result of a fake-quantization forward pass kept for its backward pass.
struct FakeQuantSte {
  RowMatrixXf value;   // Q(x)
  PassMask pass;       // the STE mask
  QuantParams params;  // the scheme's parameters used (empty for grids)

  template <typename Derived>
  RowMatrixXf backward(const Eigen::MatrixBase<Derived>& grad_y) const {
    return ste_backward(pass, grad_y);
  }
  // Share of elements inside their clipping range (1 for an empty matrix).
  double pass_fraction() const {
    if (pass.size() == 0) return 1.0;
    return static_cast<double>(pass.template cast<int64_t>().sum()) / static_cast<double>(pass.size());
  }
};

// The STE mask of X under a scheme with the given parameters (param_rows x param_cols of the scheme).
template <typename Derived>
PassMask ste_pass_mask(const Eigen::MatrixBase<Derived>& X, const QuantScheme& s, const QuantParams& p) {
  s.validate_for(X.rows(), X.cols());
  if (p.rows() != s.param_rows(X.rows()) || p.cols() != s.param_cols(X.cols()))
    fail<ShapeError>("ste_pass_mask: parameters are {}x{}, scheme {} on [{}, {}] needs {}x{}", p.rows(), p.cols(),
                     s.describe(), X.rows(), X.cols(), s.param_rows(X.rows()), s.param_cols(X.cols()));
  PassMask m(X.rows(), X.cols());
  const int64_t span = s.span(X.cols());
  std::vector<float> buf;
  for (Eigen::Index r = 0; r < X.rows(); ++r) {
    const float* x = detail::row_pointer(X, r, buf);
    const Eigen::Index pr = s.granularity == Granularity::PerTensor ? 0 : r;
    for (Eigen::Index c = 0; c < X.cols(); ++c) {
      const Eigen::Index g = c / span;
      const float sc = p.scale(pr, g);
      const int z = p.zero_point(pr, g);
      const float lo = static_cast<float>(s.qmin() - z), hi = static_cast<float>(s.qmax() - z);
      const float u = x[c] / sc;  // the core's quotient (row_kernels: x / scale, then clamp, then round)
      m(r, c) = (u >= lo && u <= hi) ? 1 : 0;
    }
  }
  return m;
}

// Fake quantization with the STE on a scheme: value = qk::fake_quant(X, s, params) (bit-identical), with
// params = *given or computed from X's min/max (compute_params). NaN/Inf: NumericError naming [row, col].
template <typename Derived>
FakeQuantSte fake_quant_ste(const Eigen::MatrixBase<Derived>& X, const QuantScheme& s,
                            const QuantParams* given = nullptr) {
  s.validate_for(X.rows(), X.cols());
  FakeQuantSte r;
  r.params = given ? *given : compute_params(X, s);
  r.value = fake_quant(X, s, &r.params);  // checks the parameters' shape and X's values
  r.pass = ste_pass_mask(X, s, r.params);
  return r;
}

struct GridSteOptions {
  // Per input column (cols values), handed to WeightGrid::fit for importance-weighted grids; nullptr: none.
  const float* importance = nullptr;
  // true: reset the grid and fit every block from W. false: keep the parameters of the grid's last fit, which
  // must have been made on a weight of the same shape (e.g. scales frozen while the weights train).
  bool refit = true;
};

namespace detail {

// The grid's representable range in column c for every row: hi = Q(+big), lo = Q(-big), with big grown until Q
// stops changing (at most 8 rounds of x16 from 16·max|w| of the block row). Rows whose grid never saturates
// (no clamping) get an unbounded range.
inline void grid_column_range(WeightGrid& grid, int64_t c, const Eigen::VectorXf& start, Eigen::VectorXf& lo,
                              Eigen::VectorXf& hi) {
  const Eigen::Index rows = start.size();
  Eigen::VectorXf big = start, probe(rows), a(rows), b(rows), a2(rows), b2(rows);
  std::vector<uint8_t> open(static_cast<size_t>(rows), 1);
  lo.resize(rows);
  hi.resize(rows);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  for (int round = 0; round < 8; ++round) {
    grid.quantize_column(c, big, a);
    probe = -big;
    grid.quantize_column(c, probe, b);
    probe = 4.0f * big;
    grid.quantize_column(c, probe, a2);
    probe = -4.0f * big;
    grid.quantize_column(c, probe, b2);
    bool any_open = false;
    for (Eigen::Index r = 0; r < rows; ++r) {
      if (!open[static_cast<size_t>(r)]) continue;
      if (a(r) == a2(r) && b(r) == b2(r)) {
        lo(r) = std::min(a(r), b(r));
        hi(r) = std::max(a(r), b(r));
        open[static_cast<size_t>(r)] = 0;
      } else if (big(r) > 1e30f) {
        lo(r) = -kInf;
        hi(r) = kInf;
        open[static_cast<size_t>(r)] = 0;
      } else {
        big(r) *= 16.0f;
        any_open = true;
      }
    }
    if (!any_open) return;
  }
  for (Eigen::Index r = 0; r < rows; ++r)
    if (open[static_cast<size_t>(r)]) {
      lo(r) = -kInf;
      hi(r) = kInf;
    }
}

}  // namespace detail

// Fake quantization with the STE onto a grid (see the top of this file). Returns the grid's values and the mask;
// the grid keeps the codes of W (encode it afterwards). InvalidArgument when the grid's block does not divide
// W's columns; NumericError for NaN/Inf in W. The importance is only read when refitting.
template <typename Derived>
FakeQuantSte fake_quant_ste(const Eigen::MatrixBase<Derived>& W, WeightGrid& grid, const GridSteOptions& o = {}) {
  const Eigen::MatrixXf Wc = W.template cast<float>();  // column-major: grid columns are contiguous
  if (!Wc.allFinite()) detail::report_non_finite(Wc, "fake_quant_ste: W");
  const int64_t rows = Wc.rows(), cols = Wc.cols();
  if (o.refit) grid.reset(rows, cols);
  const int64_t bs = grid.block_size();
  if (bs <= 0 || cols % bs != 0)
    fail<InvalidArgument>("fake_quant_ste: grid {} block {} does not divide {} columns", grid.name(), bs, cols);
  FakeQuantSte r;
  r.value.resize(rows, cols);
  r.pass.resize(rows, cols);
  Eigen::VectorXf out(rows), lo(rows), hi(rows), start(rows);
  for (int64_t c0 = 0; c0 < cols; c0 += bs) {
    const auto block = Wc.middleCols(c0, bs);
    if (o.refit) grid.fit(c0, block, o.importance ? o.importance + c0 : nullptr);
    start = 16.0f * block.cwiseAbs().rowwise().maxCoeff();
    for (Eigen::Index i = 0; i < rows; ++i)
      if (!(start(i) > 0.0f)) start(i) = 1.0f;
    for (int64_t c = c0; c < c0 + bs; ++c) {
      detail::grid_column_range(grid, c, start, lo, hi);
      grid.quantize_column(c, Wc.col(c), out);  // last: the grid records W's codes
      for (int64_t i = 0; i < rows; ++i) {
        const float w = Wc(i, c);
        r.value(i, c) = out(i);
        r.pass(i, c) = (w >= lo(i) && w <= hi(i)) ? 1 : 0;
      }
    }
  }
  return r;
}

}  // namespace qk
