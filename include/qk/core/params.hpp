#pragma once
// QuantParams: scales and zero-points shaped by a QuantScheme, and their computation from a range or data.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/scheme.hpp"

namespace qk {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// param_rows x param_cols of the scheme (1x1 per-tensor, rows x 1 per-channel, rows x cols/g per-group).
struct QuantParams {
  Eigen::MatrixXf scale;
  Eigen::MatrixXi zero_point;

  QuantParams() = default;
  QuantParams(Eigen::Index r, Eigen::Index c) : scale(r, c), zero_point(r, c) {}
  Eigen::Index rows() const { return scale.rows(); }
  Eigen::Index cols() const { return scale.cols(); }
};

// Scale/zero-point for one range [lo, hi]. Never returns a zero, NaN or Inf scale: an empty range
// (all zeros) gives scale 1 so every value codes to the zero-point and comes back exactly 0.
inline void range_to_params(float lo, float hi, const QuantScheme& s, float& scale, int& zero_point) {
  if (!(std::isfinite(lo) && std::isfinite(hi)))
    fail<NumericError>("range [{}, {}] is not finite", lo, hi);
  if (lo > hi) std::swap(lo, hi);
  const double qmin = s.qmin(), qmax = s.qmax();
  double sc;
  int zp;
  if (s.symmetric) {
    const double amax = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
    if (s.narrow_range) sc = amax / qmax;
    else sc = 2.0 * amax / (qmax - qmin);
    zp = s.is_signed ? 0 : (1 << (s.bits - 1));
  } else {
    const double mn = std::min(0.0, static_cast<double>(lo)), mx = std::max(0.0, static_cast<double>(hi));
    sc = (mx - mn) / (qmax - qmin);
    if (sc > 0) {
      double z = qmin - std::nearbyint(mn / sc);
      zp = static_cast<int>(std::clamp(z, qmin, qmax));
    } else {
      zp = static_cast<int>(std::clamp(0.0, qmin, qmax));
    }
  }
  if (!(sc > 0)) sc = 1.0;  // all-zero range
  sc = std::clamp(sc, static_cast<double>(std::numeric_limits<float>::min()),
                  static_cast<double>(std::numeric_limits<float>::max()));
  scale = static_cast<float>(sc);
  zero_point = zp;
}

inline QuantParams params_from_range(float lo, float hi, const QuantScheme& s) {
  s.validate();
  QuantParams p(1, 1);
  range_to_params(lo, hi, s, p.scale(0, 0), p.zero_point(0, 0));
  return p;
}

namespace detail {

// Throws NumericError naming the first non-finite element of W.
template <typename Derived>
[[noreturn]] void report_non_finite(const Eigen::MatrixBase<Derived>& W, const char* what) {
  for (Eigen::Index r = 0; r < W.rows(); ++r)
    for (Eigen::Index c = 0; c < W.cols(); ++c)
      if (!std::isfinite(static_cast<float>(W(r, c))))
        fail<NumericError>("{}: non-finite value {} at [{}, {}]", what, static_cast<float>(W(r, c)), r, c);
  fail<NumericError>("{}: non-finite value", what);
}

// min/max of n contiguous floats; `bad` becomes true if any value is NaN or Inf.
inline void minmax_span(const float* x, int64_t n, float& lo, float& hi, bool& bad) {
  float mn = std::numeric_limits<float>::infinity(), mx = -std::numeric_limits<float>::infinity();
  float big = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
    const float a = std::fabs(v);
    big = a > big ? a : big;
  }
  // NaN fails every comparison, so a NaN leaves no trace in mn/mx; catch it with a sum.
  float probe = 0.0f;
  for (int64_t i = 0; i < n; ++i) probe += x[i] * 0.0f;
  bad = bad || !(big <= std::numeric_limits<float>::max()) || probe != 0.0f;
  lo = n ? mn : 0.0f;
  hi = n ? mx : 0.0f;
}

// Gives a pointer to row r of W: W's own memory when rows are contiguous, else a copy in buf.
template <typename Derived>
const float* row_pointer(const Eigen::MatrixBase<Derived>& W, Eigen::Index r, std::vector<float>& buf) {
  using Plain = typename Derived::PlainObject;
  constexpr bool direct = (Eigen::internal::traits<Derived>::Flags & Eigen::DirectAccessBit) != 0;
  if constexpr (direct && std::is_same_v<typename Derived::Scalar, float> &&
                (static_cast<int>(Derived::IsRowMajor) == 1 || Derived::RowsAtCompileTime == 1)) {
    if (W.derived().innerStride() == 1) return W.derived().data() + r * W.derived().outerStride();
  }
  (void)sizeof(Plain);
  buf.resize(static_cast<size_t>(W.cols()));
  for (Eigen::Index c = 0; c < W.cols(); ++c) buf[static_cast<size_t>(c)] = static_cast<float>(W(r, c));
  return buf.data();
}

}  // namespace detail

// Parameters from the data's min/max with the scheme's granularity. NaN/Inf in W: NumericError naming [row, col].
template <typename Derived>
QuantParams compute_params(const Eigen::MatrixBase<Derived>& W, const QuantScheme& s) {
  s.validate_for(W.rows(), W.cols());
  const Eigen::Index rows = W.rows(), cols = W.cols();
  const Eigen::Index pr = s.param_rows(rows), pc = s.param_cols(cols), span = s.span(cols);
  QuantParams p(pr, pc);
  std::vector<float> buf;
  bool bad = false;
  if (s.granularity == Granularity::PerTensor) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (Eigen::Index r = 0; r < rows; ++r) {
      const float* x = detail::row_pointer(W, r, buf);
      float a, b;
      detail::minmax_span(x, cols, a, b, bad);
      if (cols) { lo = std::min(lo, a); hi = std::max(hi, b); }
    }
    if (bad) detail::report_non_finite(W, "compute_params");
    if (rows == 0 || cols == 0) lo = hi = 0.0f;
    range_to_params(lo, hi, s, p.scale(0, 0), p.zero_point(0, 0));
    return p;
  }
  for (Eigen::Index r = 0; r < rows; ++r) {
    const float* x = detail::row_pointer(W, r, buf);
    for (Eigen::Index g = 0; g < pc; ++g) {
      float lo, hi;
      detail::minmax_span(x + g * span, span, lo, hi, bad);
      if (bad) detail::report_non_finite(W, "compute_params");
      range_to_params(lo, hi, s, p.scale(r, g), p.zero_point(r, g));
    }
  }
  return p;
}

}  // namespace qk
