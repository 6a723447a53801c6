// Q4_0 weights and Q8_0 activations handed to the packed int4 kernels (qk/kernels/ggml_dot.hpp, gemm.hpp).
#include <cmath>
#include <cstring>
#include <vector>

#include "qk/core/error.hpp"
#include "qk/core/half.hpp"
#include "qk/kernels/ggml_dot.hpp"

namespace qk::kernels {

PackedW4 repack_q4_0(const void* w, int64_t n, int64_t k) {
  if (n <= 0 || k <= 0 || k % 32 != 0)
    fail<ShapeError>("repack_q4_0: weights [{}, {}]: N must be positive and K a positive multiple of 32", n, k);
  if (!w) fail<InvalidArgument>("repack_q4_0: null pointer");
  const int64_t nb = k / 32;
  const auto* bytes = static_cast<const uint8_t*>(w);
  std::vector<uint8_t> codes(static_cast<size_t>(n * k)), zeros(static_cast<size_t>(n * nb));
  std::vector<float> scales(static_cast<size_t>(n * nb));
  for (int64_t i = 0; i < n * nb; ++i) {
    ggml::BlockQ4_0 b;
    std::memcpy(&b, bytes + i * static_cast<int64_t>(sizeof(b)), sizeof(b));
    const float d = fp16_to_fp32(b.d);
    const bool neg = std::signbit(d);
    scales[static_cast<size_t>(i)] = neg ? -d : d;
    zeros[static_cast<size_t>(i)] = neg ? 7 : 8;
    for (int j = 0; j < 16; ++j) {
      const int lo = b.qs[j] & 0x0f, hi = b.qs[j] >> 4;
      codes[static_cast<size_t>(i * 32 + j)] = static_cast<uint8_t>(neg ? 15 - lo : lo);
      codes[static_cast<size_t>(i * 32 + j + 16)] = static_cast<uint8_t>(neg ? 15 - hi : hi);
    }
  }
  return pack_w4(codes.data(), n, k, k, 32, scales.data(), zeros.data());
}

QuantizedActs acts_from_q8_0(const ggml::BlockQ8_0* a, int64_t m, int64_t k) {
  if (m < 0 || k <= 0 || k % 32 != 0) fail<ShapeError>("acts_from_q8_0: K = {} is not a positive multiple of 32 (M = {})", k, m);
  if (m > 0 && !a) fail<InvalidArgument>("acts_from_q8_0: null pointer");
  QuantizedActs q;
  q.m = m;
  q.k = k;
  q.groups = k / 32;
  q.q.resize(static_cast<size_t>(m * k));
  q.scale.resize(static_cast<size_t>(m * q.groups));
  q.sum.resize(q.scale.size());
  for (int64_t i = 0; i < m * q.groups; ++i) {
    int32_t s = 0;
    for (int j = 0; j < 32; ++j) {
      q.q[static_cast<size_t>(i * 32 + j)] = a[i].qs[j];
      s += a[i].qs[j];
    }
    q.scale[static_cast<size_t>(i)] = fp16_to_fp32(a[i].d);
    q.sum[static_cast<size_t>(i)] = s;
  }
  return q;
}

}  // namespace qk::kernels
