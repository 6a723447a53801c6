#pragma once
// Error metrics between a reference tensor and its quantized approximation. Sums run in double.
//
//   mse         mean((a - b)^2)
//   sqnr_db     10·log10(sum a^2 / sum (a - b)^2)          (signal power over noise power)
//   cosine      <a, b> / (|a| |b|)
//   max_abs     max |a - b|
//   relative_output_error(X, W, Ŵ) = ||X Wᵀ - X Ŵᵀ||²_F / ||X Wᵀ||²_F   (layer output error E of GPTQ/AWQ papers)
//
// For a b-bit uniform quantizer of step s, noise is s²/12 when the input fills the quantizer's range; for a
// full-scale uniform input the power SQNR is 6.02·b dB and the peak-power SQNR (peak²/MSE) is 6.02·b + 4.77 dB
// (docs/design.md "Quantization noise").
#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>

#include "qk/core/error.hpp"

namespace qk {

namespace detail {
template <typename A, typename B>
void check_same_shape(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b, const char* what) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    fail<ShapeError>("{}: shapes differ: [{}, {}] vs [{}, {}]", what, a.rows(), a.cols(), b.rows(), b.cols());
}
}  // namespace detail

template <typename A, typename B>
double mse(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  detail::check_same_shape(a, b, "mse");
  if (a.size() == 0) return 0.0;
  return (a.template cast<double>() - b.template cast<double>()).squaredNorm() / static_cast<double>(a.size());
}

// Infinity when b == a exactly; -Infinity when a is all zeros and b is not.
template <typename A, typename B>
double sqnr_db(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  detail::check_same_shape(a, b, "sqnr");
  const double sig = a.template cast<double>().squaredNorm();
  const double noise = (a.template cast<double>() - b.template cast<double>()).squaredNorm();
  if (noise == 0.0) return std::numeric_limits<double>::infinity();
  if (sig == 0.0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(sig / noise);
}

// 1 when both are zero; 0 when exactly one is zero.
template <typename A, typename B>
double cosine(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  detail::check_same_shape(a, b, "cosine");
  const double na = a.template cast<double>().norm(), nb = b.template cast<double>().norm();
  if (na == 0.0 && nb == 0.0) return 1.0;
  if (na == 0.0 || nb == 0.0) return 0.0;
  const double dot = (a.template cast<double>().array() * b.template cast<double>().array()).sum();
  return dot / (na * nb);
}

template <typename A, typename B>
double max_abs_error(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  detail::check_same_shape(a, b, "max_abs_error");
  if (a.size() == 0) return 0.0;
  return (a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff();
}

// E = ||X Wᵀ - X Ŵᵀ||²_F / ||X Wᵀ||²_F with X [tokens, in], W and Ŵ [out, in].
// Computed as ||X (W - Ŵ)ᵀ||² so the difference is not lost to cancellation.
template <typename DX, typename DW, typename DQ>
double relative_output_error(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DW>& W,
                             const Eigen::MatrixBase<DQ>& Wq) {
  detail::check_same_shape(W, Wq, "relative_output_error");
  if (X.cols() != W.cols())
    fail<ShapeError>("relative_output_error: X has {} columns but W has {} input features", X.cols(), W.cols());
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  const M Xf = X.template cast<float>();
  const M Wf = W.template cast<float>();
  const M D = Wf - Wq.template cast<float>();
  const M ref = Xf * Wf.transpose();
  const M err = Xf * D.transpose();
  const double den = ref.template cast<double>().squaredNorm();
  const double num = err.template cast<double>().squaredNorm();
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return num / den;
}

}  // namespace qk
