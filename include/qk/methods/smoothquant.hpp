#pragma once
// SmoothQuant (Xiao, Lin, Seznec, Wu, Demouth, Han: "SmoothQuant: Accurate and Efficient Post-Training
// Quantization for Large Language Models", ICML 2023, arXiv:2211.10438) and the W8A8 layer it prepares, with the
// conventions of the reference implementation (mit-han-lab/smoothquant, smooth.py and fake_quant.py):
//  - smoothing: s_j = max(max_t |X_tj|^α / max(max_n |W_nj|, 1e-5)^(1-α), 1e-5); W' = W·diag(s), X' = X·diag(s)⁻¹
//    (the division is folded into the previous operation, e.g. the LayerNorm weight);
//  - weights: int8 per output channel, symmetric absmax: scale_n = max(max_j |W'_nj|, 1e-5) / 127;
//  - activations: int8 symmetric absmax, per token at run time (dynamic) or one scale from the calibration set
//    (per-tensor static): scale = max(max |X'|, 1e-5) / 127.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/scheme.hpp"
#include "qk/core/threads.hpp"
#include "qk/linalg/dense.hpp"

namespace qk {

enum class ActQuant { PerTokenDynamic, PerTensorStatic };

struct SmoothQuantOptions {
  double alpha = 0.5;  // migration strength
  bool smooth = true;  // false: plain W8A8 (s = 1)
  ActQuant act = ActQuant::PerTokenDynamic;
  int threads = 0;
};

// A W8A8 linear layer: int8 weights (per channel) of W' = W·diag(s) and the activation rule.
struct W8A8Layer {
  QuantizedTensor weight;      // s8 per-channel symmetric, narrow range [-127, 127]
  Eigen::VectorXf smooth;      // s: inputs are divided by it
  ActQuant act = ActQuant::PerTokenDynamic;
  float act_scale = 1.0f;      // PerTensorStatic: scale of X' from the calibration set
  RowMatrixXf dequantized_weight() const { return weight.dequantize(); }
  // Ŵ in the original input space, W'_q·diag(s)⁻¹ (what the weight alone becomes, without activation rounding).
  RowMatrixXf effective_weight() const { return weight.dequantize() * smooth.cwiseInverse().asDiagonal(); }
};

namespace detail {
inline void check_finite_matrix(const Eigen::Ref<const RowMatrixXf>& M, const char* what) {
  for (Eigen::Index r = 0; r < M.rows(); ++r)
    if (!all_finite(M.row(r).data(), M.cols())) report_non_finite(M, what);
}
}  // namespace detail

// max_t |X_tj| per input channel (the calibration statistic of SmoothQuant).
inline Eigen::VectorXf channel_absmax(const Eigen::Ref<const RowMatrixXf>& X) {
  detail::check_finite_matrix(X, "calibration activations X");
  return X.cwiseAbs().colwise().maxCoeff().transpose();
}

// The smoothing vector s for activation maxima act_max (in_features) and weight W (out x in).
inline Eigen::VectorXf smoothquant_scales(const Eigen::VectorXf& act_max, const Eigen::Ref<const RowMatrixXf>& W,
                                          double alpha) {
  if (act_max.size() != W.cols())
    fail<ShapeError>("SmoothQuant: {} activation maxima for a weight with {} input columns", act_max.size(), W.cols());
  if (!(alpha >= 0 && alpha <= 1)) fail<InvalidArgument>("SmoothQuant: alpha {} not in [0, 1]", alpha);
  const Eigen::VectorXf wmax = W.cwiseAbs().colwise().maxCoeff().transpose();
  Eigen::VectorXf s(W.cols());
  for (Eigen::Index j = 0; j < W.cols(); ++j) {
    const double a = std::pow(static_cast<double>(act_max[j]), alpha);
    const double w = std::pow(std::max(static_cast<double>(wmax[j]), 1e-5), 1.0 - alpha);
    s[j] = static_cast<float>(std::max(a / w, 1e-5));
  }
  return s;
}

// Smooths W with the calibration activations X and quantizes it to int8 per channel.
inline W8A8Layer smoothquant(const Eigen::Ref<const RowMatrixXf>& W, const Eigen::Ref<const RowMatrixXf>& X,
                             const SmoothQuantOptions& o = {}) {
  if (X.cols() != W.cols())
    fail<ShapeError>("SmoothQuant: X has {} features, W has {} input columns", X.cols(), W.cols());
  if (X.rows() == 0) fail<NumericError>("SmoothQuant: no calibration tokens (the calibration set is empty)");
  detail::check_finite_matrix(W, "SmoothQuant: W");
  const Eigen::VectorXf amax = channel_absmax(X);
  W8A8Layer L;
  L.smooth = o.smooth ? smoothquant_scales(amax, W, o.alpha) : Eigen::VectorXf::Ones(W.cols());
  L.act = o.act;
  const RowMatrixXf Ws = W * L.smooth.asDiagonal();
  QuantScheme s = QuantScheme::per_channel(8, true, true);
  s.narrow_range = true;
  // Per-channel absmax with the reference's floor of 1e-5 on the range.
  QuantParams p(W.rows(), 1);
  for (Eigen::Index r = 0; r < W.rows(); ++r) {
    const float m = std::max(Ws.row(r).cwiseAbs().maxCoeff(), 1e-5f);
    p.scale(r, 0) = m / 127.0f;
    p.zero_point(r, 0) = 0;
  }
  L.weight = quantize(Ws, s, &p);
  const float xmax = (amax.cwiseQuotient(L.smooth)).maxCoeff();
  L.act_scale = std::max(xmax, 1e-5f) / 127.0f;
  return L;
}

// The int8 activations of X for the layer (dequantized: q·scale), after division by the smoothing vector.
inline RowMatrixXf w8a8_quantize_activations(const Eigen::Ref<const RowMatrixXf>& X, const W8A8Layer& L) {
  if (X.cols() != L.smooth.size())
    fail<ShapeError>("W8A8: X has {} features, the layer {}", X.cols(), L.smooth.size());
  detail::check_finite_matrix(X, "W8A8: X");
  RowMatrixXf Xs = X * L.smooth.cwiseInverse().asDiagonal();
  for (Eigen::Index t = 0; t < Xs.rows(); ++t) {
    const float sc = L.act == ActQuant::PerTokenDynamic ? std::max(Xs.row(t).cwiseAbs().maxCoeff(), 1e-5f) / 127.0f
                                                        : L.act_scale;
    for (Eigen::Index j = 0; j < Xs.cols(); ++j) {
      const float q = std::clamp(std::nearbyint(Xs(t, j) / sc), -127.0f, 127.0f);
      Xs(t, j) = q * sc;
    }
  }
  return Xs;
}

// Y = Q(X / s) · Q(W')ᵀ: the layer's output with int8 activations and weights (products of the int8 values and
// their scales; float accumulation of exact int8 products).
inline RowMatrixXf w8a8_forward(const Eigen::Ref<const RowMatrixXf>& X, const W8A8Layer& L, int threads = 0) {
  const RowMatrixXf Xq = w8a8_quantize_activations(X, L);
  detail::OmpThreadsScope scope(resolve_threads(threads));
  return Xq * L.weight.dequantize().transpose();
}

}  // namespace qk
