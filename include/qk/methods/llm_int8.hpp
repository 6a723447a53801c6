#pragma once
// LLM.int8() (Dettmers, Lewis, Belkada, Zettlemoyer: "LLM.int8(): 8-bit Matrix Multiplication for Transformers at
// Scale", NeurIPS 2022, arXiv:2208.07339): mixed-precision decomposition of Y = X Wᵀ.
//  - outlier features: input columns j with max_t |X_tj| ≥ threshold (6.0 in the paper) for the current X;
//  - those columns are multiplied in floating point: Y_o = X[:, O] W[:, O]ᵀ;
//  - the rest in int8 with vector-wise scales: each row of X (token) and each row of W (output channel) gets
//    absmax / 127; Y_r = (sx sw) ⊙ (int8(X_r) int8(W_r)ᵀ), accumulated exactly in integers;
//  - Y = Y_o + Y_r.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/threads.hpp"
#include "qk/linalg/dense.hpp"

namespace qk {

struct LlmInt8Options {
  float threshold = 6.0f;  // |x| at or above which an input feature is an outlier
  int threads = 0;
};

struct LlmInt8Result {
  RowMatrixXf Y;                     // tokens x out
  std::vector<int64_t> outlier_cols; // the input features computed in floating point
};

namespace detail {
// Symmetric int8 of each row with absmax / 127 (rows of zeros: scale 1); writes codes as int32 values in a double
// matrix so the product is exact (|sum| ≤ 127²·K < 2^53).
inline void int8_rows(const RowMatrixXf& M, Eigen::MatrixXd& codes, Eigen::VectorXd& scale) {
  codes.resize(M.rows(), M.cols());
  scale.resize(M.rows());
  for (Eigen::Index r = 0; r < M.rows(); ++r) {
    const float amax = M.row(r).cwiseAbs().maxCoeff();
    const float s = amax > 0 ? amax / 127.0f : 1.0f;
    scale[r] = s;
    for (Eigen::Index c = 0; c < M.cols(); ++c)
      codes(r, c) = std::clamp(std::nearbyint(M(r, c) / s), -127.0f, 127.0f);
  }
}
}  // namespace detail

// Mixed-precision product Y = X Wᵀ (X: tokens x in, W: out x in).
inline LlmInt8Result llm_int8_matmul(const Eigen::Ref<const RowMatrixXf>& X, const Eigen::Ref<const RowMatrixXf>& W,
                                     const LlmInt8Options& o = {}) {
  if (X.cols() != W.cols())
    fail<ShapeError>("LLM.int8(): X has {} features, W has {} input columns", X.cols(), W.cols());
  if (!(o.threshold > 0)) fail<InvalidArgument>("LLM.int8(): threshold must be positive, got {}", o.threshold);
  for (Eigen::Index t = 0; t < X.rows(); ++t)
    if (!detail::all_finite(X.row(t).data(), X.cols())) detail::report_non_finite(X, "LLM.int8(): X");
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    if (!detail::all_finite(W.row(r).data(), W.cols())) detail::report_non_finite(W, "LLM.int8(): W");
  detail::OmpThreadsScope scope(resolve_threads(o.threads));
  LlmInt8Result res;
  const Eigen::VectorXf xmax = X.rows() ? Eigen::VectorXf(X.cwiseAbs().colwise().maxCoeff().transpose())
                                        : Eigen::VectorXf::Zero(X.cols());
  std::vector<char> is_out(static_cast<size_t>(X.cols()), 0);
  for (Eigen::Index j = 0; j < X.cols(); ++j)
    if (xmax[j] >= o.threshold) {
      is_out[static_cast<size_t>(j)] = 1;
      res.outlier_cols.push_back(j);
    }
  RowMatrixXf Xr = X, Wr = W;
  const auto no = static_cast<Eigen::Index>(res.outlier_cols.size());
  RowMatrixXf Xo(X.rows(), no), Wo(W.rows(), no);
  for (Eigen::Index k = 0; k < no; ++k) {
    const Eigen::Index j = res.outlier_cols[static_cast<size_t>(k)];
    Xo.col(k) = X.col(j);
    Wo.col(k) = W.col(j);
    Xr.col(j).setZero();
    Wr.col(j).setZero();
  }
  Eigen::MatrixXd xc, wc;
  Eigen::VectorXd sx, sw;
  detail::int8_rows(Xr, xc, sx);
  detail::int8_rows(Wr, wc, sw);
  const Eigen::MatrixXd acc = xc * wc.transpose();
  res.Y = (sx.asDiagonal() * acc * sw.asDiagonal()).cast<float>();
  if (no > 0) res.Y.noalias() += Xo * Wo.transpose();
  return res;
}

}  // namespace qk
