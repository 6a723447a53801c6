#pragma once
// Row kernels behind quantize()/fake_quant()/compute_params(): compiled once in src/core/row_kernels.cpp with
// GCC function multiversioning (target_clones: AVX-512, AVX2, baseline), chosen by the loader from the CPU.
// They are plain loops over contiguous floats; all semantics (rounding, clamping) are defined here.
#include <cstdint>

namespace qk::detail {

// Per span of `span` floats (n_spans spans back to back): lo[i] = min, hi[i] = max.
// Returns false if any value is NaN or ±Inf (lo/hi are then meaningless).
bool span_minmax(const float* x, int64_t n_spans, int64_t span, float* lo, float* hi);

// Scale and zero-point of each range [lo[i], hi[i]] (finite, lo <= hi) under a scheme with the given code range;
// the formulas are those of scheme.hpp: symmetric scale = 2·amax/(qmax - qmin) (narrow: amax/qmax), zero-point
// `sym_zero`; asymmetric: range widened to contain 0, scale = (max - min)/(qmax - qmin),
// zp = clamp(qmin - round(min/scale)). Computed in double; an empty range gives scale 1; scales are clamped to
// [FLT_MIN, FLT_MAX] so they are never 0, NaN or Inf.
void range_params_spans(const float* lo, const float* hi, int64_t n, int qmin, int qmax, bool symmetric,
                        bool narrow_range, int sym_zero, float* scale, int32_t* zp);

// true when every value is finite.
bool all_finite(const float* x, int64_t n);

// Unsigned codes u = clamp(round(x / scale[g]) + zp[g], qmin, qmax) - qmin for each span g of `span` floats.
// round: nearest, ties to even (away_from_zero = false) or ties away from zero.
// Clamps before rounding (bounds are integers, so this equals rounding then clamping); ties-to-even rounding
// adds and subtracts 1.5·2^23, exact for |v| < 2^22, which the clamp guarantees, and it vectorizes.
void quantize_spans(const float* x, int64_t n_spans, int64_t span, const float* scale, const int32_t* zp, int qmin,
                    int qmax, bool away_from_zero, uint8_t* u);

// Packs n 4-bit codes two per byte (element 2j in the low nibble), pack.hpp's order.
void pack_nibbles(const uint8_t* codes, int64_t n, uint8_t* out);

// out = (u + qmin - zp[g]) * scale[g] per span.
void dequantize_spans(const uint8_t* u, int64_t n_spans, int64_t span, const float* scale, const int32_t* zp,
                      int qmin, float* out);

}  // namespace qk::detail
