// Quantization noise theory (docs/design.md, "Quantization noise"):
//  * a uniform quantizer of step s has noise power s²/12 when the input is spread evenly over its range;
//  * a b-bit quantizer fed a full-scale uniform signal (one that covers all 2^b cells) has power SQNR 6.02·b dB
//    and peak SQNR (A² / noise, A = half the quantizer's full-scale span) 6.02·b + 4.77 dB.
#include <gtest/gtest.h>

#include <cmath>

#include "qk/core/metrics.hpp"
#include "qk/core/quantize.hpp"
#include "test_util.hpp"

using namespace qk;
using qk::test::RowMat;

class Theory : public ::testing::TestWithParam<int> {};

TEST_P(Theory, MseIsStepSquaredOverTwelve) {
  const int bits = GetParam();
  RowMat x = qk::test::uniform(1, 1 << 20, 100 + bits, -1.0f, 3.0f);
  for (bool sym : {true, false}) {
    auto s = QuantScheme::per_tensor(bits, sym, !sym);
    auto q = quantize(x, s);
    const double step = q.params.scale(0, 0);
    const double m = mse(x, q.dequantize());
    // Symmetric codes clip nothing here but leave part of the grid unused; both must give s²/12.
    EXPECT_NEAR(m / (step * step / 12.0), 1.0, 0.03) << bits << " bits sym=" << sym;
  }
}

TEST_P(Theory, SqnrOfAFullScaleUniformSignal) {
  const int bits = GetParam();
  // Parameters from a given range: unsigned codes 0..2^b-1, step s, zero-point 2^(b-1); the quantizer's cells
  // cover [-(2^(b-1) + 0.5)·s, (2^(b-1) - 0.5)·s]. Feed a uniform signal over exactly that span.
  auto sch = QuantScheme::per_tensor(bits, true, false);
  const float s = 1.0f / 64.0f;
  QuantParams p(1, 1);
  p.scale(0, 0) = s;
  p.zero_point(0, 0) = 1 << (bits - 1);
  const float lo = -(static_cast<float>(1 << (bits - 1)) + 0.5f) * s;
  const float hi = (static_cast<float>(1 << (bits - 1)) - 0.5f) * s;
  RowMat x = qk::test::uniform(1, 1 << 20, 200 + bits, lo, hi);
  RowMat xq = fake_quant(x, sch, &p);
  const double noise = mse(x, xq);
  EXPECT_NEAR(noise / (s * s / 12.0), 1.0, 0.03);
  const double expected = 6.02 * bits;
  EXPECT_NEAR(sqnr_db(x, xq), expected, 0.5) << bits << " bits";
  const double peak = (static_cast<double>(hi) - lo) / 2.0;  // full-scale amplitude: half the quantizer's span
  EXPECT_NEAR(10.0 * std::log10(peak * peak / noise), expected + 4.77, 0.5) << bits << " bits";
}

INSTANTIATE_TEST_SUITE_P(Bits, Theory, ::testing::Values(4, 5, 6, 7, 8));
