#pragma once
// QuantScheme: how a float tensor maps onto integer codes.
//
// Conventions (docs/design.md has the long form):
//  * Weights are [out_features, in_features]; per-channel means one (scale, zero-point) per row,
//    per-group means one per `group_size` consecutive columns of a row (the reduction dimension),
//    as GPTQ, AWQ and ggml do.
//  * Codes q lie in [qmin, qmax]; x ≈ (q - zero_point) * scale.
//      signed codes:   [-2^(b-1), 2^(b-1) - 1]   (narrow_range: [-(2^(b-1) - 1), 2^(b-1) - 1])
//      unsigned codes: [0, 2^b - 1]
//  * symmetric: zero_point is 0 for signed codes, 2^(b-1) for unsigned codes (GPTQ's "sym"),
//    scale = 2·amax / (qmax - qmin)  (PyTorch's symmetric observers, GPTQ), or amax / qmax with narrow_range.
//    asymmetric: the range is widened to contain 0, scale = (max - min) / (qmax - qmin),
//    zero_point = qmin - round(min / scale), clamped to [qmin, qmax] (PyTorch / GPTQ affine).
//  * Rounding is round-half-to-even unless told otherwise.
#include <cstdint>
#include <string>

#include "qk/core/error.hpp"

namespace qk {

enum class Granularity { PerTensor, PerChannel, PerGroup };
enum class Rounding { NearestEven, NearestAway };

struct QuantScheme {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = true;
  bool narrow_range = false;
  Granularity granularity = Granularity::PerChannel;
  int64_t group_size = 0;  // PerGroup only
  Rounding rounding = Rounding::NearestEven;

  static QuantScheme per_tensor(int bits, bool symmetric = true, bool is_signed = true) {
    return {bits, is_signed, symmetric, false, Granularity::PerTensor, 0, Rounding::NearestEven};
  }
  static QuantScheme per_channel(int bits, bool symmetric = true, bool is_signed = true) {
    return {bits, is_signed, symmetric, false, Granularity::PerChannel, 0, Rounding::NearestEven};
  }
  static QuantScheme per_group(int bits, int64_t group, bool symmetric = true, bool is_signed = true) {
    return {bits, is_signed, symmetric, false, Granularity::PerGroup, group, Rounding::NearestEven};
  }

  int qmin() const {
    if (!is_signed) return 0;
    return narrow_range ? -(1 << (bits - 1)) + 1 : -(1 << (bits - 1));
  }
  int qmax() const { return is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }
  // Number of distinct code values the packed storage must hold (always 2^bits).
  int levels() const { return 1 << bits; }

  // Throws InvalidArgument for an impossible scheme.
  void validate() const {
    if (bits < 2 || bits > 8) fail<InvalidArgument>("bits must be in 2..8, got {}", bits);
    if (narrow_range && !(is_signed && symmetric))
      fail<InvalidArgument>("narrow_range needs signed symmetric codes");
    if (granularity == Granularity::PerGroup && group_size <= 0)
      fail<InvalidArgument>("per-group quantization needs a positive group size, got {}", group_size);
  }

  // Validates against a [rows, cols] weight: the group size must divide the row length.
  void validate_for(int64_t rows, int64_t cols) const {
    validate();
    if (rows < 0 || cols < 0) fail<InvalidArgument>("negative shape [{}, {}]", rows, cols);
    if (granularity == Granularity::PerGroup && cols % group_size != 0)
      fail<InvalidArgument>("group size {} does not divide the row length {}", group_size, cols);
  }

  // Parameter grid shape for a [rows, cols] weight.
  int64_t param_rows(int64_t rows) const { return granularity == Granularity::PerTensor ? 1 : rows; }
  int64_t param_cols(int64_t cols) const {
    return granularity == Granularity::PerGroup ? cols / group_size : 1;
  }
  // Columns covered by one parameter column.
  int64_t span(int64_t cols) const { return granularity == Granularity::PerGroup ? group_size : cols; }

  std::string describe() const {
    std::string g = granularity == Granularity::PerTensor   ? "per-tensor"
                    : granularity == Granularity::PerChannel ? "per-channel"
                                                             : fmt::format("g{}", group_size);
    return fmt::format("{}{}-bit {} {}", is_signed ? "s" : "u", bits, symmetric ? "sym" : "asym", g);
  }
};

}  // namespace qk
