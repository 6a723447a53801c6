#pragma once
// Round-to-nearest (RTN) onto any WeightGrid, and IntGrid: the WeightGrid of the core's integer schemes.
//
// IntGrid follows the parameter conventions of the GPTQ reference quantizer (IST-DASLab/gptq quant.py,
// Quantizer.find_params), which are the core's (scheme.hpp): the range of a group is widened to contain 0,
// asymmetric scale = (max - min) / maxq with zero = round(-min / scale), symmetric scale = 2·amax / maxq with the
// zero-point in the middle of the unsigned code range ((maxq + 1) / 2). Codes: q = clamp(round(w / scale) + zero,
// 0, maxq), value = scale · (q - zero), round-half-to-even as torch.round.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/pack.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/methods/grid.hpp"

namespace qk {

// Integer grid for a QuantScheme with per-channel or per-group granularity (per-tensor is not a
// column-block grid: use qk::quantize). Records the codes of every column it quantizes, so to_tensor() gives the
// QuantizedTensor of the last pass. With GPTQ act-order (dynamic groups) the columns are visited in a permuted
// order and fitted in that order: set_permutation() maps them back and fills g_idx.
class IntGrid final : public WeightGrid {
 public:
  explicit IntGrid(const QuantScheme& s) : scheme_(s) {
    scheme_.validate();
    if (s.granularity == Granularity::PerTensor)
      fail<InvalidArgument>("IntGrid: per-tensor schemes are not column-block grids (use qk::quantize)");
  }

  const QuantScheme& scheme() const { return scheme_; }
  int64_t block_size() const override {
    return scheme_.granularity == Granularity::PerGroup ? scheme_.group_size : std::max<int64_t>(cols_, 1);
  }
  void reset(int64_t rows, int64_t cols) override {
    scheme_.validate_for(rows, cols);
    rows_ = rows;
    cols_ = cols;
    const int64_t ng = scheme_.param_cols(cols);
    params_ = QuantParams(rows, ng);
    params_.scale.setOnes();
    params_.zero_point.setZero();
    codes_.assign(static_cast<size_t>(rows * cols), 0);
    g_idx_.clear();
  }

  // Per-row min/max of the block (importance is ignored: an integer grid of min/max parameters).
  void fit(int64_t c0, const Eigen::Ref<const Eigen::MatrixXf>& W, const float*) override {
    const int64_t bs = block_size();
    if (c0 < 0 || c0 % bs != 0 || c0 + bs > cols_ || W.rows() != rows_ || W.cols() != bs)
      fail<ShapeError>("IntGrid::fit: block at column {} of {}x{} does not fit [{}, {}] with block {}", c0, W.rows(),
                       W.cols(), rows_, cols_, bs);
    const int64_t g = c0 / bs;
    std::vector<float> lo(static_cast<size_t>(rows_)), hi(static_cast<size_t>(rows_));
    for (int64_t r = 0; r < rows_; ++r) {
      lo[r] = W(r, 0);
      hi[r] = W(r, 0);
    }
    for (int64_t c = 1; c < bs; ++c) {
      const float* col = W.col(c).data();
      for (int64_t r = 0; r < rows_; ++r) {
        lo[r] = std::min(lo[r], col[r]);
        hi[r] = std::max(hi[r], col[r]);
      }
    }
    for (int64_t r = 0; r < rows_; ++r) {
      if (!std::isfinite(lo[r]) || !std::isfinite(hi[r]))
        fail<NumericError>("IntGrid::fit: row {} of the block at column {} holds NaN or Inf (weights beyond float "
                           "after an update such as GPTQ's error feedback, or non-finite input)",
                           r, c0);
      range_to_params(lo[r], hi[r], scheme_, params_.scale(r, g), params_.zero_point(r, g));
    }
  }

  void quantize_column(int64_t c, const Eigen::Ref<const Eigen::VectorXf>& w,
                       Eigen::Ref<Eigen::VectorXf> out) override {
    quantize_rows(c, 0, rows_, w.data(), out.data());
  }

  // quantize_column for rows [r0, r1) only (w and out point at row r0); lets callers split a column across threads.
  void quantize_rows(int64_t c, int64_t r0, int64_t r1, const float* w, float* out) {
    const int64_t g = c / block_size();
    const int64_t ng = params_.scale.cols();  // parameters are row-major: (r, g) at r * ng + g
    const float* sc = params_.scale.data() + g;
    const int32_t* zp = params_.zero_point.data() + g;
    const float lo = static_cast<float>(scheme_.qmin()), hi = static_cast<float>(scheme_.qmax());
    const float qmin = lo;
    uint8_t* code = codes_.data() + c * rows_;
    constexpr float magic = 12582912.0f;  // 1.5·2^23: round half to even in the default rounding mode
    for (int64_t r = r0; r < r1; ++r) {
      const float s = sc[r * ng], z = static_cast<float>(zp[r * ng]);
      float q = (w[r - r0] / s + magic) - magic;
      q += z;
      q = q < lo ? lo : q;
      q = q > hi ? hi : q;
      code[r] = static_cast<uint8_t>(static_cast<int>(q - qmin));
      out[r - r0] = s * (q - z);
    }
  }

  const char* name() const override {
    name_ = scheme_.describe();
    return name_.c_str();
  }

  // The columns were visited as grid columns j = 0..cols-1 standing for weight columns perm[j] (GPTQ act-order
  // with groups formed in that order): reorders the codes to weight columns and records g_idx[perm[j]] = j / block.
  void set_permutation(std::span<const int32_t> perm) {
    if (static_cast<int64_t>(perm.size()) != cols_)
      fail<ShapeError>("IntGrid::set_permutation: {} entries for {} columns", perm.size(), cols_);
    std::vector<uint8_t> c2(codes_.size());
    g_idx_.assign(static_cast<size_t>(cols_), 0);
    const int64_t bs = block_size();
    for (int64_t j = 0; j < cols_; ++j) {
      const int64_t c = perm[static_cast<size_t>(j)];
      if (c < 0 || c >= cols_) fail<InvalidArgument>("IntGrid::set_permutation: entry {} out of range", c);
      std::copy_n(codes_.data() + j * rows_, rows_, c2.data() + c * rows_);
      g_idx_[static_cast<size_t>(c)] = static_cast<int32_t>(j / bs);
    }
    codes_.swap(c2);
  }

  const QuantParams& params() const { return params_; }
  int code(int64_t r, int64_t c) const { return codes_[static_cast<size_t>(c * rows_ + r)] + scheme_.qmin(); }

  // The QuantizedTensor of the codes recorded so far (g_idx set when set_permutation was used).
  QuantizedTensor to_tensor() const {
    QuantizedTensor q;
    q.rows = rows_;
    q.cols = cols_;
    q.scheme = scheme_;
    q.params = params_;
    q.g_idx = g_idx_;
    const int64_t rb = q.row_bytes();
    q.packed.assign(static_cast<size_t>(rb * rows_), 0);
    std::vector<uint8_t> row(static_cast<size_t>(cols_));
    for (int64_t r = 0; r < rows_; ++r) {
      for (int64_t c = 0; c < cols_; ++c) row[static_cast<size_t>(c)] = codes_[static_cast<size_t>(c * rows_ + r)];
      pack_bits(row, scheme_.bits, std::span<uint8_t>(q.row_data(r), static_cast<size_t>(rb)));
    }
    return q;
  }

 private:
  QuantScheme scheme_;
  int64_t rows_ = 0, cols_ = 0;
  QuantParams params_;
  std::vector<uint8_t> codes_;  // column-major: codes_[c * rows + r] = q - qmin
  std::vector<int32_t> g_idx_;
  mutable std::string name_;
};

// RTN onto a grid: every block fitted from W itself, every column rounded. Returns the dequantized weight
// (row-major, like W); the grid keeps its encoding.
template <typename Derived>
RowMatrixXf rtn(const Eigen::MatrixBase<Derived>& W, WeightGrid& grid) {
  const Eigen::MatrixXf Wc = W.template cast<float>();  // column-major: grid columns are contiguous
  if (!detail::all_finite(Wc.data(), Wc.size())) detail::report_non_finite(Wc, "rtn: W");
  const int64_t rows = Wc.rows(), cols = Wc.cols();
  grid.reset(rows, cols);
  const int64_t bs = grid.block_size();
  if (bs <= 0 || cols % bs != 0)
    fail<InvalidArgument>("rtn: grid {} block {} does not divide {} columns", grid.name(), bs, cols);
  Eigen::MatrixXf Q(rows, cols);
  for (int64_t c0 = 0; c0 < cols; c0 += bs) {
    grid.fit(c0, Wc.middleCols(c0, bs), nullptr);
    for (int64_t c = c0; c < c0 + bs; ++c) grid.quantize_column(c, Wc.col(c), Q.col(c));
  }
  return Q;
}

// RTN with an integer scheme (the GPTQ reference quantizer's conventions): the QuantizedTensor.
template <typename Derived>
QuantizedTensor rtn_quantize(const Eigen::MatrixBase<Derived>& W, const QuantScheme& s) {
  IntGrid g(s);
  rtn(W, g);
  return g.to_tensor();
}

}  // namespace qk
