// Row kernels of the core quantizer (see include/qk/detail/row_kernels.hpp). Each function is cloned for AVX-512,
// AVX2 and the baseline ISA; the dynamic loader picks the best the CPU supports (GCC target_clones / ifunc).
#include "qk/detail/row_kernels.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define QK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QK_CLONES
#endif

namespace qk::detail {

namespace {
inline uint32_t abs_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b & 0x7FFFFFFFu;
}
}  // namespace

namespace {
template <int64_t SPAN>
inline uint32_t minmax_one(const float* p, int64_t span, float& lo, float& hi) {
  const int64_t n = SPAN > 0 ? SPAN : span;
  float mn = std::numeric_limits<float>::infinity(), mx = -std::numeric_limits<float>::infinity();
  uint32_t w = 0;  // largest |x| bit pattern: >= 0x7F800000 means Inf or NaN
  for (int64_t i = 0; i < n; ++i) {
    const float v = p[i];
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
    const uint32_t b = abs_bits(v);
    w = b > w ? b : w;
  }
  lo = n ? mn : 0.0f;
  hi = n ? mx : 0.0f;
  return w;
}
}  // namespace

QK_CLONES bool span_minmax(const float* x, int64_t n_spans, int64_t span, float* lo, float* hi) {
  uint32_t worst = 0;
  for (int64_t g = 0; g < n_spans; ++g) {
    const float* p = x + g * span;
    uint32_t w;
    switch (span) {
      case 32: w = minmax_one<32>(p, span, lo[g], hi[g]); break;
      case 64: w = minmax_one<64>(p, span, lo[g], hi[g]); break;
      case 128: w = minmax_one<128>(p, span, lo[g], hi[g]); break;
      default: w = minmax_one<0>(p, span, lo[g], hi[g]); break;
    }
    worst = w > worst ? w : worst;
  }
  return worst < 0x7F800000u;
}

QK_CLONES void range_params_spans(const float* lo, const float* hi, int64_t n, int qmin, int qmax, bool symmetric,
                                  bool narrow_range, int sym_zero, float* scale, int32_t* zp) {
  const double dqmin = qmin, dqmax = qmax, levels = dqmax - dqmin;
  const double smin = std::numeric_limits<float>::min(), smax = std::numeric_limits<float>::max();
  if (symmetric) {
    const double div = narrow_range ? dqmax : levels / 2.0;
    for (int64_t i = 0; i < n; ++i) {
      const double a = std::fabs(static_cast<double>(lo[i])), b = std::fabs(static_cast<double>(hi[i]));
      double sc = (a > b ? a : b) / div;
      sc = sc > 0 ? sc : 1.0;
      sc = sc < smin ? smin : sc;
      sc = sc > smax ? smax : sc;
      scale[i] = static_cast<float>(sc);
      zp[i] = sym_zero;
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const double l = lo[i], h = hi[i];
    const double mn = l < 0.0 ? l : 0.0, mx = h > 0.0 ? h : 0.0;
    double sc = (mx - mn) / levels;
    const bool pos = sc > 0;
    double z = pos ? dqmin - std::nearbyint(mn / (pos ? sc : 1.0)) : 0.0;
    z = z < dqmin ? dqmin : z;
    z = z > dqmax ? dqmax : z;
    sc = pos ? sc : 1.0;
    sc = sc < smin ? smin : sc;
    sc = sc > smax ? smax : sc;
    scale[i] = static_cast<float>(sc);
    zp[i] = static_cast<int32_t>(z);
  }
}

QK_CLONES bool all_finite(const float* x, int64_t n) {
  uint32_t w = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = abs_bits(x[i]);
    w = b > w ? b : w;
  }
  return w < 0x7F800000u;
}

namespace {

// One span; SPAN > 0 fixes the length at compile time so the common group sizes unroll fully.
template <int64_t SPAN>
inline void quantize_one(const float* p, int64_t span, float s, int zp, int qmin, int qmax, bool away, uint8_t* o) {
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23
  const int64_t n = SPAN > 0 ? SPAN : span;
  const float lo = static_cast<float>(qmin - zp), hi = static_cast<float>(qmax - zp);
  const int off = zp - qmin;
  if (!away) {
    for (int64_t i = 0; i < n; ++i) {
      float v = p[i] / s;
      v = v < lo ? lo : v;
      v = v > hi ? hi : v;
      v = (v + magic) - magic;
      o[i] = static_cast<uint8_t>(static_cast<int>(v) + off);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      float v = p[i] / s;
      v = v < lo ? lo : v;
      v = v > hi ? hi : v;
      o[i] = static_cast<uint8_t>(static_cast<int>(std::round(v)) + off);
    }
  }
}

}  // namespace

QK_CLONES void quantize_spans(const float* x, int64_t n_spans, int64_t span, const float* scale, const int32_t* zp,
                              int qmin, int qmax, bool away_from_zero, uint8_t* u) {
  for (int64_t g = 0; g < n_spans; ++g) {
    const float* p = x + g * span;
    uint8_t* o = u + g * span;
    switch (span) {
      case 32: quantize_one<32>(p, span, scale[g], zp[g], qmin, qmax, away_from_zero, o); break;
      case 64: quantize_one<64>(p, span, scale[g], zp[g], qmin, qmax, away_from_zero, o); break;
      case 128: quantize_one<128>(p, span, scale[g], zp[g], qmin, qmax, away_from_zero, o); break;
      default: quantize_one<0>(p, span, scale[g], zp[g], qmin, qmax, away_from_zero, o); break;
    }
  }
}

QK_CLONES void pack_nibbles(const uint8_t* codes, int64_t n, uint8_t* out) {
  const int64_t pairs = n / 2;
  for (int64_t j = 0; j < pairs; ++j)
    out[j] = static_cast<uint8_t>((codes[2 * j] & 0xF) | (codes[2 * j + 1] << 4));
  if (n & 1) out[pairs] = codes[n - 1] & 0xF;
}

QK_CLONES void dequantize_spans(const uint8_t* u, int64_t n_spans, int64_t span, const float* scale,
                                const int32_t* zp, int qmin, float* out) {
  for (int64_t g = 0; g < n_spans; ++g) {
    const float s = scale[g];
    const int off = qmin - zp[g];
    const uint8_t* p = u + g * span;
    float* o = out + g * span;
    for (int64_t i = 0; i < span; ++i) o[i] = static_cast<float>(static_cast<int>(p[i]) + off) * s;
  }
}

}  // namespace qk::detail
