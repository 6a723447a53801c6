#pragma once
// Shared by the kernel tests: random problems with extreme codes, naive oracles computed straight from the
// unpacked operands (independent of the packed layouts), and the shape lists of the test matrix.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "qk/kernels/gemm.hpp"
#include "test_util.hpp"

namespace qk::test {

// M, N, K lists: 1..67 with the tile sizes +-1 (MR 8/4/2, 16-column tiles, GEMV 64/128-column blocks, K quads)
// and primes.
inline const std::vector<int64_t> kDimsM = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33, 67};
inline const std::vector<int64_t> kDimsN = {1, 2, 7, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 67};
inline const std::vector<int64_t> kDimsK = {1, 2, 3, 4, 5, 7, 8, 9, 13, 31, 32, 33, 63, 64, 65, 67};

struct S8Case {
  int64_t m, n, k;
  std::vector<uint8_t> a;   // [m, k]
  std::vector<int8_t> w;    // [n, k]
  std::vector<float> ws;    // [n]
  std::vector<float> as;    // [m]
  std::vector<float> bias;  // [n]
};

// Values drawn uniformly, with about one in eight replaced by an extreme code.
inline S8Case make_s8(int64_t m, int64_t n, int64_t k, uint64_t seed) {
  auto g = rng(seed);
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127), pick(0, 15);
  std::uniform_real_distribution<float> sc(0.001f, 0.1f), b(-2.0f, 2.0f);
  S8Case c{m, n, k, {}, {}, {}, {}, {}};
  c.a.resize(static_cast<size_t>(m * k));
  c.w.resize(static_cast<size_t>(n * k));
  for (auto& v : c.a) {
    const int p = pick(g);
    v = static_cast<uint8_t>(p == 0 ? 0 : p == 1 ? 255 : u8(g));
  }
  for (auto& v : c.w) {
    const int p = pick(g);
    v = static_cast<int8_t>(p == 0 ? -128 : p == 1 ? 127 : p == 2 ? 0 : s8(g));
  }
  for (int64_t i = 0; i < n; ++i) c.ws.push_back(sc(g));
  for (int64_t i = 0; i < m; ++i) c.as.push_back(sc(g));
  for (int64_t i = 0; i < n; ++i) c.bias.push_back(b(g));
  return c;
}

// Exact sum_k (a - zp) * w in 64 bits.
inline std::vector<int64_t> naive_s8(const S8Case& c, int zp) {
  std::vector<int64_t> r(static_cast<size_t>(c.m * c.n));
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      int64_t s = 0;
      for (int64_t l = 0; l < c.k; ++l)
        s += (static_cast<int64_t>(c.a[static_cast<size_t>(i * c.k + l)]) - zp) * c.w[static_cast<size_t>(j * c.k + l)];
      r[static_cast<size_t>(i * c.n + j)] = s;
    }
  return r;
}

struct W4Case {
  int64_t m, n, k, group;
  std::vector<float> x;       // [m, k]
  std::vector<uint8_t> code;  // [n, k] 0..15
  std::vector<float> scale;   // [n, k/group]
  std::vector<uint8_t> zero;  // [n, k/group] or empty
  std::vector<float> bias;    // [n]
};

inline W4Case make_w4(int64_t m, int64_t n, int64_t k, int64_t group, bool zeros, uint64_t seed) {
  auto g = rng(seed);
  std::uniform_int_distribution<int> c4(0, 15), pick(0, 7);
  std::uniform_real_distribution<float> sc(0.002f, 0.05f), b(-1.0f, 1.0f);
  std::normal_distribution<float> xn(0.0f, 1.0f);
  W4Case c{m, n, k, group, {}, {}, {}, {}, {}};
  const int64_t G = k / group;
  for (int64_t i = 0; i < m * k; ++i) c.x.push_back(pick(g) == 0 ? 0.0f : xn(g));
  for (int64_t i = 0; i < n * k; ++i) {
    const int p = pick(g);
    c.code.push_back(static_cast<uint8_t>(p == 0 ? 0 : p == 1 ? 15 : c4(g)));
  }
  for (int64_t i = 0; i < n * G; ++i) c.scale.push_back(sc(g));
  if (zeros)
    for (int64_t i = 0; i < n * G; ++i) c.zero.push_back(static_cast<uint8_t>(c4(g)));
  for (int64_t i = 0; i < n; ++i) c.bias.push_back(b(g));
  return c;
}

// Dequantized weight w[n, k] using the packed (fp16-rounded) scales.
inline double w4_weight(const kernels::PackedW4& p, int64_t r, int64_t col) {
  const int64_t g = col / p.group;
  return static_cast<double>(p.scale_at(r, g)) * (p.code(r, col) - p.zero_at(r, g));
}

}  // namespace qk::test
