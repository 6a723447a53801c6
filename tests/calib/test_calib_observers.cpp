// Calibration observers on their defining properties: exact re-binning with bounded memory, error handling,
// per-channel axes, the method factory, asymmetric searches and the MSE prediction.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "qk/calib/calib.hpp"
#include "qk/core/metrics.hpp"
#include "qk/core/quantize.hpp"
#include "test_util.hpp"

namespace {

using namespace qk::calib;
using qk::QuantScheme;

std::vector<float> normal(size_t n, uint64_t seed, double mean = 0.0, double sd = 1.0) {
  auto g = qk::test::rng(seed);
  std::normal_distribution<double> d(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(d(g));
  return v;
}

// Counts every value would get in a histogram built directly on h's final grid.
std::vector<uint64_t> direct_counts(const Histogram& h, const std::vector<std::vector<float>>& batches) {
  std::vector<uint64_t> c(static_cast<size_t>(h.capacity()), 0);
  for (const auto& b : batches)
    for (float x : b) {
      const float v = h.mode() == HistMode::Abs ? std::fabs(x) : x;
      int64_t k = static_cast<int64_t>(std::floor((v * h.grid_numerator()) / h.grid_denominator())) - h.first_bin();
      c[static_cast<size_t>(std::clamp<int64_t>(k, 0, h.capacity() - 1))]++;
    }
  return c;
}

class HistogramGrowth : public ::testing::TestWithParam<HistMode> {};

TEST_P(HistogramGrowth, RebinningKeepsEveryCountWithBoundedMemory) {
  Histogram h(512, GetParam());
  std::vector<std::vector<float>> batches;
  uint64_t n = 0;
  for (int b = 0; b < 300; ++b) {
    // the range grows 1000x over the run, and drifts to positive values
    const double sd = 0.01 * std::pow(1000.0, b / 299.0);
    batches.push_back(normal(1000 + static_cast<size_t>(b % 7), 100 + static_cast<uint64_t>(b), b > 200 ? 3 * sd : 0.0, sd));
    h.add(batches.back().data(), static_cast<int64_t>(batches.back().size()));
    n += batches.back().size();
    ASSERT_EQ(h.counts().size(), 512u);  // memory does not grow
  }
  EXPECT_EQ(h.total(), n);
  uint64_t sum = 0;
  for (auto c : h.counts()) sum += c;
  EXPECT_EQ(sum, n);
  // Merging pairs of bins is exact: the counts equal a histogram built on the final grid in one pass (up to the
  // one value that sat exactly on the stored top edge when it was counted, which stays in the then-last bin).
  const auto direct = direct_counts(h, batches);
  uint64_t diff = 0;
  for (size_t i = 0; i < direct.size(); ++i)
    diff += direct[i] > h.counts()[i] ? direct[i] - h.counts()[i] : h.counts()[i] - direct[i];
  EXPECT_LE(diff, 2u);
  // Resolution: at most twice the finest width that covers the occupied range.
  const double range = static_cast<double>(h.max()) - std::min(0.0f, h.min());
  EXPECT_LE(h.width(), 2.0 * range / (512 - 2) * 1.0001);
  EXPECT_LE(h.edge(h.first_nonzero()), h.min());
  EXPECT_GE(h.edge(h.last_nonzero_end()), h.max());
}

INSTANTIATE_TEST_SUITE_P(Modes, HistogramGrowth, ::testing::Values(HistMode::Abs, HistMode::Signed),
                         [](const auto& i) { return i.param == HistMode::Abs ? std::string("Abs") : std::string("Signed"); });

TEST(Histogram, ExtremeRangesAndFolding) {
  Histogram h(64, HistMode::Signed);
  std::vector<float> zeros(10, 0.0f);
  h.add(zeros.data(), 10);  // a zero range first
  std::vector<float> big = {-3e30f, 1e-30f, 2e30f};
  h.add(big.data(), 3);  // then 60 orders of magnitude more
  EXPECT_EQ(h.total(), 13u);
  EXPECT_EQ(h.zeros(), 10u);
  EXPECT_EQ(h.min(), -3e30f);
  const Histogram f = h.folded();
  EXPECT_EQ(f.mode(), HistMode::Abs);
  EXPECT_EQ(f.total(), 13u);
  EXPECT_EQ(f.max(), 3e30f);
  uint64_t s = 0;
  for (auto c : f.counts()) s += c;
  EXPECT_EQ(s, 13u);
  std::vector<float> nan = {1.0f, NAN};
  EXPECT_THROW(h.add(nan.data(), 2), qk::NumericError);
  EXPECT_EQ(h.total(), 13u);  // the bad batch was not counted
  std::vector<float> huge = {1.0f, 3e38f};
  EXPECT_THROW(h.add(huge.data(), 2), qk::NumericError);
  EXPECT_EQ(h.total(), 13u);
  EXPECT_THROW(Histogram(4), qk::InvalidArgument);
}

TEST(PredictedMse, MatchesMeasuredFakeQuantError) {
  const auto x = normal(200000, 7, 0.5, 2.0);
  for (const QuantScheme& s : {QuantScheme::per_tensor(8, true), QuantScheme::per_tensor(8, false, false),
                               QuantScheme::per_tensor(4, false, false), QuantScheme::per_tensor(3, true)}) {
    SCOPED_TRACE(s.describe());
    for (const char* m : {"minmax", "percentile:99.9", "mse"}) {
      SCOPED_TRACE(m);
      auto o = make_observer(m, s);
      o->observe(x);
      const CalibResult r = o->result();
      Eigen::Map<const qk::RowMatrixXf> X(x.data(), 1, static_cast<Eigen::Index>(x.size()));
      const auto P = r.params();
      const double measured = qk::mse(X, qk::fake_quant(X, s, &P));
      EXPECT_NEAR(r.predicted_mse, measured, 0.03 * measured);
      EXPECT_NEAR(r.predicted_sqnr_db(), qk::sqnr_db(X, qk::fake_quant(X, s, &P)), 0.15);
    }
  }
}

TEST(MseObserver, AsymmetricRangeBeatsMinMaxOnSkewedData) {
  // Two-sided and skewed: mostly small negatives, a long positive tail.
  auto x = normal(100000, 9, 0.0, 1.0);
  for (auto& v : x) v = v > 0 ? v * v * v : 0.3f * v;
  const QuantScheme s = QuantScheme::per_tensor(4, /*symmetric=*/false, /*is_signed=*/false);
  MseObserver mo(s, 2048);
  MinMaxObserver mm(s);
  mo.observe(x);
  mm.observe(x);
  const auto a = mo.result(), b = mm.result();
  EXPECT_LT(a.predicted_mse, 0.7 * b.predicted_mse);
  EXPECT_LT(a.lo, 0.0f);
  EXPECT_GT(a.hi, 0.0f);
  EXPECT_LT(a.hi, mm.max());
  // entropy has no single threshold for an asymmetric range of two-sided data
  EntropyObserver eo(s);
  eo.observe(x);
  EXPECT_THROW(eo.result(), qk::InvalidArgument);
  // percentile uses both one-sided quantiles
  PercentileObserver po(s, 99.0);
  po.observe(x);
  const auto p = po.result();
  std::vector<float> sorted = x;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NEAR(p.hi, sorted[static_cast<size_t>(0.99 * x.size())], po.error_bound());
  EXPECT_NEAR(p.lo, sorted[static_cast<size_t>(0.01 * x.size())], po.error_bound());
}

TEST(EntropyObserver, SmoothingKeepsEveryCandidateFinite) {
  const auto x = normal(300000, 12);
  QuantScheme s = QuantScheme::per_tensor(8, true);
  s.narrow_range = true;
  EntropyObserver plain(s, 2048), smooth(s, 2048, EntropyOptions{.smoothing = 1e-4});
  plain.observe(x);
  smooth.observe(x);
  const auto a = plain.search(), b = smooth.search();
  EXPECT_TRUE(std::isfinite(a.kl));
  EXPECT_TRUE(std::isfinite(b.kl));
  EXPECT_EQ(a.candidates, 2048 - 128 + 1);
  for (const auto& e : {a, b}) {
    EXPECT_GT(e.amax, 3.0);  // an 8-bit threshold for a unit Gaussian clips only the far tail
    EXPECT_LE(e.amax, plain.histogram().max());
  }
  EXPECT_EQ(plain.quant_bins(), 128);
  EXPECT_THROW(entropy_search({1.0, 2.0}, 1.0, 1), qk::InvalidArgument);
}

// The prefix-sum form of the search against the divergence written out bin by bin (NVIDIA's formulation).
TEST(EntropySearch, ClosedFormEqualsDirectDivergence) {
  auto g = qk::test::rng(77);
  std::gamma_distribution<double> gd(0.7, 200.0);
  std::vector<double> h(700);
  for (size_t j = 0; j < h.size(); ++j) h[j] = (j % 13 == 5 || j > 650) ? 0.0 : std::floor(gd(g) * std::exp(-static_cast<double>(j) / 200.0));
  h[699] = 3;  // the histogram ends on an occupied bin
  const int64_t qb = 128;
  std::vector<double> hf = h;
  hf[0] = hf[1];
  double T = 0;
  for (double v : hf) T += v;
  double best = INFINITY;
  int64_t arg = -1;
  for (int64_t i = 128; i <= 700; ++i) {
    std::vector<double> P(hf.begin(), hf.begin() + i), gs(qb, 0), gn(qb, 0);
    double clipped = 0;
    for (int64_t j = i; j < 700; ++j) clipped += hf[static_cast<size_t>(j)];
    P[static_cast<size_t>(i - 1)] += clipped;
    for (int64_t j = 0; j < i; ++j)
      if (hf[static_cast<size_t>(j)] != 0) gs[static_cast<size_t>(j * qb / i)] += hf[static_cast<size_t>(j)], gn[static_cast<size_t>(j * qb / i)] += 1;
    double TQ = T - clipped, kl = 0;
    for (int64_t j = 0; j < i; ++j) {
      const size_t u = static_cast<size_t>(j);
      if (P[u] == 0) continue;
      const double q = hf[u] != 0 ? gs[static_cast<size_t>(j * qb / i)] / gn[static_cast<size_t>(j * qb / i)] : 0.0;
      if (q == 0) { kl = INFINITY; break; }
      kl += P[u] / T * std::log((P[u] / T) / (q / TQ));
    }
    if (kl <= best) best = kl, arg = i;
  }
  const EntropySearch e = entropy_search(h, 0.5, qb);
  EXPECT_EQ(e.edge_index, arg);
  EXPECT_NEAR(e.kl, best, 1e-9 + 1e-7 * best);
  EXPECT_DOUBLE_EQ(e.amax, 0.5 * static_cast<double>(arg));
  h[3] = INFINITY;
  EXPECT_THROW(entropy_search(h, 0.5, qb), qk::InvalidArgument);
}

TEST(Observers, ErrorsAndDegenerateData) {
  const QuantScheme s = QuantScheme::per_tensor(8, true);
  for (const char* m : {"minmax", "moving_average", "percentile:99.99", "entropy", "mse"}) {
    SCOPED_TRACE(m);
    auto o = make_observer(m, s);
    EXPECT_THROW(o->result(), qk::InvalidArgument);  // nothing observed
    std::vector<float> bad = {0.5f, INFINITY};
    EXPECT_THROW(o->observe(bad), qk::NumericError);
    EXPECT_EQ(o->count(), 0u);
    std::vector<float> z(1000, 0.0f);
    o->observe(z);
    const auto r = o->result();
    EXPECT_GT(r.scale, 0.0f);
    EXPECT_TRUE(std::isfinite(r.scale));
    EXPECT_EQ(r.predicted_mse, 0.0);
    o->observe(normal(1000, 1));
    EXPECT_GT(o->result().amax(), 0.0);
  }
  EXPECT_THROW(make_observer("kmeans", s), qk::InvalidArgument);
  EXPECT_THROW(make_observer("percentile:abc", s), qk::InvalidArgument);
  EXPECT_THROW(make_observer("percentile:", s), qk::InvalidArgument);
  EXPECT_THROW(make_observer("percentile:100.5", s), qk::InvalidArgument);
  EXPECT_THROW(make_observer("entropy:3", s), qk::InvalidArgument);
  EXPECT_THROW(make_observer("moving_average:0", s), qk::InvalidArgument);
  EXPECT_EQ(make_observer("percentile:99.9", s)->name(), "percentile:99.9");
  QuantScheme b = s;
  b.bits = 1;
  EXPECT_THROW(MinMaxObserver{b}, qk::InvalidArgument);
}

TEST(PerChannelObserver, AnyAxisOfAnNdTensor) {
  // [2, 3, 5]: channels on axis 1 (and -2)
  std::vector<float> x(30);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((static_cast<int>(i) * 7) % 11) - 5.0f;
  const std::vector<int64_t> shape = {2, 3, 5};
  for (int axis : {1, -2}) {
    PerChannelObserver o(MinMaxObserver(QuantScheme::per_tensor(8, false, false)), axis);
    o.observe(x.data(), shape);
    ASSERT_EQ(o.channels(), 3);
    for (int c = 0; c < 3; ++c) {
      float lo = 1e9f, hi = -1e9f;
      for (int a = 0; a < 2; ++a)
        for (int k = 0; k < 5; ++k) {
          const float v = x[static_cast<size_t>(a * 15 + c * 5 + k)];
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      EXPECT_EQ(o.results()[static_cast<size_t>(c)].lo, lo);
      EXPECT_EQ(o.results()[static_cast<size_t>(c)].hi, hi);
    }
    // a second batch with another channel count is refused
    const std::vector<int64_t> other = {3, 2, 5};
    EXPECT_THROW(o.observe(x.data(), other), qk::ShapeError);
  }
  std::vector<float> wide(70000, 1.0f);
  const std::vector<int64_t> wide_shape = {70000};
  PerChannelObserver too_many(MinMaxObserver(QuantScheme::per_tensor(8)), 0);
  EXPECT_THROW(too_many.observe(wide.data(), wide_shape), qk::InvalidArgument);
  PerChannelObserver bad(MinMaxObserver(QuantScheme::per_tensor(8)), 3);
  EXPECT_THROW(bad.observe(x.data(), shape), qk::InvalidArgument);
  EXPECT_THROW(bad.results(), qk::InvalidArgument);
  // 2-D Eigen batches: axis 1 = columns are the channels
  qk::test::RowMat m = qk::test::gaussian(50, 4, 3);
  PerChannelObserver col(MseObserver(QuantScheme::per_tensor(8), 256), 1);
  col.observe(m);
  col.observe(m.topRows(10));
  EXPECT_EQ(col.channels(), 4);
  EXPECT_EQ(col.channel(2).count(), 60u);
  EXPECT_EQ(col.params().rows(), 4);
}

TEST(MovingAverage, FollowsPyTorchRecurrenceInFloat) {
  MovingAverageMinMaxObserver o(QuantScheme::per_tensor(8), 0.25f);
  std::vector<float> b1 = {-1.0f, 2.0f}, b2 = {-3.0f, 10.0f}, b3 = {0.0f, 1.0f};
  o.observe(b1);
  o.observe(b2);
  o.observe(b3);
  float lo = -1.0f, hi = 2.0f;
  lo = lo + 0.25f * (-3.0f - lo);
  hi = hi + 0.25f * (10.0f - hi);
  lo = lo + 0.25f * (0.0f - lo);
  hi = hi + 0.25f * (1.0f - hi);
  EXPECT_EQ(o.min(), lo);
  EXPECT_EQ(o.max(), hi);
}

}  // namespace
