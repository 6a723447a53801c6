#pragma once
// Learned step size quantization (LSQ: Esser, McKinstry, Bablani, Appuswamy & Modha, "Learned Step Size
// Quantization", ICLR 2020, arXiv:1902.08153) and its learnable offset for asymmetric codes (LSQ+: Bhalgat, Lee,
// Nagel, Blankevoort & Kwak, "LSQ+: Improving low-bit quantization through learnable offsets and better
// initialization", CVPR workshops 2020, arXiv:2004.09576). The STE on fixed parameters is in qk/methods/qat.hpp.
//
// Quantizer, per parameter group of a QuantScheme (one step s and offset b per tensor, row, or row and group):
//
//   u = (x - b) / s,    y = clamp(round(u), qn, qp) · s + b        (round: half to even, as the core)
//
// Codes [qn, qp] = [-Q_N, Q_P] of the papers: for symmetric schemes [qmin - z0, qmax - z0] (z0 the scheme's
// symmetric zero-point: signed 4-bit gives [-8, 7]) with b = 0, not learned (LSQ); for asymmetric schemes
// [qmin, qmax] with a learned b (LSQ+). Unsigned asymmetric codes with learn_offset = false and b = 0 are LSQ's
// quantizer for non-negative activations, [0, 2^bits - 1]. With b = -z·s this is the core's x ≈ (q - z)·s:
// lsq_forward with step = scale and b = 0 is bit-identical to qk::fake_quant of a symmetric scheme.
//
// Gradients (LSQ eq. 3 and 5; LSQ+ section 3.1): round() is given derivative 1 (the straight-through estimator)
// while its value is kept, so for one element
//
//   inside  (qn <= u <= qp):  dy/dx = 1,  dy/ds = round(u) - u,  dy/db = 0
//   below   (u < qn):         dy/dx = 0,  dy/ds = qn,            dy/db = 1
//   above   (u > qp):         dy/dx = 0,  dy/ds = qp,            dy/db = 1
//
// A group's step (and offset) gradient is the sum over its elements, times the gradient scale
// g = 1 / sqrt(N · Q_P) (LSQ section 2.2: N = the number of elements sharing the step — a layer's weights per
// tensor, a row per channel, a group per group; Q_P = qp). LSQ+ scales the offset's gradient the same way.
// For activations the paper's N is the number of features of one example, while the default here counts every
// element of the matrix given (the batch included): pass LsqOptions::grad_scale = lsq_grad_scale(features, s)
// to follow the paper.
//
// Initialisation: lsq_init is LSQ's s = 2·mean|x| / sqrt(Q_P) per group with b = 0; lsq_init_minmax is LSQ+'s
// min-max initialisation, the core's min/max parameters (s = scale, b = -z·s for asymmetric schemes).
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

namespace qk {

// Learned parameters, param_rows x param_cols of the scheme (qk::QuantParams' shape).
struct LsqParams {
  RowMatrixXf step;    // s > 0
  RowMatrixXf offset;  // b; zero for symmetric schemes
};

struct LsqCodes {
  int qn = 0, qp = 0;  // codes [qn, qp] = [-Q_N, Q_P]
};

inline LsqCodes lsq_codes(const QuantScheme& s) {
  s.validate();
  if (s.symmetric) {
    const int z0 = sym_zero_point(s);
    return {s.qmin() - z0, s.qmax() - z0};
  }
  return {s.qmin(), s.qmax()};
}

// g = 1 / sqrt(n · Q_P). InvalidArgument for n < 1.
inline float lsq_grad_scale(int64_t n, const QuantScheme& s) {
  if (n < 1) fail<InvalidArgument>("lsq_grad_scale: {} elements", n);
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n) * static_cast<double>(lsq_codes(s).qp)));
}

struct LsqOptions {
  // Scale applied to the step and offset gradients; 0 = 1 / sqrt(N · Q_P) with N the elements per group.
  float grad_scale = 0.0f;
  // Learn the offset of asymmetric schemes (LSQ+). Symmetric schemes never learn it.
  bool learn_offset = true;
};

struct LsqGrad {
  RowMatrixXf x;       // dL/dx, the shape of x
  RowMatrixXf step;    // dL/ds (scaled), the shape of the parameters
  RowMatrixXf offset;  // dL/db (scaled); zero when the offset is not learned
};

namespace detail {

inline void lsq_check(const LsqParams& p, const QuantScheme& s, Eigen::Index rows, Eigen::Index cols,
                      const char* what) {
  s.validate_for(rows, cols);
  const Eigen::Index pr = s.param_rows(rows), pc = s.param_cols(cols);
  if (p.step.rows() != pr || p.step.cols() != pc || p.offset.rows() != pr || p.offset.cols() != pc)
    fail<ShapeError>("{}: parameters are {}x{} (offset {}x{}), scheme {} on [{}, {}] needs {}x{}", what,
                     p.step.rows(), p.step.cols(), p.offset.rows(), p.offset.cols(), s.describe(), rows, cols, pr, pc);
  for (Eigen::Index r = 0; r < pr; ++r)
    for (Eigen::Index g = 0; g < pc; ++g) {
      if (!(p.step(r, g) > 0.0f) || !std::isfinite(p.step(r, g)))
        fail<InvalidArgument>("{}: step {} of group [{}, {}] is not positive and finite", what, p.step(r, g), r, g);
      if (!std::isfinite(p.offset(r, g)))
        fail<InvalidArgument>("{}: offset {} of group [{}, {}] is not finite", what, p.offset(r, g), r, g);
      if (s.symmetric && p.offset(r, g) != 0.0f)
        fail<InvalidArgument>("{}: offset {} of group [{}, {}] under the symmetric scheme {} (must be 0)", what,
                              p.offset(r, g), r, g, s.describe());
    }
}

// round half to even for |v| < 2^22 (the clamp to the code range guarantees it), as the core's row kernels.
inline float lsq_round(float v) {
  constexpr float magic = 12582912.0f;  // 1.5·2^23
  return (v + magic) - magic;
}

}  // namespace detail

// LSQ's initialisation: s = 2·mean|x| / sqrt(Q_P) per group (1 for an all-zero group), b = 0.
template <typename Derived>
LsqParams lsq_init(const Eigen::MatrixBase<Derived>& X, const QuantScheme& s) {
  s.validate_for(X.rows(), X.cols());
  const Eigen::Index pr = s.param_rows(X.rows()), pc = s.param_cols(X.cols()), span = s.span(X.cols());
  using Acc = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Acc sum = Acc::Zero(pr, pc);
  std::vector<float> buf;
  for (Eigen::Index r = 0; r < X.rows(); ++r) {
    const float* x = detail::row_pointer(X, r, buf);
    if (!detail::all_finite(x, X.cols())) detail::report_non_finite(X, "lsq_init");
    const Eigen::Index prow = s.granularity == Granularity::PerTensor ? 0 : r;
    for (Eigen::Index c = 0; c < X.cols(); ++c) sum(prow, c / span) += std::fabs(static_cast<double>(x[c]));
  }
  const double n = static_cast<double>(s.granularity == Granularity::PerTensor ? X.size() : span);
  const double root = std::sqrt(static_cast<double>(lsq_codes(s).qp));
  LsqParams p{RowMatrixXf(pr, pc), RowMatrixXf::Zero(pr, pc)};
  for (Eigen::Index r = 0; r < pr; ++r)
    for (Eigen::Index g = 0; g < pc; ++g) {
      const double v = n > 0 ? 2.0 * sum(r, g) / n / root : 0.0;
      p.step(r, g) = v > 0.0 ? std::max(static_cast<float>(v), std::numeric_limits<float>::min()) : 1.0f;
    }
  return p;
}

// LSQ+'s min-max initialisation: the core's parameters from X's min/max (compute_params), as a step and offset.
template <typename Derived>
LsqParams lsq_init_minmax(const Eigen::MatrixBase<Derived>& X, const QuantScheme& s) {
  const QuantParams q = compute_params(X, s);
  LsqParams p{q.scale, RowMatrixXf::Zero(q.rows(), q.cols())};
  if (!s.symmetric)
    for (Eigen::Index r = 0; r < q.rows(); ++r)
      for (Eigen::Index g = 0; g < q.cols(); ++g)
        p.offset(r, g) = -static_cast<float>(q.zero_point(r, g)) * q.scale(r, g);
  return p;
}

// The core's parameters closest to p: scale = step; zero-point = the symmetric one, or clamp(round(-b / s),
// qmin, qmax) for asymmetric schemes. The core's quantizer then equals lsq_forward exactly when every offset is
// a multiple of its step (b = -z·s); otherwise the grid moves by less than half a step.
inline QuantParams lsq_to_params(const LsqParams& p, const QuantScheme& s) {
  s.validate();
  QuantParams q(p.step.rows(), p.step.cols());
  q.scale = p.step;
  for (Eigen::Index r = 0; r < q.rows(); ++r)
    for (Eigen::Index g = 0; g < q.cols(); ++g) {
      if (s.symmetric) {
        q.zero_point(r, g) = sym_zero_point(s);
      } else {
        const double z = std::nearbyint(-static_cast<double>(p.offset(r, g)) / static_cast<double>(p.step(r, g)));
        q.zero_point(r, g) = static_cast<int32_t>(std::clamp(z, static_cast<double>(s.qmin()),
                                                             static_cast<double>(s.qmax())));
      }
    }
  return q;
}

// y = clamp(round((x - b) / s), qn, qp) · s + b per element. NumericError for NaN/Inf in X (naming [row, col]);
// ShapeError / InvalidArgument for parameters of the wrong shape, a non-positive step, or a symmetric offset.
template <typename Derived>
RowMatrixXf lsq_forward(const Eigen::MatrixBase<Derived>& X, const LsqParams& p, const QuantScheme& s) {
  detail::lsq_check(p, s, X.rows(), X.cols(), "lsq_forward");
  const LsqCodes k = lsq_codes(s);
  const float qn = static_cast<float>(k.qn), qp = static_cast<float>(k.qp);
  const Eigen::Index span = s.span(X.cols());
  RowMatrixXf y(X.rows(), X.cols());
  std::vector<float> buf;
  for (Eigen::Index r = 0; r < X.rows(); ++r) {
    const float* x = detail::row_pointer(X, r, buf);
    if (!detail::all_finite(x, X.cols())) detail::report_non_finite(X, "lsq_forward");
    const Eigen::Index pr = s.granularity == Granularity::PerTensor ? 0 : r;
    for (Eigen::Index c = 0; c < X.cols(); ++c) {
      const float st = p.step(pr, c / span), b = p.offset(pr, c / span);
      float u = (x[c] - b) / st;
      u = u < qn ? qn : u;
      u = u > qp ? qp : u;
      y(r, c) = detail::lsq_round(u) * st + b;
    }
  }
  return y;
}

// The gradients of L given dL/dy (grad_y, the shape of X) at the point (X, p); see the top of this file.
template <typename DX, typename DG>
LsqGrad lsq_backward(const Eigen::MatrixBase<DX>& X, const Eigen::MatrixBase<DG>& grad_y, const LsqParams& p,
                     const QuantScheme& s, const LsqOptions& o = {}) {
  detail::lsq_check(p, s, X.rows(), X.cols(), "lsq_backward");
  if (grad_y.rows() != X.rows() || grad_y.cols() != X.cols())
    fail<ShapeError>("lsq_backward: gradient is [{}, {}], x is [{}, {}]", grad_y.rows(), grad_y.cols(), X.rows(),
                     X.cols());
  const LsqCodes k = lsq_codes(s);
  const float qn = static_cast<float>(k.qn), qp = static_cast<float>(k.qp);
  const Eigen::Index pr = s.param_rows(X.rows()), pc = s.param_cols(X.cols()), span = s.span(X.cols());
  const int64_t per_group = s.granularity == Granularity::PerTensor ? static_cast<int64_t>(X.size()) : span;
  const double gs = o.grad_scale > 0.0f ? o.grad_scale : (per_group > 0 ? lsq_grad_scale(per_group, s) : 1.0f);
  const bool learn_b = o.learn_offset && !s.symmetric;
  using Acc = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Acc ds = Acc::Zero(pr, pc), db = Acc::Zero(pr, pc);
  LsqGrad out{RowMatrixXf(X.rows(), X.cols()), RowMatrixXf(pr, pc), RowMatrixXf::Zero(pr, pc)};
  std::vector<float> buf;
  for (Eigen::Index r = 0; r < X.rows(); ++r) {
    const float* x = detail::row_pointer(X, r, buf);
    if (!detail::all_finite(x, X.cols())) detail::report_non_finite(X, "lsq_backward");
    const Eigen::Index prow = s.granularity == Granularity::PerTensor ? 0 : r;
    for (Eigen::Index c = 0; c < X.cols(); ++c) {
      const Eigen::Index g = c / span;
      const float st = p.step(prow, g), b = p.offset(prow, g);
      const float u = (x[c] - b) / st;
      const double gy = static_cast<double>(grad_y(r, c));
      if (u < qn) {
        out.x(r, c) = 0.0f;
        ds(prow, g) += gy * k.qn;
        db(prow, g) += gy;
      } else if (u > qp) {
        out.x(r, c) = 0.0f;
        ds(prow, g) += gy * k.qp;
        db(prow, g) += gy;
      } else {
        out.x(r, c) = static_cast<float>(gy);
        ds(prow, g) += gy * static_cast<double>(detail::lsq_round(u) - u);
      }
    }
  }
  out.step = (ds * gs).cast<float>();
  if (learn_b) out.offset = (db * gs).cast<float>();
  return out;
}

}  // namespace qk
