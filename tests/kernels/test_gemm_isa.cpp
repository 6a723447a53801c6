// Every kernel path against the scalar reference (and the scalar reference against naive math on the unpacked
// operands), parameterized over all paths; the ones this CPU lacks are skipped with the reason.
// int32 results must be exact; f32 epilogues of the int8 and int4-x-int8 products bit-identical to scalar;
// the f32-activation int4 product within the rounding bound of docs/kernels.md.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>

#include <gtest/gtest.h>

#include "kernel_test_util.hpp"
#include "qk/kernels/gemm.hpp"

namespace qk::kernels {
namespace {

using test::kDimsK;
using test::kDimsM;
using test::kDimsN;

constexpr int32_t kGarbage32 = 0x5a5a5a5a;
const float kGarbageF = std::numeric_limits<float>::quiet_NaN();

class KernelPath : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!cpu_supports(GetParam()))
      GTEST_SKIP() << "this CPU (or its OS) cannot run the " << isa_name(GetParam()) << " path";
    std::cout << "[ path     ] " << isa_name(GetParam()) << ": " << kernel_names(GetParam()).gemm_s8 << ", "
              << kernel_names(GetParam()).gemv_w4 << "\n";
  }
  Exec ex(int threads = 1) const { return Exec{threads, GetParam()}; }
};

// Runs gemm_s8 with a padded ldc over garbage and checks every element and that the padding is untouched.
void check_s8(const test::S8Case& c, int zp, const Exec& ex) {
  const PackedS8 w = pack_s8(c.w.data(), c.n, c.k, c.k, c.ws.data());
  const int64_t ldc = c.n + 3;
  std::vector<int32_t> out(static_cast<size_t>(c.m * ldc), kGarbage32);
  gemm_s8(c.a.data(), c.m, c.k, zp, w, out.data(), ldc, ex);
  const auto ref = test::naive_s8(c, zp);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j)
      ASSERT_EQ(out[static_cast<size_t>(i * ldc + j)], ref[static_cast<size_t>(i * c.n + j)])
          << "M=" << c.m << " N=" << c.n << " K=" << c.k << " zp=" << zp << " at (" << i << ", " << j << ")";
    for (int64_t j = c.n; j < ldc; ++j)
      ASSERT_EQ(out[static_cast<size_t>(i * ldc + j)], kGarbage32) << "wrote past N at row " << i;
  }
}

TEST_P(KernelPath, S8Int32ExactOverShapeMatrix) {
  uint64_t seed = 1;
  for (int64_t m : kDimsM)
    for (int64_t n : kDimsN)
      for (int64_t k : kDimsK) {
        check_s8(test::make_s8(m, n, k, seed), static_cast<int>(seed % 256), ex());
        ++seed;
      }
}

TEST_P(KernelPath, S8Int32ExactOnRandomCubeSample) {
  auto g = test::rng(77);
  std::uniform_int_distribution<int64_t> d(1, 67);
  for (int i = 0; i < 300; ++i) check_s8(test::make_s8(d(g), d(g), d(g), 1000 + i), i % 256, ex());
}

TEST_P(KernelPath, S8GemvAndWideTiles) {
  // GEMV blocks of 4 / 8 tiles and their tails, long K with a ragged end.
  for (int64_t n : {63, 64, 65, 127, 128, 129, 143, 144, 145, 257})
    for (int64_t k : {1, 67, 255, 1021}) check_s8(test::make_s8(1, n, k, 5000 + n + k), 128, ex());
  for (int64_t m : {23, 24, 25, 40, 41}) check_s8(test::make_s8(m, 97, 131, 6000 + m), 3, ex());
}

TEST_P(KernelPath, S8EveryZeroPoint) {
  const auto c = test::make_s8(3, 33, 37, 99);
  for (int zp = 0; zp <= 255; ++zp) check_s8(c, zp, ex());
}

TEST_P(KernelPath, S8ExtremesAtMaximumDepth) {
  // The largest magnitudes at K = kMaxK: every partial sum stays in int32 without saturation.
  for (auto [av, wv, zp] : {std::tuple{255, -128, 0}, std::tuple{255, 127, 0}, std::tuple{0, -128, 255},
                            std::tuple{0, 127, 255}}) {
    test::S8Case c{1, 17, kMaxK, {}, {}, {}, {}, {}};
    c.a.assign(static_cast<size_t>(c.k), static_cast<uint8_t>(av));
    c.w.assign(static_cast<size_t>(c.n * c.k), static_cast<int8_t>(wv));
    c.ws.assign(static_cast<size_t>(c.n), 1.0f);
    check_s8(c, zp, ex());
  }
}

TEST_P(KernelPath, S8SignedActivations) {
  for (int64_t m : {1, 5, 9})
    for (int64_t k : {3, 64, 67}) {
      auto c = test::make_s8(m, 33, k, 321 + m * k);
      std::vector<int8_t> sa(c.a.size());
      for (size_t i = 0; i < sa.size(); ++i) sa[i] = static_cast<int8_t>(static_cast<int>(c.a[i]) - 128);
      const PackedS8 w = pack_s8(c.w.data(), c.n, c.k, c.k, c.ws.data());
      std::vector<int32_t> out(static_cast<size_t>(m * c.n), kGarbage32);
      gemm_s8(sa.data(), m, k, w, out.data(), c.n, ex());
      EXPECT_EQ(out, [&] {
        std::vector<int32_t> r;
        for (int64_t v : test::naive_s8(c, 128)) r.push_back(static_cast<int32_t>(v));
        return r;
      }());
    }
}

TEST_P(KernelPath, S8F32EpilogueBitIdenticalToScalar) {
  uint64_t seed = 40000;
  for (int64_t m : {1, 2, 7, 8, 9, 17})
    for (int64_t n : {1, 15, 16, 17, 33, 129})
      for (int64_t k : {1, 5, 64, 67}) {
        const auto c = test::make_s8(m, n, k, seed++);
        const PackedS8 w = pack_s8(c.w.data(), n, k, k, c.ws.data());
        for (const float* bias : {static_cast<const float*>(nullptr), c.bias.data()}) {
          const int64_t ldc = n + 1;
          std::vector<float> ref(static_cast<size_t>(m * ldc), kGarbageF), out = ref;
          gemm_s8_f32(c.a.data(), m, k, 77, c.as.data(), w, bias, ref.data(), ldc, Exec{1, Isa::scalar});
          gemm_s8_f32(c.a.data(), m, k, 77, c.as.data(), w, bias, out.data(), ldc, ex());
          ASSERT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * sizeof(float)), 0)
              << "M=" << m << " N=" << n << " K=" << k << " bias=" << (bias != nullptr);
          // The oracle itself against double math on the exact accumulator: one rounding of the scale
          // product, one of the product, one of the bias sum.
          const auto acc = test::naive_s8(c, 77);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              const double want = static_cast<double>(acc[static_cast<size_t>(i * n + j)]) * c.as[static_cast<size_t>(i)] *
                                       c.ws[static_cast<size_t>(j)] + (bias ? bias[j] : 0.0);
              ASSERT_NEAR(ref[static_cast<size_t>(i * ldc + j)], want, 4 * FLT_EPSILON * (std::fabs(want) + 2.0));
            }
        }
      }
}

TEST_P(KernelPath, W8A8LinearLayersMatchScalar) {
  const auto x = test::gaussian(9, 67, 5);
  const auto wf = test::gaussian(33, 67, 6, 0.1f);
  const auto c = test::make_s8(1, 33, 67, 7);
  const PackedS8 w = pack_s8(c.w.data(), 33, 67, 67, c.ws.data());
  std::vector<float> ref(9 * 33), out(9 * 33, kGarbageF);
  linear_w8a8_dynamic(x.data(), 9, 67, w, c.bias.data(), ref.data(), 33, Exec{1, Isa::scalar});
  linear_w8a8_dynamic(x.data(), 9, 67, w, c.bias.data(), out.data(), 33, ex());
  EXPECT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * 4), 0);
  std::fill(out.begin(), out.end(), kGarbageF);
  linear_w8a8_static(x.data(), 9, 67, 0.03f, 120, w, nullptr, ref.data(), 33, Exec{1, Isa::scalar});
  linear_w8a8_static(x.data(), 9, 67, 0.03f, 120, w, nullptr, out.data(), 33, ex());
  EXPECT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * 4), 0);
  (void)wf;
}

// ---------------------------------------------------------------- int4
struct W4Shape {
  int64_t group, k;
};
const std::vector<W4Shape> kW4Shapes = {{8, 8},   {8, 24},   {16, 48},  {32, 32},  {32, 64},
                                        {32, 96}, {64, 64},  {64, 192}, {128, 128}, {128, 256}};
const std::vector<int64_t> kW4M = {1, 2, 3, 4, 5, 7, 8, 9, 17};
const std::vector<int64_t> kW4N = {1, 7, 15, 16, 17, 33, 63, 64, 65, 67, 129};

TEST_P(KernelPath, W4Int8ActsBitIdenticalToScalar) {
  uint64_t seed = 70000;
  for (const auto& s : kW4Shapes)
    for (int64_t m : kW4M)
      for (int64_t n : kW4N) {
        const bool zeros = (seed & 1) != 0;
        const auto c = test::make_w4(m, n, s.k, s.group, zeros, seed++);
        const PackedW4 w = pack_w4(c.code.data(), n, s.k, s.k, s.group, c.scale.data(), zeros ? c.zero.data() : nullptr);
        const ActQuant mode = (seed % 3 == 0) ? ActQuant::per_group : ActQuant::per_row;
        const QuantizedActs a = quantize_acts(c.x.data(), m, s.k, s.k, s.group, mode);
        const float* bias = (seed % 2) ? c.bias.data() : nullptr;
        const int64_t ldy = n + 2;
        std::vector<float> ref(static_cast<size_t>(m * ldy), kGarbageF), out = ref;
        gemm_w4(a, w, bias, ref.data(), ldy, Exec{1, Isa::scalar});
        gemm_w4(a, w, bias, out.data(), ldy, ex());
        ASSERT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * sizeof(float)), 0)
            << "M=" << m << " N=" << n << " K=" << s.k << " g=" << s.group << " zeros=" << zeros;
        // The oracle against double math: exact integer group dots, then the f32 fma chain's rounding.
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double want = bias ? bias[j] : 0.0, mag = std::fabs(want);
            for (int64_t g = 0; g < s.k / s.group; ++g) {
              int64_t dot = 0;
              for (int64_t l = g * s.group; l < (g + 1) * s.group; ++l)
                dot += static_cast<int64_t>(a.q[static_cast<size_t>(i * s.k + l)]) * (w.code(j, l) - w.zero_at(j, g));
              const double term = static_cast<double>(dot) * w.scale_at(j, g) * a.scale[static_cast<size_t>(i * a.groups + g)];
              want += term;
              mag += std::fabs(term);
            }
            ASSERT_NEAR(ref[static_cast<size_t>(i * ldy + j)], want, (2.0 * (s.k / s.group) + 4) * FLT_EPSILON * mag + 1e-30);
          }
      }
}

TEST_P(KernelPath, W4ExtremeCodes) {
  // All codes 0 or all 15 with zero-points 15 / 0 and activations at +-127: the largest group sums.
  for (auto [code, zero, xv] : {std::tuple{0, 15, 1.0f}, std::tuple{15, 0, -1.0f}, std::tuple{15, 0, 1.0f}}) {
    const int64_t n = 33, k = 256, group = 128;
    std::vector<uint8_t> codes(static_cast<size_t>(n * k), static_cast<uint8_t>(code));
    std::vector<float> sc(static_cast<size_t>(n * 2), 0.5f);
    std::vector<uint8_t> zs(static_cast<size_t>(n * 2), static_cast<uint8_t>(zero));
    const PackedW4 w = pack_w4(codes.data(), n, k, k, group, sc.data(), zs.data());
    std::vector<float> x(static_cast<size_t>(2 * k), xv);
    std::vector<float> ref(static_cast<size_t>(2 * n)), out(ref.size(), kGarbageF);
    gemm_w4(x.data(), 2, k, w, nullptr, ref.data(), n, ActQuant::per_row, Exec{1, Isa::scalar});
    gemm_w4(x.data(), 2, k, w, nullptr, out.data(), n, ActQuant::per_row, ex());
    EXPECT_EQ(ref, out);
    EXPECT_FLOAT_EQ(ref[0], 0.5f * static_cast<float>((code - zero) * k) * xv);
  }
}

TEST_P(KernelPath, W4F32ActsWithinRoundingBound) {
  uint64_t seed = 90000;
  for (const auto& s : kW4Shapes)
    for (int64_t m : {1, 2, 5})
      for (int64_t n : {1, 16, 17, 65}) {
        const bool zeros = (seed & 1) != 0;
        const auto c = test::make_w4(m, n, s.k, s.group, zeros, seed++);
        const PackedW4 w = pack_w4(c.code.data(), n, s.k, s.k, s.group, c.scale.data(), zeros ? c.zero.data() : nullptr);
        const int64_t ldy = n + 1;
        std::vector<float> out(static_cast<size_t>(m * ldy), kGarbageF);
        gemm_w4_f32(c.x.data(), m, s.k, w, c.bias.data(), out.data(), ldy, ex());
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double want = c.bias[static_cast<size_t>(j)], mag = std::fabs(want);
            for (int64_t l = 0; l < s.k; ++l) {
              const double t = c.x[static_cast<size_t>(i * s.k + l)] * test::w4_weight(w, j, l);
              want += t;
              mag += std::fabs(t);
            }
            // Worst-case bound of a length-(K + groups + 2) float summation: (K + G + 2) * eps * sum |terms|.
            ASSERT_NEAR(out[static_cast<size_t>(i * ldy + j)], want, (s.k + s.k / s.group + 2) * FLT_EPSILON * mag)
                << "M=" << m << " N=" << n << " K=" << s.k << " g=" << s.group;
          }
          ASSERT_TRUE(std::isnan(out[static_cast<size_t>(i * ldy + n)])) << "wrote past N";
        }
      }
}

// GPTQ act-order: weights packed with a shuffled g_idx give exactly the result of the equivalent problem whose
// columns (weights and activations alike) were sorted by group beforehand, run on the scalar path.
TEST_P(KernelPath, W4ActOrderBitIdenticalToSortedColumns) {
  uint64_t seed = 95000;
  for (auto [k, group] : {std::pair<int64_t, int64_t>{64, 32}, {192, 64}, {256, 32}, {256, 128}})
    for (int64_t m : {1, 3, 9})
      for (int64_t n : {17, 65}) {
        const bool zeros = (seed & 1) != 0;
        const auto c = test::make_w4(m, n, k, group, zeros, seed);
        auto g = test::rng(seed++);
        std::vector<int32_t> g_idx(static_cast<size_t>(k));
        for (int64_t j = 0; j < k; ++j) g_idx[static_cast<size_t>(j)] = static_cast<int32_t>(j / group);
        std::shuffle(g_idx.begin(), g_idx.end(), g);
        const PackedW4 w = pack_w4(c.code.data(), n, k, k, group, c.scale.data(), zeros ? c.zero.data() : nullptr,
                                   g_idx.data());
        ASSERT_EQ(w.perm.size(), static_cast<size_t>(k));
        for (int64_t j = 0; j < k; ++j) ASSERT_EQ(g_idx[static_cast<size_t>(w.perm[static_cast<size_t>(j)])], j / group);
        // The sorted problem, packed without g_idx.
        std::vector<uint8_t> code_s(c.code.size());
        std::vector<float> x_s(c.x.size());
        for (int64_t j = 0; j < k; ++j) {
          const int64_t src = w.perm[static_cast<size_t>(j)];
          for (int64_t r = 0; r < n; ++r) code_s[static_cast<size_t>(r * k + j)] = c.code[static_cast<size_t>(r * k + src)];
          for (int64_t i = 0; i < m; ++i) x_s[static_cast<size_t>(i * k + j)] = c.x[static_cast<size_t>(i * k + src)];
        }
        const PackedW4 ws = pack_w4(code_s.data(), n, k, k, group, c.scale.data(), zeros ? c.zero.data() : nullptr);
        EXPECT_TRUE(ws.perm.empty());
        for (ActQuant mode : {ActQuant::per_row, ActQuant::per_group}) {
          std::vector<float> ref(static_cast<size_t>(m * n)), out(ref.size(), kGarbageF);
          gemm_w4(x_s.data(), m, k, ws, c.bias.data(), ref.data(), n, mode, Exec{1, Isa::scalar});
          gemm_w4(c.x.data(), m, k, w, c.bias.data(), out.data(), n, mode, ex());
          ASSERT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * sizeof(float)), 0)
              << "M=" << m << " N=" << n << " K=" << k << " g=" << group << " zeros=" << zeros;
          // Pre-quantized activations must carry the weights' column order.
          const QuantizedActs a = quantize_acts(c.x.data(), m, k, w, mode);
          EXPECT_EQ(a.perm, w.perm);
          gemm_w4(a, w, c.bias.data(), out.data(), n, ex());
          ASSERT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * sizeof(float)), 0);
          EXPECT_THROW(gemm_w4(quantize_acts(c.x.data(), m, k, k, group, mode), w, nullptr, out.data(), n, ex()),
                       InvalidArgument);
        }
        // f32 activations: the same gather, so the same sums as the sorted problem on this path.
        std::vector<float> ref(static_cast<size_t>(m * n)), out(ref.size(), kGarbageF);
        gemm_w4_f32(x_s.data(), m, k, ws, c.bias.data(), ref.data(), n, ex());
        gemm_w4_f32(c.x.data(), m, k, w, c.bias.data(), out.data(), n, ex());
        ASSERT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * sizeof(float)), 0);
      }
}

TEST_P(KernelPath, ThreadSplitsGiveIdenticalResults) {
  // By column tiles (N large) and by rows (N within one tile); each product is above the 2^20 multiply-adds
  // below which dispatch stays on the calling thread.
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{9, 200, 1024}, std::tuple<int64_t, int64_t, int64_t>{37, 16, 2048},
                         std::tuple<int64_t, int64_t, int64_t>{1, 1040, 1024}}) {
    const auto c = test::make_s8(m, n, k, 3 + m);
    const PackedS8 w = pack_s8(c.w.data(), n, k, k, c.ws.data());
    std::vector<int32_t> one(static_cast<size_t>(m * n)), three(one.size(), kGarbage32);
    gemm_s8(c.a.data(), m, k, 5, w, one.data(), n, ex(1));
    gemm_s8(c.a.data(), m, k, 5, w, three.data(), n, ex(3));
    EXPECT_EQ(one, three);
    const auto c4 = test::make_w4(m, n, k, 32, true, 11 + m);
    const PackedW4 w4 = pack_w4(c4.code.data(), n, k, k, 32, c4.scale.data(), c4.zero.data());
    std::vector<float> f1(static_cast<size_t>(m * n)), f3(f1.size(), kGarbageF);
    gemm_w4(c4.x.data(), m, k, w4, nullptr, f1.data(), n, ActQuant::per_row, ex(1));
    gemm_w4(c4.x.data(), m, k, w4, nullptr, f3.data(), n, ActQuant::per_row, ex(3));
    EXPECT_EQ(std::memcmp(f1.data(), f3.data(), f1.size() * 4), 0);
  }
}

TEST_P(KernelPath, GemvOverHugePageWeightsMatchesScalar) {
  // Packed weights of 2 MiB and more live on their own 2 MiB-aligned buffers (WeightAllocator); the GEMVs walk
  // them with software prefetch running past the last tile. int8: 69 tiles x 2052 (K ragged); int4 g32 and g64.
  const int64_t n = 1100, k = 2051;
  const auto c = test::make_s8(1, n, k, 4242);
  const PackedS8 w = pack_s8(c.w.data(), n, k, k, c.ws.data());
  ASSERT_GE(w.data.size(), kHugePageBytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data.data()) % kHugePageBytes, 0u);
  std::vector<int32_t> ref(static_cast<size_t>(n)), out(ref.size(), kGarbage32);
  gemm_s8(c.a.data(), 1, k, 7, w, ref.data(), n, Exec{1, Isa::scalar});
  gemm_s8(c.a.data(), 1, k, 7, w, out.data(), n, ex());
  EXPECT_EQ(ref, out);
  for (int64_t group : {32, 64}) {
    const int64_t n4 = 601, k4 = 8192;
    const auto c4 = test::make_w4(1, n4, k4, group, group == 64, 4343);
    const PackedW4 w4 = pack_w4(c4.code.data(), n4, k4, k4, group, c4.scale.data(), group == 64 ? c4.zero.data() : nullptr);
    ASSERT_GE(w4.data.size(), kHugePageBytes);
    std::vector<float> f_ref(static_cast<size_t>(n4)), f_out(f_ref.size(), kGarbageF);
    gemm_w4(c4.x.data(), 1, k4, w4, c4.bias.data(), f_ref.data(), n4, ActQuant::per_group, Exec{1, Isa::scalar});
    gemm_w4(c4.x.data(), 1, k4, w4, c4.bias.data(), f_out.data(), n4, ActQuant::per_group, ex());
    EXPECT_EQ(std::memcmp(f_ref.data(), f_out.data(), f_ref.size() * sizeof(float)), 0) << "g=" << group;
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, KernelPath, ::testing::ValuesIn(kAllIsas),
                         [](const ::testing::TestParamInfo<Isa>& i) { return std::string(isa_name(i.param)); });

}  // namespace
}  // namespace qk::kernels
