#pragma once
// Shared by the ggml block product tests: random GGUF-layout weights and Q8_0 activations, and the tolerance a
// SIMD path is held to against the scalar oracle (qk/kernels/ggml_dot.hpp, docs/kernels.md).
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "qk/core/half.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/kernels/ggml_dot.hpp"
#include "test_util.hpp"

namespace qk::test {

struct GgmlCase {
  ggml::Type type;
  int64_t m, n, k;
  std::vector<uint8_t> w;             // n rows of row_size(type, k) bytes
  std::vector<ggml::BlockQ8_0> a;     // m rows of k / 32 blocks
};

// Weights: N(0, 1) floats with a few large outliers, encoded by formats' reference quantizer; for Q8_0 about one
// code in sixteen is then set to -128 or 127 (a GGUF file may hold -128, which the reference quantizer never
// writes). Activations: N(0, 1) with outliers, quantized by quantize_rows_q8_0; one block in seven all zero.
inline GgmlCase make_ggml_case(ggml::Type type, int64_t m, int64_t n, int64_t k, uint64_t seed) {
  auto g = rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 15);
  GgmlCase c{type, m, n, k, {}, {}};
  std::vector<float> wf(static_cast<size_t>(n * k)), af(static_cast<size_t>(m * k));
  for (auto& v : wf) v = pick(g) == 0 ? 20.0f * nd(g) : nd(g);
  for (auto& v : af) v = pick(g) == 0 ? 50.0f * nd(g) : nd(g);
  for (int64_t i = 0; i < m * k / 32; ++i)
    if (i % 7 == 3) std::fill(af.begin() + i * 32, af.begin() + (i + 1) * 32, 0.0f);
  c.w = ggml::quantize(type, wf.data(), n, k);
  if (type == ggml::Type::Q8_0) {
    auto* blocks = reinterpret_cast<ggml::BlockQ8_0*>(c.w.data());
    for (int64_t i = 0; i < n * k / 32; ++i)
      for (int j = 0; j < 32; ++j) {
        const int p = pick(g);
        if (p == 0) blocks[i].qs[j] = -128;
        else if (p == 1) blocks[i].qs[j] = 127;
      }
  }
  c.a.resize(static_cast<size_t>(m * k / 32));
  kernels::quantize_rows_q8_0(af.data(), m, k, k, c.a.data());
  return c;
}

inline int weight_code(const GgmlCase& c, int64_t n, int64_t kk) {
  const int64_t rb = ggml::row_size(c.type, c.k), b = kk / 32, j = kk % 32;
  const uint8_t* row = c.w.data() + n * rb;
  if (c.type == ggml::Type::Q8_0) return static_cast<int8_t>(row[b * 34 + 2 + j]);
  const uint8_t byte = row[b * 18 + 2 + (j % 16)];
  return (j < 16 ? (byte & 0x0f) : (byte >> 4)) - 8;
}

inline float weight_scale(const GgmlCase& c, int64_t n, int64_t b) {
  const int64_t rb = ggml::row_size(c.type, c.k);
  uint16_t h;
  std::memcpy(&h, c.w.data() + n * rb + b * (c.type == ggml::Type::Q8_0 ? 34 : 18), 2);
  return fp16_to_fp32(h);
}

// S[m, n] = sum_b |d_w * d_a| * sum_j |qw_j * qa_j|, in double: the scale of the float sums' rounding errors
// (a SIMD path rounds partial sums of a few products each, which may exceed |sumi_b| when they cancel).
inline std::vector<double> magnitudes(const GgmlCase& c) {
  const int64_t nb = c.k / 32;
  std::vector<double> s(static_cast<size_t>(c.m * c.n), 0.0);
  for (int64_t m = 0; m < c.m; ++m)
    for (int64_t n = 0; n < c.n; ++n)
      for (int64_t b = 0; b < nb; ++b) {
        const ggml::BlockQ8_0& a = c.a[static_cast<size_t>(m * nb + b)];
        int64_t abs_sum = 0;
        for (int j = 0; j < 32; ++j) abs_sum += std::abs(weight_code(c, n, b * 32 + j) * a.qs[j]);
        s[static_cast<size_t>(m * c.n + n)] +=
            std::fabs(static_cast<double>(abs_sum) * weight_scale(c, n, b) * fp16_to_fp32(a.d));
      }
  return s;
}

// The bound a SIMD path is held to against the oracle: both scale exact integer partial sums by the same rounded
// d_w * d_a and add them in float, in different orders and groupings, over at most nb + 16 additions each, so
// they differ by at most about 2 (nb + 16) u S with u = 2^-24; twice that is allowed.
inline double tolerance(int64_t k, double magnitude) {
  return 4.0 * static_cast<double>(k / 32 + 16) * std::ldexp(1.0, -24) * magnitude + 1e-30;
}

}  // namespace qk::test
