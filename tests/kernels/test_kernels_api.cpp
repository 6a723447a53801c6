// The kernels' API around the arithmetic: ISA names and detection, packing checks and round trips, argument
// validation, and products from QuantizedTensor against float math.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

#include "kernel_test_util.hpp"
#include "qk/core/metrics.hpp"
#include "qk/core/quantize.hpp"
#include "qk/kernels/gemm.hpp"

namespace qk::kernels {
namespace {

TEST(KernelIsa, NamesRoundTripAndUnknownIsRejected) {
  for (Isa i : kAllIsas) EXPECT_EQ(parse_isa(isa_name(i)), i);
  EXPECT_THROW(parse_isa("avx9000"), InvalidArgument);
  EXPECT_THROW(parse_isa(""), InvalidArgument);
}

TEST(KernelIsa, SupportedPathsAreOrderedAndIncludeActive) {
  const auto s = supported_isas();
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s.front(), Isa::scalar);
  EXPECT_EQ(best_isa(), s.back());
  for (size_t i = 1; i < s.size(); ++i) EXPECT_LT(static_cast<int>(s[i - 1]), static_cast<int>(s[i]));
  // Every SIMD path implies avx2; avx512vnni implies avx512 (avxvnni and avx512 are independent).
  for (Isa i : kAllIsas)
    if (i != Isa::scalar && cpu_supports(i)) {
      EXPECT_TRUE(cpu_supports(Isa::avx2)) << isa_name(i);
    }
  if (cpu_supports(Isa::avx512vnni)) {
    EXPECT_TRUE(cpu_supports(Isa::avx512));
  }
  EXPECT_TRUE(cpu_supports(active_isa()));
  std::cout << "[ paths    ] supported:";
  for (Isa i : s) std::cout << ' ' << isa_name(i);
  std::cout << "; active " << isa_name(active_isa()) << "\n";
  for (Isa i : kAllIsas) {
    const KernelNames k = kernel_names(i);
    EXPECT_FALSE(k.gemm_s8.empty() || k.gemv_s8.empty() || k.gemm_w4.empty() || k.gemv_w4.empty() || k.gemm_w4_f32.empty());
  }
}

TEST(KernelPack, S8LayoutReadsBackAndSumsColumns) {
  const auto c = test::make_s8(1, 37, 29, 3);
  const PackedS8 w = pack_s8(c.w.data(), 37, 29, 29, c.ws.data());
  EXPECT_EQ(w.layout, Layout::s8_n16k4);
  EXPECT_EQ(w.k_pad, 32);
  EXPECT_EQ(w.data.size(), static_cast<size_t>(3 * 16 * 32));
  for (int64_t r = 0; r < 37; ++r) {
    int32_t s = 0;
    for (int64_t k = 0; k < 29; ++k) {
      EXPECT_EQ(w.at(r, k), c.w[static_cast<size_t>(r * 29 + k)]);
      s += c.w[static_cast<size_t>(r * 29 + k)];
    }
    EXPECT_EQ(w.col_sum[static_cast<size_t>(r)], s);
  }
}

TEST(KernelPack, W4LayoutReadsBack) {
  const auto c = test::make_w4(1, 21, 64, 32, true, 5);
  const PackedW4 w = pack_w4(c.code.data(), 21, 64, 64, 32, c.scale.data(), c.zero.data());
  EXPECT_EQ(w.layout, Layout::w4_n16k8);
  EXPECT_EQ(w.data.size(), static_cast<size_t>(2 * 16 * 32));
  for (int64_t r = 0; r < 21; ++r) {
    for (int64_t k = 0; k < 64; ++k) EXPECT_EQ(w.code(r, k), c.code[static_cast<size_t>(r * 64 + k)]);
    for (int64_t g = 0; g < 2; ++g) {
      EXPECT_EQ(w.zero_at(r, g), c.zero[static_cast<size_t>(r * 2 + g)]);
      EXPECT_NEAR(w.scale_at(r, g), c.scale[static_cast<size_t>(r * 2 + g)], c.scale[static_cast<size_t>(r * 2 + g)] * 1e-3);
    }
  }
}

TEST(KernelPack, BadArgumentsAreRejected) {
  std::vector<int8_t> w8(64, 1);
  std::vector<uint8_t> w4(64, 1);
  std::vector<float> sc(8, 1.0f);
  EXPECT_THROW(pack_s8(w8.data(), 0, 4, 4), ShapeError);
  EXPECT_THROW(pack_s8(w8.data(), 2, 4, 3), InvalidArgument);
  EXPECT_THROW(pack_s8(w8.data(), 1, kMaxK + 1, kMaxK + 1), ShapeError);
  std::vector<float> bad = {1.0f, -1.0f};
  EXPECT_THROW(pack_s8(w8.data(), 2, 4, 4, bad.data()), InvalidArgument);
  EXPECT_THROW(pack_w4(w4.data(), 2, 32, 32, 12, sc.data()), InvalidArgument);   // group not a multiple of 8
  EXPECT_THROW(pack_w4(w4.data(), 1, 48, 48, 32, sc.data()), InvalidArgument);   // group does not divide K
  w4[3] = 16;
  EXPECT_THROW(pack_w4(w4.data(), 2, 32, 32, 32, sc.data()), InvalidArgument);   // not a nibble
  w4[3] = 1;
  std::vector<uint8_t> z(2, 16);
  EXPECT_THROW(pack_w4(w4.data(), 2, 32, 32, 32, sc.data(), z.data()), InvalidArgument);
  sc[0] = 1e6f;
  EXPECT_THROW(pack_w4(w4.data(), 2, 32, 32, 32, sc.data()), InvalidArgument);   // fp16 overflow
}

TEST(KernelPack, WeightBuffersBelowAndAboveTheHugePageSize) {
  // Small buffers come from operator new; from 2 MiB on they are 2 MiB-aligned (and advised to huge pages).
  std::vector<int8_t, WeightAllocator<int8_t>> small(1000, 3), large(kHugePageBytes + 5, 0);
  EXPECT_EQ(small[999], 3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(large.data()) % kHugePageBytes, 0u);
  for (size_t i = 0; i < large.size(); i += 4093) large[i] = static_cast<int8_t>(i % 127);
  auto copy = large;  // copies and growth go through the same allocator
  EXPECT_EQ(copy, large);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % kHugePageBytes, 0u);
  small.resize(3 * kHugePageBytes, 1);  // grows from the small path into the large one
  EXPECT_EQ(small[999], 3);
  EXPECT_EQ(small.back(), 1);
  // Packed weights keep their contents through a copy.
  const auto c = test::make_s8(1, 300, 4099, 8);
  const PackedS8 w = pack_s8(c.w.data(), 300, 4099, 4099, c.ws.data());
  const PackedS8 w2 = w;
  EXPECT_EQ(w2.data, w.data);
  EXPECT_EQ(w2.at(299, 4098), c.w.back());
}

TEST(KernelCall, WrongLayoutShapesAndValuesAreRejected) {
  const auto c = test::make_s8(2, 16, 8, 1);
  PackedS8 w = pack_s8(c.w.data(), 16, 8, 8, c.ws.data());
  std::vector<int32_t> out(64);
  EXPECT_THROW(gemm_s8(c.a.data(), 2, 7, 0, w, out.data(), 16), InvalidArgument);   // lda < K
  EXPECT_THROW(gemm_s8(c.a.data(), 2, 8, 256, w, out.data(), 16), InvalidArgument);  // zero-point
  EXPECT_THROW(gemm_s8(c.a.data(), 2, 8, 0, w, out.data(), 15), InvalidArgument);   // ldc < N
  PackedS8 bad = w;
  bad.layout = Layout::w4_n16k8;
  EXPECT_THROW(gemm_s8(c.a.data(), 2, 8, 0, bad, out.data(), 16), InvalidArgument);
  bad = w;
  bad.data.pop_back();
  EXPECT_THROW(gemm_s8(c.a.data(), 2, 8, 0, bad, out.data(), 16), InvalidArgument);
  EXPECT_THROW(gemm_s8(c.a.data(), 2, 8, 0, w, out.data(), 16, Exec{-1, {}}), InvalidArgument);
  std::vector<float> x(16, 1.0f), y(32);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(linear_w8a8_dynamic(x.data(), 2, 8, w, nullptr, y.data(), 16), NumericError);
  EXPECT_THROW(linear_w8a8_static(x.data(), 2, 8, 0.0f, 0, w, nullptr, y.data(), 16), InvalidArgument);
  const auto c4 = test::make_w4(2, 16, 64, 32, false, 2);
  const PackedW4 w4 = pack_w4(c4.code.data(), 16, 64, 64, 32, c4.scale.data());
  const QuantizedActs a = quantize_acts(c4.x.data(), 2, 64, 64, 64, ActQuant::per_row);  // one group of 64
  std::vector<float> y4(32);
  EXPECT_THROW(gemm_w4(a, w4, nullptr, y4.data(), 16), ShapeError);
  // M = 0 is a no-op.
  EXPECT_NO_THROW(gemm_s8(c.a.data(), 0, 8, 0, w, out.data(), 16));
}

TEST(KernelCall, AllZeroActivationRowGivesBias) {
  const auto c = test::make_s8(1, 20, 16, 4);
  const PackedS8 w = pack_s8(c.w.data(), 20, 16, 16, c.ws.data());
  std::vector<float> x(16, 0.0f), y(20);
  linear_w8a8_dynamic(x.data(), 1, 16, w, c.bias.data(), y.data(), 20);
  for (int j = 0; j < 20; ++j) EXPECT_EQ(y[static_cast<size_t>(j)], c.bias[static_cast<size_t>(j)]);
}

TEST(KernelQuantized, S8FromQuantizedTensorTracksFloatProduct) {
  const auto W = test::gaussian(48, 96, 21, 0.05f);
  const auto X = test::gaussian(5, 96, 22);
  const QuantizedTensor q = quantize(W, QuantScheme::per_channel(8));
  const PackedS8 w = pack_s8(q);
  test::RowMat Y(5, 48);
  linear_w8a8_dynamic(X.data(), 5, 96, w, nullptr, Y.data(), 48);
  const test::RowMat ref = X * W.transpose();
  EXPECT_GT(cosine(Y, ref), 0.999);
  // Against the dequantized weight, only the activation rounding remains.
  const test::RowMat refq = X * q.dequantize().transpose();
  EXPECT_GT(cosine(Y, refq), 0.9995);
}

TEST(KernelQuantized, W4FromQuantizedTensorMatchesDequantizedProduct) {
  const auto W = test::gaussian(40, 256, 23, 0.05f);
  const auto X = test::gaussian(3, 256, 24);
  for (bool sym : {true, false}) {
    const QuantizedTensor q = quantize(W, QuantScheme::per_group(4, 64, sym, sym));
    const PackedW4 w = pack_w4(q);
    EXPECT_EQ(w.has_zero, !sym);
    // fp16 scales: compare against the dequantized weight with the packed scales.
    test::RowMat Wq(40, 256);
    for (int64_t r = 0; r < 40; ++r)
      for (int64_t c = 0; c < 256; ++c) Wq(r, c) = static_cast<float>(test::w4_weight(w, r, c));
    EXPECT_LT(max_abs_error(Wq, q.dequantize()), 1e-3);
    test::RowMat Y(3, 40), Y8(3, 40);
    gemm_w4_f32(X.data(), 3, 256, w, nullptr, Y.data(), 40);
    const test::RowMat ref = X * Wq.transpose();
    EXPECT_LT(max_abs_error(Y, ref), 1e-4);
    gemm_w4(X.data(), 3, 256, w, nullptr, Y8.data(), 40, ActQuant::per_group);
    EXPECT_GT(cosine(Y8, ref), 0.9995);
  }
}

TEST(KernelQuantized, W4ActOrderQuantizedTensorMatchesDequantizedProduct) {
  // A GPTQ desc_act layout: g_idx is a shuffled assignment of the columns to groups of 32.
  const auto W = test::gaussian(24, 128, 26, 0.05f);
  const auto X = test::gaussian(3, 128, 27);
  QuantizedTensor q = quantize(W, QuantScheme::per_group(4, 32, false, false));
  q.g_idx.resize(128);
  for (int j = 0; j < 128; ++j) q.g_idx[static_cast<size_t>(j)] = j / 32;
  auto g = test::rng(28);
  std::shuffle(q.g_idx.begin(), q.g_idx.end(), g);
  const PackedW4 w = pack_w4(q);
  ASSERT_EQ(w.perm.size(), 128u);
  const test::RowMat Wd = q.dequantize();  // honours g_idx
  test::RowMat Y(3, 24), Y8(3, 24);
  gemm_w4_f32(X.data(), 3, 128, w, nullptr, Y.data(), 24);
  const test::RowMat ref = X * Wd.transpose();
  EXPECT_LT(max_abs_error(Y, ref), 2e-3);  // fp16 scales
  gemm_w4(X.data(), 3, 128, w, nullptr, Y8.data(), 24, ActQuant::per_group);
  EXPECT_GT(cosine(Y8, ref), 0.9995);
  // The plain column / group assignment needs no permutation.
  for (int j = 0; j < 128; ++j) q.g_idx[static_cast<size_t>(j)] = j / 32;
  EXPECT_TRUE(pack_w4(q).perm.empty());
}

TEST(KernelPack, W4ActOrderValidation) {
  const auto c = test::make_w4(1, 4, 64, 32, false, 29);
  std::vector<int32_t> g_idx(64, 0);
  EXPECT_THROW(pack_w4(c.code.data(), 4, 64, 64, 32, c.scale.data(), nullptr, g_idx.data()), InvalidArgument);  // 64 in group 0
  for (int j = 0; j < 64; ++j) g_idx[static_cast<size_t>(j)] = j % 2;
  EXPECT_NO_THROW(pack_w4(c.code.data(), 4, 64, 64, 32, c.scale.data(), nullptr, g_idx.data()));
  g_idx[3] = 2;  // no group 2 when K / group = 2
  EXPECT_THROW(pack_w4(c.code.data(), 4, 64, 64, 32, c.scale.data(), nullptr, g_idx.data()), InvalidArgument);
  g_idx[3] = -1;
  EXPECT_THROW(pack_w4(c.code.data(), 4, 64, 64, 32, c.scale.data(), nullptr, g_idx.data()), InvalidArgument);
  QuantizedTensor q = quantize(test::gaussian(4, 64, 30), QuantScheme::per_group(4, 32));
  q.g_idx.assign(63, 0);
  EXPECT_THROW(pack_w4(q), ShapeError);
}

TEST(KernelQuantized, UnsuitableSchemesAreRejected) {
  const auto W = test::gaussian(8, 64, 25);
  EXPECT_THROW(pack_s8(quantize(W, QuantScheme::per_channel(4))), InvalidArgument);
  EXPECT_THROW(pack_w4(quantize(W, QuantScheme::per_channel(4))), InvalidArgument);
  EXPECT_THROW(pack_w4(quantize(W, QuantScheme::per_group(8, 32))), InvalidArgument);
}

}  // namespace
}  // namespace qk::kernels
