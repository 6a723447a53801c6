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

namespace detail {

// Quantizes n contiguous floats with one (scale, zero-point); writes unsigned codes u = q - qmin.
// Clamps before rounding (bounds are integers, so this equals rounding then clamping). Round-half-to-even uses
// the magic number 1.5·2^23: adding it pushes the fraction out of the mantissa in the default rounding mode,
// exact for |v| < 2^22 (guaranteed by the clamp) and, unlike nearbyint, it vectorizes.
inline void quantize_span(const float* x, int64_t n, float scale, int zp, int qmin, int qmax, Rounding rnd,
                          uint8_t* u) {
  const float lo = static_cast<float>(qmin - zp), hi = static_cast<float>(qmax - zp);
  const float off = static_cast<float>(zp - qmin);
  if (rnd == Rounding::NearestEven) {
    constexpr float magic = 12582912.0f;
    for (int64_t i = 0; i < n; ++i) {
      float v = x[i] / scale;
      v = v < lo ? lo : v;
      v = v > hi ? hi : v;
      v = (v + magic) - magic;
      u[i] = static_cast<uint8_t>(static_cast<int>(v + off));
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      float v = x[i] / scale;
      v = v < lo ? lo : v;
      v = v > hi ? hi : v;
      u[i] = static_cast<uint8_t>(static_cast<int>(std::round(v) + off));
    }
  }
}

inline bool all_finite(const float* x, int64_t n) {
  float probe = 0.0f;
  for (int64_t i = 0; i < n; ++i) probe += x[i] * 0.0f;
  return probe == 0.0f;
}

}  // namespace detail

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
  std::vector<float> buf;
  std::vector<uint8_t> codes(static_cast<size_t>(q.cols));
  const int qmin = s.qmin(), qmax = s.qmax();
  for (int64_t r = 0; r < q.rows; ++r) {
    const float* x = detail::row_pointer(W, r, buf);
    const int64_t prow = s.granularity == Granularity::PerTensor ? 0 : r;
    for (int64_t g = 0; g < pc; ++g) {
      const float* xg = x + g * span;
      if (!given && s.granularity != Granularity::PerTensor) {
        float lo, hi;
        bool bad = false;
        detail::minmax_span(xg, span, lo, hi, bad);
        if (bad) detail::report_non_finite(W, "quantize");
        range_to_params(lo, hi, s, q.params.scale(r, g), q.params.zero_point(r, g));
      } else if (!detail::all_finite(xg, span)) {
        detail::report_non_finite(W, "quantize");
      }
      detail::quantize_span(xg, span, q.params.scale(prow, g), q.params.zero_point(prow, g), qmin, qmax,
                            s.rounding, codes.data() + g * span);
    }
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
      const int64_t span = scheme.span(cols), pc = scheme.param_cols(cols);
      const int64_t prow = scheme.granularity == Granularity::PerTensor ? 0 : r;
      for (int64_t g = 0; g < pc; ++g) {
        const float s = params.scale(prow, g);
        const int z = params.zero_point(prow, g);
        for (int64_t c = g * span; c < (g + 1) * span; ++c)
          o[c] = static_cast<float>(static_cast<int>(codes[static_cast<size_t>(c)]) + qmin - z) * s;
      }
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
    for (int64_t g = 0; g < pc; ++g) {
      const float sc = p.scale(prow, g);
      const int z = p.zero_point(prow, g);
      detail::quantize_span(x + g * span, span, sc, z, qmin, qmax, s.rounding, codes.data() + g * span);
      for (int64_t c = g * span; c < (g + 1) * span; ++c)
        out(r, c) = static_cast<float>(static_cast<int>(codes[static_cast<size_t>(c)]) + qmin - z) * sc;
    }
  }
  return out;
}

}  // namespace qk
