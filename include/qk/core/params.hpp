#pragma once
// QuantParams: scales and zero-points shaped by a QuantScheme, and their computation from a range or data.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/detail/row_kernels.hpp"
#include "qk/core/scheme.hpp"

namespace qk {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// param_rows x param_cols of the scheme (1x1 per-tensor, rows x 1 per-channel, rows x cols/g per-group).
// Row-major, so one weight row's parameters are contiguous.
struct QuantParams {
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> scale;
  Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> zero_point;

  QuantParams() = default;
  QuantParams(Eigen::Index r, Eigen::Index c) : scale(r, c), zero_point(r, c) {}
  Eigen::Index rows() const { return scale.rows(); }
  Eigen::Index cols() const { return scale.cols(); }
};

// Zero-point of symmetric codes: 0 for signed codes, 2^(b-1) for unsigned codes (GPTQ's "sym").
inline int sym_zero_point(const QuantScheme& s) { return s.is_signed ? 0 : 1 << (s.bits - 1); }

// Scale/zero-point for one range [lo, hi]. Never returns a zero, NaN or Inf scale: an empty range
// (all zeros) gives scale 1 so every value codes to the zero-point and comes back exactly 0.
inline void range_to_params(float lo, float hi, const QuantScheme& s, float& scale, int& zero_point) {
  if (!(std::isfinite(lo) && std::isfinite(hi)))
    fail<NumericError>("range [{}, {}] is not finite", lo, hi);
  if (lo > hi) std::swap(lo, hi);
  int32_t z = 0;
  detail::range_params_spans(&lo, &hi, 1, s.qmin(), s.qmax(), s.symmetric, s.narrow_range, sym_zero_point(s), &scale,
                             &z);
  zero_point = z;
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

}  // namespace detail

// NumericError "<what>: non-finite value V at [row, col]" when W holds a NaN or an Inf.
template <typename Derived>
void check_finite(const Eigen::MatrixBase<Derived>& W, const std::string& what) {
  if (!W.allFinite()) detail::report_non_finite(W, what.c_str());
}

namespace detail {

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
  std::vector<float> buf, lo(static_cast<size_t>(pc)), hi(static_cast<size_t>(pc));
  if (s.granularity == Granularity::PerTensor) {
    float mn = 0.0f, mx = 0.0f;
    for (Eigen::Index r = 0; r < rows; ++r) {
      const float* x = detail::row_pointer(W, r, buf);
      if (!detail::span_minmax(x, 1, cols, lo.data(), hi.data())) detail::report_non_finite(W, "compute_params");
      mn = r == 0 ? lo[0] : std::min(mn, lo[0]);
      mx = r == 0 ? hi[0] : std::max(mx, hi[0]);
    }
    range_to_params(mn, mx, s, p.scale(0, 0), p.zero_point(0, 0));
    return p;
  }
  for (Eigen::Index r = 0; r < rows; ++r) {
    const float* x = detail::row_pointer(W, r, buf);
    if (!detail::span_minmax(x, pc, span, lo.data(), hi.data())) detail::report_non_finite(W, "compute_params");
    detail::range_params_spans(lo.data(), hi.data(), pc, s.qmin(), s.qmax(), s.symmetric, s.narrow_range,
                               sym_zero_point(s), &p.scale(r, 0), &p.zero_point(r, 0));
  }
  return p;
}

}  // namespace qk
