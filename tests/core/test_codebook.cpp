// Non-uniform codebooks: Lloyd-Max against its defining properties and Max's (1960) published distortions,
// NF4 with and without double quantization (QLoRA), codebook storage round trips.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "qk/calib/histogram.hpp"
#include "qk/core/codebook.hpp"
#include "test_util.hpp"

namespace {

using qk::Codebook;

std::vector<float> gaussian(size_t n, uint64_t seed) {
  auto g = qk::test::rng(seed);
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(g));
  return v;
}

// Unit-variance Laplace (b = 1/sqrt(2)) by inverting the CDF.
std::vector<float> laplace(size_t n, uint64_t seed) {
  auto g = qk::test::rng(seed);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  std::vector<float> v(n);
  const double b = 1.0 / std::sqrt(2.0);
  for (auto& x : v) {
    const double p = u(g);
    x = static_cast<float>(-b * (p < 0 ? -1.0 : 1.0) * std::log(1.0 - 2.0 * std::fabs(p)));
  }
  return v;
}

double codebook_mse(const std::vector<float>& x, const Codebook& cb) {
  double acc = 0.0;
  for (float v : x) {
    const double e = v - cb.decode(cb.encode(v));
    acc += e * e;
  }
  return acc / static_cast<double>(x.size());
}

// The best uniform quantizer with k levels: symmetric mid-rise grid (i - (k-1)/2)·step, step chosen by a grid
// search refined around its best point, to minimise the MSE on the same samples.
double best_uniform_mse(const std::vector<float>& x, int k) {
  auto mse_at = [&](double step) {
    std::vector<float> lv(static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) lv[static_cast<size_t>(i)] = static_cast<float>((i - (k - 1) / 2.0) * step);
    return codebook_mse(x, Codebook(lv));
  };
  double best = 1e300, best_step = 0.0;
  for (int s = 1; s <= 60; ++s) {
    const double e = mse_at(0.05 * s);
    if (e < best) best = e, best_step = 0.05 * s;
  }
  for (int s = -25; s <= 25; ++s) best = std::min(best, mse_at(best_step + 0.002 * s));
  return best;
}

TEST(Codebook, EncodesToNearestLevelAndPacks) {
  const Codebook cb({-1.0f, 0.0f, 0.5f, 2.0f, 3.0f});
  EXPECT_EQ(cb.bits(), 3);
  EXPECT_EQ(cb.encode(-5.0f), 0);
  EXPECT_EQ(cb.encode(0.2f), 1);
  EXPECT_EQ(cb.encode(0.3f), 2);
  EXPECT_EQ(cb.encode(100.0f), 4);
  const auto x = gaussian(1001, 3);  // odd length: the packed tail
  const auto t = qk::codebook_quantize(x, cb);
  EXPECT_EQ(t.packed.size(), qk::packed_size(1001, 3));
  const auto y = t.dequantize();
  ASSERT_EQ(y.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    // brute-force nearest
    float best = cb.levels()[0];
    for (float l : cb.levels())
      if (std::fabs(x[i] - l) < std::fabs(x[i] - best)) best = l;
    EXPECT_EQ(std::fabs(x[i] - y[i]), std::fabs(x[i] - best)) << i;
  }
  EXPECT_THROW(Codebook(std::vector<float>{}), qk::InvalidArgument);
  EXPECT_THROW(Codebook(std::vector<float>(257, 0.0f)), qk::InvalidArgument);
  std::vector<float> bad = {1.0f, NAN};
  EXPECT_THROW(qk::codebook_quantize(bad, cb), qk::NumericError);
}

// Max (1960), Table I: minimum mean-squared error of N-level quantizers of a unit-variance Gaussian.
TEST(LloydMax, ReachesMaxsPublishedGaussianDistortion) {
  const auto x = gaussian(400000, 11);
  const std::pair<int, double> table[] = {{2, 0.3634}, {4, 0.1175}, {8, 0.03454}, {16, 0.009497}};
  for (auto [k, published] : table) {
    const auto r = qk::lloyd_max(x, k);
    EXPECT_NEAR(r.mse, published, 0.02 * published) << k << " levels";
    // its own figure is the MSE the codebook gives
    EXPECT_NEAR(codebook_mse(x, r.codebook), r.mse, 1e-3 * r.mse);
    // Lloyd's iteration never increases the MSE
    for (size_t i = 1; i < r.mse_history.size(); ++i) EXPECT_LE(r.mse_history[i], r.mse_history[i - 1] * (1 + 1e-12));
    // levels are symmetric for a symmetric density (up to sampling noise)
    EXPECT_NEAR(r.codebook.levels().front(), -r.codebook.levels().back(), 0.05);
  }
}

TEST(LloydMax, BeatsUniformAtEqualBitsOnGaussianAndLaplace) {
  for (int dist = 0; dist < 2; ++dist) {
    const auto x = dist == 0 ? gaussian(100000, 5) : laplace(100000, 6);
    for (int bits = 2; bits <= 4; ++bits) {
      const int k = 1 << bits;
      const double lm = qk::lloyd_max(x, k).mse;
      const double un = best_uniform_mse(x, k);
      EXPECT_LT(lm, un) << (dist ? "laplace " : "gaussian ") << bits << " bits";
      std::printf("[ %s %d bits ] lloyd-max %.5f  best uniform %.5f  gain %.2f dB\n", dist ? "laplace " : "gaussian",
                  bits, lm, un, 10 * std::log10(un / lm));
    }
  }
}

TEST(LloydMax, FromHistogramMatchesSamples) {
  const auto x = laplace(200000, 9);
  qk::calib::Histogram h(4096, qk::calib::HistMode::Signed);
  h.add(x.data(), static_cast<int64_t>(x.size()));
  std::vector<double> counts(h.counts().begin(), h.counts().end());
  const auto rh = qk::lloyd_max_histogram(counts, h.edge(0), h.width(), 8);
  const auto rs = qk::lloyd_max(x, 8);
  EXPECT_NEAR(codebook_mse(x, rh.codebook), rs.mse, 0.01 * rs.mse);
  for (size_t j = 0; j < 8; ++j) EXPECT_NEAR(rh.codebook.levels()[j], rs.codebook.levels()[j], 0.02);
  EXPECT_THROW(qk::lloyd_max(x, 0), qk::InvalidArgument);
  EXPECT_THROW(qk::lloyd_max(std::vector<float>{}, 4), qk::InvalidArgument);
}

TEST(Nf4, PublishedTableAndDynamicMap) {
  const auto& t = qk::nf4::kTable;
  EXPECT_EQ(t.size(), 16u);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_EQ(t[0], -1.0f);
  EXPECT_EQ(t[7], 0.0f);
  EXPECT_EQ(t[15], 1.0f);
  const auto& dm = qk::nf4::dynamic_map();
  EXPECT_EQ(dm.size(), 256u);
  EXPECT_EQ(dm.levels().front(), -dm.levels()[254]);  // symmetric but for the extra +1
  EXPECT_EQ(dm.levels()[127], 0.0f);
  EXPECT_EQ(dm.levels().back(), 1.0f);
  EXPECT_FLOAT_EQ(dm.levels()[254], 0.99296875f);  // last midpoint of linspace(0.1, 1, 65) (e = 6)
  EXPECT_FLOAT_EQ(dm.levels()[128], 5.5e-7f);      // e = 0: the single midpoint 0.55 · 1e-6
}

TEST(Nf4, RoundTripPlainAbsmax) {
  const auto x = gaussian(64 * 40 + 17, 21);  // a partial last block and an odd element count
  const auto q = qk::nf4_quantize(x, {.block = 64, .double_quant = false});
  EXPECT_EQ(q.blocks(), 41);
  EXPECT_EQ(q.packed.size(), (x.size() + 1) / 2);
  const auto y = q.dequantize();
  std::vector<uint8_t> codes(x.size());
  qk::unpack_bits(q.packed, 4, codes);
  for (size_t i = 0; i < x.size(); ++i) {
    const float a = q.absmax[i / 64];
    // the code is the nearest table value of x / absmax
    int best = 0;
    for (int c = 0; c < 16; ++c)
      if (std::fabs(x[i] / a - qk::nf4::kTable[c]) < std::fabs(x[i] / a - qk::nf4::kTable[best])) best = c;
    EXPECT_EQ(std::fabs(x[i] / a - qk::nf4::kTable[codes[i]]), std::fabs(x[i] / a - qk::nf4::kTable[best])) << i;
    EXPECT_EQ(y[i], qk::nf4::kTable[codes[i]] * a);
  }
  // the block maximum is exact (code ±1)
  for (size_t b = 0; b < 41; ++b) {
    float m = 0;
    size_t arg = 0;
    for (size_t i = b * 64; i < std::min(x.size(), b * 64 + 64); ++i)
      if (std::fabs(x[i]) > m) m = std::fabs(x[i]), arg = i;
    EXPECT_EQ(std::fabs(y[arg]), m);
  }
  // values that are table entries times the block absmax come back exactly
  std::vector<float> exact(128);
  for (size_t i = 0; i < 128; ++i) exact[i] = qk::nf4::kTable[i % 16] * (i < 64 ? 2.5f : 0.75f);
  EXPECT_EQ(qk::nf4_quantize(exact, {.double_quant = false}).dequantize(), exact);
  EXPECT_NEAR(q.bits_per_parameter(), 4.0 + 32.0 / 64.0, 0.05);
}

TEST(Nf4, DoubleQuantizationBitsAndError) {
  const size_t n = 64 * 256 * 64;  // 1M parameters, 16384 blocks, 64 second-level blocks
  auto x = gaussian(n, 33);
  const auto plain = qk::nf4_quantize(x, {.block = 64, .double_quant = false});
  const auto dq = qk::nf4_quantize(x, {.block = 64, .double_quant = true, .dq_block = 256});
  // QLoRA: 4 + 8/64 + 32/(64·256) = 4.127 bits per parameter (plus one fp32 offset for the whole tensor)
  EXPECT_NEAR(dq.bits_per_parameter(), 4.127, 0.001);
  EXPECT_NEAR(plain.bits_per_parameter(), 4.5, 1e-9);
  EXPECT_EQ(dq.absmax_codes.size(), n / 64);
  EXPECT_EQ(dq.dq_scale.size(), n / 64 / 256);
  // the quantized constants stay close to the true ones
  const auto a_true = plain.absmax, a_dq = dq.block_absmax();
  double worst = 0;
  for (size_t i = 0; i < a_true.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(a_dq[i] - a_true[i]) / a_true[i]));
  EXPECT_LT(worst, 0.02);
  // and the tensor error barely moves
  auto err = [&](const std::vector<float>& y) {
    double e = 0;
    for (size_t i = 0; i < n; ++i) e += (x[i] - y[i]) * (x[i] - y[i]);
    return e / static_cast<double>(n);
  };
  const double e_plain = err(plain.dequantize()), e_dq = err(dq.dequantize());
  EXPECT_LT(e_dq, 1.01 * e_plain);
  // NF4 at 4 bits on Gaussian weights: blockwise absmax-64 SQNR around 20 dB
  EXPECT_GT(10 * std::log10(1.0 / e_plain), 19.0);
  std::printf("[ nf4 ] mse plain %.6g  double-quant %.6g  bits/param %.4f\n", e_plain, e_dq, dq.bits_per_parameter());
  std::vector<float> bad = {1.0f, INFINITY};
  EXPECT_THROW(qk::nf4_quantize(bad), qk::NumericError);
  EXPECT_THROW(qk::nf4_quantize(x, {.block = 0}), qk::InvalidArgument);
  // all-zero blocks decode to zero
  std::vector<float> z(300, 0.0f);
  z[299] = 1.0f;
  const auto zq = qk::nf4_quantize(z).dequantize();
  for (size_t i = 0; i < 256; ++i) EXPECT_EQ(zq[i], 0.0f) << i;
  EXPECT_NEAR(zq[299], 1.0f, 0.02f);
}

}  // namespace
