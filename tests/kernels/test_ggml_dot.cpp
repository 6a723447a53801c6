// The ggml block products' definition: Q8_0 activation quantization byte-equal to formats' reference encoder, the
// scalar oracle against a double-precision product of the decoded operands, argument errors, ggml_linear.
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "ggml_dot_test_util.hpp"
#include "qk/core/error.hpp"

namespace qk::kernels {
namespace {

using ggml::Type;

TEST(GgmlQ8_0Activations, ByteEqualToFormatsEncoder) {
  auto g = test::rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t m = 5, k = 256;
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = nd(g);
  std::fill(x.begin(), x.begin() + 32, 0.0f);                          // an all-zero block: d = 0, codes 0
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(32 + j)] = 0.5f * static_cast<float>(j - 16);  // halves
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(64 + j)] = 1e-30f * static_cast<float>(j);    // fp16 underflow
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(96 + j)] = 6e4f * std::sin(static_cast<float>(j));  // large
  x[200] = -3.0e3f;  // one outlier
  const std::vector<uint8_t> ref = ggml::quantize(Type::Q8_0, x.data(), m, k);
  std::vector<ggml::BlockQ8_0> got(static_cast<size_t>(m * k / 32));
  quantize_rows_q8_0(x.data(), m, k, k, got.data());
  ASSERT_EQ(ref.size(), got.size() * sizeof(ggml::BlockQ8_0));
  EXPECT_EQ(std::memcmp(ref.data(), got.data(), ref.size()), 0);
  // One row, and a leading dimension larger than K.
  std::vector<ggml::BlockQ8_0> row(static_cast<size_t>(k / 32));
  quantize_row_q8_0(x.data() + k, k, row.data());
  EXPECT_EQ(std::memcmp(ref.data() + row.size() * 34, row.data(), row.size() * 34), 0);
  std::vector<ggml::BlockQ8_0> two(static_cast<size_t>(2 * 64 / 32));
  quantize_rows_q8_0(x.data(), 2, 64, k, two.data());
  EXPECT_EQ(std::memcmp(two.data() + 2, ref.data() + (k / 32) * 34, 2 * 34), 0);
}

// llama.cpp's x86 activation quantizer: x * (127 / amax) rounded to nearest even. With amax = 127 the multiplier
// is 1, so 2.5 and -0.5 are ties: 2 and 0 there, 3 and -1 in the reference (halves away from zero).
TEST(GgmlQ8_0Activations, X86RoundingRoundsTiesToEven) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -0.5f;
  x[3] = 3.5f;
  ggml::BlockQ8_0 ref, x86;
  quantize_row_q8_0(x.data(), 32, &ref);
  quantize_row_q8_0(x.data(), 32, &x86, Q8Rounding::ggml_x86);
  EXPECT_EQ(ref.d, x86.d);
  EXPECT_EQ(ref.qs[0], 127);
  EXPECT_EQ(x86.qs[0], 127);
  EXPECT_EQ(ref.qs[1], 3);
  EXPECT_EQ(x86.qs[1], 2);
  EXPECT_EQ(ref.qs[2], -1);
  EXPECT_EQ(x86.qs[2], 0);
  EXPECT_EQ(ref.qs[3], 4);
  EXPECT_EQ(x86.qs[3], 4);
  // Random rows: the same scales, codes at most one apart, and mostly equal.
  auto g = test::rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> r(4096);
  for (auto& v : r) v = nd(g);
  std::vector<ggml::BlockQ8_0> a(128), b(128);
  quantize_rows_q8_0(r.data(), 1, 4096, 4096, a.data());
  quantize_rows_q8_0(r.data(), 1, 4096, 4096, b.data(), Q8Rounding::ggml_x86);
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].d, b[i].d);
    for (int j = 0; j < 32; ++j) {
      ASSERT_LE(std::abs(a[i].qs[j] - b[i].qs[j]), 1);
      differ += a[i].qs[j] != b[i].qs[j];
    }
  }
  std::cout << "[ info     ] reference and ggml_x86 codes differ in " << differ << " of 4096\n";
  EXPECT_LT(differ, 4096 / 50);
}

TEST(GgmlQ8_0Activations, Errors) {
  std::vector<float> x(64, 1.0f);
  std::vector<ggml::BlockQ8_0> y(2);
  EXPECT_THROW(quantize_rows_q8_0(x.data(), 1, 48, 48, y.data()), InvalidArgument);
  EXPECT_THROW(quantize_rows_q8_0(x.data(), 1, 64, 32, y.data()), InvalidArgument);
  x[40] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_rows_q8_0(x.data(), 1, 64, 64, y.data()), NumericError);
  x[40] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_row_q8_0(x.data(), 64, y.data()), NumericError);
}

// The oracle against sum_k dequant(w)[k] * dequant(a)[k] in double (formats' decoders): checks the block
// semantics (nibble order, offsets, scales) independently of the oracle's code. The oracle rounds d_w * d_a and
// each block's product once and adds nb terms: within (nb + 2) u sum_k |w a|; twice that is allowed.
TEST(GgmlGemmOracle, MatchesDequantizedProductInDouble) {
  uint64_t seed = 40;
  for (Type t : {Type::Q4_0, Type::Q8_0})
    for (int64_t k : {32, 96, 1024}) {
      const int64_t m = 3, n = 5;
      const test::GgmlCase c = test::make_ggml_case(t, m, n, k, seed++);
      std::vector<float> wf(static_cast<size_t>(n * k)), af(static_cast<size_t>(m * k));
      ggml::dequantize_rows(t, c.w.data(), n, k, wf.data());
      ggml::dequantize_rows(Type::Q8_0, c.a.data(), m, k, af.data());
      std::vector<float> y(static_cast<size_t>(m * n));
      ggml_gemm(t, c.w.data(), n, k, c.a.data(), m, y.data(), n, Exec{1, Isa::scalar});
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double exact = 0.0, mag = 0.0;
          for (int64_t q = 0; q < k; ++q) {
            const double p = static_cast<double>(wf[static_cast<size_t>(j * k + q)]) * af[static_cast<size_t>(i * k + q)];
            exact += p;
            mag += std::fabs(p);
          }
          const double tol = 2.0 * static_cast<double>(k / 32 + 2) * std::ldexp(1.0, -24) * mag + 1e-30;
          ASSERT_NEAR(y[static_cast<size_t>(i * n + j)], exact, tol)
              << ggml::info(t).name << " K=" << k << " at (" << i << ", " << j << ")";
        }
    }
}

TEST(GgmlGemm, ArgumentErrors) {
  const test::GgmlCase c = test::make_ggml_case(Type::Q4_0, 1, 2, 64, 3);
  std::vector<float> y(4);
  EXPECT_THROW(ggml_gemm(Type::Q4_1, c.w.data(), 2, 64, c.a.data(), 1, y.data(), 2), InvalidArgument);
  EXPECT_THROW(ggml_gemm(Type::Q4_0, c.w.data(), 2, 48, c.a.data(), 1, y.data(), 2), ShapeError);
  EXPECT_THROW(ggml_gemm(Type::Q4_0, c.w.data(), 0, 64, c.a.data(), 1, y.data(), 2), ShapeError);
  EXPECT_THROW(ggml_gemm(Type::Q4_0, c.w.data(), 2, 64, c.a.data(), 1, y.data(), 1), InvalidArgument);
  EXPECT_THROW(ggml_kernel_name(Type::Q6_K, Isa::scalar), InvalidArgument);
  std::vector<ggml::BlockQ8_0> bad = c.a;
  bad[1].qs[7] = -128;
  EXPECT_THROW(ggml_gemm(Type::Q4_0, c.w.data(), 2, 64, bad.data(), 1, y.data(), 2), InvalidArgument);
  // M = 0 writes nothing.
  EXPECT_NO_THROW(ggml_gemm(Type::Q4_0, c.w.data(), 2, 64, c.a.data(), 0, nullptr, 2));
}

TEST(GgmlGemm, LinearIsQuantizeThenProduct) {
  auto g = test::rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t m = 3, n = 7, k = 128, ldx = 130;
  std::vector<float> wf(static_cast<size_t>(n * k)), x(static_cast<size_t>(m * ldx));
  for (auto& v : wf) v = nd(g);
  for (auto& v : x) v = nd(g);
  for (Type t : {Type::Q4_0, Type::Q8_0}) {
    const std::vector<uint8_t> w = ggml::quantize(t, wf.data(), n, k);
    std::vector<ggml::BlockQ8_0> a(static_cast<size_t>(m * k / 32));
    quantize_rows_q8_0(x.data(), m, k, ldx, a.data());
    std::vector<float> y1(static_cast<size_t>(m * n)), y2(y1.size());
    ggml_gemm(t, w.data(), n, k, a.data(), m, y1.data(), n);
    ggml_linear(t, w.data(), n, k, x.data(), m, ldx, y2.data(), n);
    EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0) << ggml::info(t).name;
  }
}

// Q4_0 repacked for the int4 kernels gives the oracle's product on every path, within the summation bound (the
// terms are the same; the int4 kernels add them with fma). Covers both signs of d (ggml's encoder makes both).
TEST(GgmlRepack, Q4_0OnInt4KernelsMatchesOracle) {
  uint64_t seed = 60;
  for (Isa isa : kAllIsas) {
    if (!cpu_supports(isa)) continue;
    for (int64_t m : {1, 3, 7})
      for (int64_t n : {1, 5, 33})
        for (int64_t k : {32, 96, 1024}) {
          const test::GgmlCase c = test::make_ggml_case(Type::Q4_0, m, n, k, seed++);
          const PackedW4 w = repack_q4_0(c.w.data(), n, k);
          const QuantizedActs a = acts_from_q8_0(c.a.data(), m, k);
          std::vector<float> ref(static_cast<size_t>(m * n)), out(ref.size());
          ggml_gemm(Type::Q4_0, c.w.data(), n, k, c.a.data(), m, ref.data(), n, Exec{1, Isa::scalar});
          gemm_w4(a, w, nullptr, out.data(), n, Exec{1, isa});
          const std::vector<double> mag = test::magnitudes(c);
          for (size_t i = 0; i < ref.size(); ++i)
            ASSERT_NEAR(out[i], ref[i], test::tolerance(k, mag[i])) << isa_name(isa) << " M=" << m << " N=" << n << " K=" << k;
        }
  }
  // The repacked weights decode to the GGUF values.
  const test::GgmlCase c = test::make_ggml_case(Type::Q4_0, 1, 9, 256, 61);
  std::vector<float> wf(9 * 256);
  ggml::dequantize_rows(Type::Q4_0, c.w.data(), 9, 256, wf.data());
  const PackedW4 w = repack_q4_0(c.w.data(), 9, 256);
  bool saw_negative = false;
  for (int64_t r = 0; r < 9; ++r)
    for (int64_t j = 0; j < 256; ++j) {
      saw_negative = saw_negative || w.zero_at(r, j / 32) == 7;
      ASSERT_EQ(w.scale_at(r, j / 32) * static_cast<float>(w.code(r, j) - w.zero_at(r, j / 32)),
                wf[static_cast<size_t>(r * 256 + j)]);
    }
  EXPECT_TRUE(saw_negative);
  EXPECT_THROW(repack_q4_0(c.w.data(), 9, 48), ShapeError);
  EXPECT_THROW(acts_from_q8_0(c.a.data(), 1, 40), ShapeError);
}

}  // namespace
}  // namespace qk::kernels
