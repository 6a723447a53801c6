#pragma once
// Quantize, dequantize and fake-quantize any Eigen::MatrixBase (maps and blocks included) with a QuantScheme.
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/pack.hpp"
#include "qk/core/params.hpp"
#include "qk/detail/row_kernels.hpp"
#include "qk/core/scheme.hpp"

namespace qk {

// A quantized [rows, cols] weight. Codes are stored packed row by row (each row starts on a byte boundary,
// row_bytes() apart) in pack.hpp's order, as unsigned values u = q - qmin, so every scheme packs the same way.
struct QuantizedTensor {
  int64_t rows = 0, cols = 0;
  QuantScheme scheme;
  QuantParams params;
  std::vector<uint8_t> packed;
  // Optional group index of each input column (GPTQ act-order, g_idx); empty means column / group_size.
  std::vector<int32_t> g_idx;

  int64_t row_bytes() const { return static_cast<int64_t>(packed_size(static_cast<size_t>(cols), scheme.bits)); }
  const uint8_t* row_data(int64_t r) const { return packed.data() + r * row_bytes(); }
  uint8_t* row_data(int64_t r) { return packed.data() + r * row_bytes(); }
  // Signed code q (in [qmin, qmax]) of element (r, c).
  int code(int64_t r, int64_t c) const {
    return static_cast<int>(packed_code(row_data(r), static_cast<size_t>(c), scheme.bits)) + scheme.qmin();
  }
  int64_t group_of(int64_t c) const {
    if (!g_idx.empty()) return g_idx[static_cast<size_t>(c)];
    return scheme.granularity == Granularity::PerGroup ? c / scheme.group_size : 0;
  }
  float scale(int64_t r, int64_t c) const {
    return params.scale(scheme.granularity == Granularity::PerTensor ? 0 : r, group_of(c));
  }
  int zero_point(int64_t r, int64_t c) const {
    return params.zero_point(scheme.granularity == Granularity::PerTensor ? 0 : r, group_of(c));
  }
  // Storage in bytes: packed codes plus fp32 scales and int32 zero-points (or fp16/uint8 in file formats).
  size_t nbytes() const {
    return packed.size() + static_cast<size_t>(params.scale.size()) * (sizeof(float) + sizeof(int32_t));
  }
  RowMatrixXf dequantize() const;
};

// Quantizes W with the given parameters, or with parameters from W's min/max when none are given.
template <typename Derived>
QuantizedTensor quantize(const Eigen::MatrixBase<Derived>& W, const QuantScheme& s,
                         const QuantParams* given = nullptr) {
  s.validate_for(W.rows(), W.cols());
  QuantizedTensor q;
  q.rows = W.rows();
  q.cols = W.cols();
  q.scheme = s;
  const int64_t pr = s.param_rows(q.rows), pc = s.param_cols(q.cols), span = s.span(q.cols);
  if (given) {
    if (given->rows() != pr || given->cols() != pc)
      fail<ShapeError>("quantize: parameters are {}x{}, scheme {} on [{}, {}] needs {}x{}", given->rows(),
                       given->cols(), s.describe(), q.rows, q.cols, pr, pc);
    for (Eigen::Index i = 0; i < given->scale.size(); ++i)
      if (!(given->scale.data()[i] > 0) || !std::isfinite(given->scale.data()[i]))
        fail<InvalidArgument>("quantize: scale {} is not positive and finite", given->scale.data()[i]);
    q.params = *given;
  } else if (s.granularity == Granularity::PerTensor) {
    q.params = compute_params(W, s);
  } else {
    q.params = QuantParams(pr, pc);
  }
  const int64_t rb = q.row_bytes();
  q.packed.assign(static_cast<size_t>(rb * q.rows), 0);
  std::vector<float> buf, lo(static_cast<size_t>(pc)), hi(static_cast<size_t>(pc));
  std::vector<uint8_t> codes(static_cast<size_t>(q.cols));
  const int qmin = s.qmin(), qmax = s.qmax();
  const bool away = s.rounding == Rounding::NearestAway;
  for (int64_t r = 0; r < q.rows; ++r) {
    const float* x = detail::row_pointer(W, r, buf);
    const int64_t prow = s.granularity == Granularity::PerTensor ? 0 : r;
    if (!given && s.granularity != Granularity::PerTensor) {
      if (!detail::span_minmax(x, pc, span, lo.data(), hi.data())) detail::report_non_finite(W, "quantize");
      detail::range_params_spans(lo.data(), hi.data(), pc, qmin, qmax, s.symmetric, s.narrow_range,
                                 sym_zero_point(s), &q.params.scale(r, 0), &q.params.zero_point(r, 0));
    } else if (!detail::all_finite(x, q.cols)) {
      detail::report_non_finite(W, "quantize");
    }
    detail::quantize_spans(x, pc, span, &q.params.scale(prow, 0), &q.params.zero_point(prow, 0), qmin, qmax, away,
                           codes.data());
    pack_bits(codes, s.bits, std::span<uint8_t>(q.row_data(r), static_cast<size_t>(rb)));
  }
  return q;
}

inline RowMatrixXf QuantizedTensor::dequantize() const {
  RowMatrixXf out(rows, cols);
  std::vector<uint8_t> codes(static_cast<size_t>(cols));
  const int qmin = scheme.qmin();
  for (int64_t r = 0; r < rows; ++r) {
    unpack_bits(std::span<const uint8_t>(row_data(r), static_cast<size_t>(row_bytes())), scheme.bits, codes);
    float* o = out.row(r).data();
    if (g_idx.empty()) {
      const int64_t prow = scheme.granularity == Granularity::PerTensor ? 0 : r;
      detail::dequantize_spans(codes.data(), scheme.param_cols(cols), scheme.span(cols), &params.scale(prow, 0),
                               &params.zero_point(prow, 0), qmin, o);
    } else {
      for (int64_t c = 0; c < cols; ++c)
        o[c] = static_cast<float>(static_cast<int>(codes[static_cast<size_t>(c)]) + qmin - zero_point(r, c)) *
               scale(r, c);
    }
  }
  return out;
}

inline RowMatrixXf dequantize(const QuantizedTensor& q) { return q.dequantize(); }

// quantize followed by dequantize, without keeping the codes: the float matrix a quantized layer computes with.
template <typename Derived>
RowMatrixXf fake_quant(const Eigen::MatrixBase<Derived>& W, const QuantScheme& s, const QuantParams* given = nullptr) {
  s.validate_for(W.rows(), W.cols());
  QuantParams p = given ? *given : compute_params(W, s);
  if (p.rows() != s.param_rows(W.rows()) || p.cols() != s.param_cols(W.cols()))
    fail<ShapeError>("fake_quant: parameters are {}x{}, scheme needs {}x{}", p.rows(), p.cols(),
                     s.param_rows(W.rows()), s.param_cols(W.cols()));
  RowMatrixXf out(W.rows(), W.cols());
  std::vector<float> buf;
  std::vector<uint8_t> codes(static_cast<size_t>(W.cols()));
  const int64_t span = s.span(W.cols()), pc = s.param_cols(W.cols());
  const int qmin = s.qmin(), qmax = s.qmax();
  for (Eigen::Index r = 0; r < W.rows(); ++r) {
    const float* x = detail::row_pointer(W, r, buf);
    if (!detail::all_finite(x, W.cols())) detail::report_non_finite(W, "fake_quant");
    const Eigen::Index prow = s.granularity == Granularity::PerTensor ? 0 : r;
    detail::quantize_spans(x, pc, span, &p.scale(prow, 0), &p.zero_point(prow, 0), qmin, qmax,
                           s.rounding == Rounding::NearestAway, codes.data());
    detail::dequantize_spans(codes.data(), pc, span, &p.scale(prow, 0), &p.zero_point(prow, 0), qmin,
                             out.row(r).data());
  }
  return out;
}

}  // namespace qk
