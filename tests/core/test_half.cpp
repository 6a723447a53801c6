#include "qk/core/half.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.hpp"

using namespace qk;

// Reference rounding by exhaustive search over the neighbouring halfs (slow but obviously right).
static uint16_t reference_fp16(float f) {
  if (std::isnan(f)) return 0x7E00;
  const double x = f;
  uint16_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    for (uint16_t s : {uint16_t(0), uint16_t(0x8000)}) {
      const uint16_t c = static_cast<uint16_t>(h | s);
      const double err = std::fabs(static_cast<double>(fp16_to_fp32(c)) - x);
      if (err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1)) {
        best = c;
        best_err = err;
      }
    }
  }
  // Values beyond 65504 + half a step overflow to infinity.
  if (std::fabs(x) >= 65520.0) return static_cast<uint16_t>((f < 0 ? 0x8000 : 0) | 0x7C00);
  return best;
}

TEST(Half, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f))));
      continue;
    }
    ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << h;
  }
}

TEST(Half, KnownValues) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xC000);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(1e9f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(2.98023223876953125e-08f), 0x0000);  // exactly half of it: ties to even (0)
  EXPECT_EQ(fp16_to_fp32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0xFC00)));
}

TEST(Half, RoundsToNearestEvenLikeAnExhaustiveSearch) {
  auto g = qk::test::rng(3);
  std::uniform_int_distribution<uint32_t> bits(0, 0xFFFFFFFFu);
  int checked = 0;
  while (checked < 300) {
    float f = std::bit_cast<float>(bits(g));
    if (!std::isfinite(f) || std::fabs(f) > 70000.0f || std::fabs(f) < 1e-9f) {
      f = std::ldexp(static_cast<float>(bits(g) % 100000) / 100000.0f, static_cast<int>(bits(g) % 40) - 26);
    }
    ASSERT_EQ(fp32_to_fp16(f), reference_fp16(f)) << f;
    ++checked;
  }
  // Exact ties between halfs.
  for (uint32_t h = 0x0001; h < 0x7BFF; h += 97) {
    const float a = fp16_to_fp32(static_cast<uint16_t>(h)), b = fp16_to_fp32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(a) + b) / 2);
    ASSERT_EQ(fp32_to_fp16(mid), (h & 1) ? h + 1 : h) << std::hex << h;
  }
}

TEST(BFloat16, RoundTripAndRounding) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  for (uint32_t b = 0; b < 0x10000; b += 7) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_bf16(f), b);
  }
  // 1 + 2^-8 is exactly between 1 and 1 + 2^-7: ties to even -> 1.
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::nanf("")))));
}
