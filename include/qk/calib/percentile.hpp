#pragma once
// Percentile calibration: clip at the p-th percentile of the observed values.
//
// Source: NVIDIA pytorch-quantization's HistogramCalibrator, method "percentile" (TensorRT's INT8 calibration
// tooling): with a histogram of |x|, amax is where the cumulative share of counts first reaches p/100 (both
// tails pooled). NVIDIA returns the left edge of that bin; qk interpolates linearly inside it.
//
// Error bound: the empirical p-quantile of the data lies inside the bin found, and so does the estimate, so the
// estimate is within one bin width (Histogram::width(), at most 2·range/bins after re-binning) of the exact
// quantile of everything observed. A second, independent bound comes from the NVIDIA convention itself: its
// threshold is that bin's left edge, so the two differ by less than one bin when the histograms agree.
//
// Asymmetric schemes on two-sided data use the two one-sided quantiles [q(1 - p/100), q(p/100)] of x.
#include <cmath>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "qk/calib/histogram.hpp"
#include "qk/calib/observer.hpp"
#include "qk/core/error.hpp"

namespace qk::calib {

struct QuantileHit {
  double value = 0.0;  // interpolated quantile
  int64_t bin = 0;     // stored bin holding it (value in [edge(bin), edge(bin + 1)])
};

// The value below which a fraction q (0..1) of the counts lie, linearly interpolated within its bin and
// clamped to the observed [min, max].
inline QuantileHit histogram_quantile(const Histogram& h, double q) {
  if (h.empty()) fail<InvalidArgument>("quantile of an empty histogram");
  if (!(q >= 0.0 && q <= 1.0)) fail<InvalidArgument>("quantile {} is outside [0, 1]", q);
  const auto c = h.counts();
  const double target = q * static_cast<double>(h.total());
  const int64_t first = h.first_nonzero(), end = h.last_nonzero_end();
  double cum = 0.0;
  int64_t i = first;
  for (; i < end; ++i) {
    const double cnt = static_cast<double>(c[static_cast<size_t>(i)]);
    if (cnt > 0 && cum + cnt >= target) break;
    cum += cnt;
  }
  if (i >= end) i = end - 1;
  const double cnt = static_cast<double>(c[static_cast<size_t>(i)]);
  const double frac = cnt > 0 ? std::clamp((target - cum) / cnt, 0.0, 1.0) : 1.0;
  double v = h.edge(i) + frac * h.width();
  v = std::clamp(v, static_cast<double>(h.min()), static_cast<double>(h.max()));
  return {v, i};
}

class PercentileObserver : public HistogramObserver {
 public:
  PercentileObserver(const QuantScheme& s, double percentile = 99.99, int64_t bins = 2048)
      : HistogramObserver(s, bins), p_(percentile) {
    if (!(percentile > 0.0 && percentile <= 100.0))
      fail<InvalidArgument>("percentile must be in (0, 100], got {}", percentile);
  }
  CalibResult result() const override {
    require_data();
    if (hist_.mode() == HistMode::Signed && hist_.min() < 0.0f) {
      const double lo = histogram_quantile(hist_, 1.0 - p_ / 100.0).value;
      const double hi = histogram_quantile(hist_, p_ / 100.0).value;
      return make_result(static_cast<float>(std::min(lo, 0.0)), static_cast<float>(std::max(hi, 0.0)));
    }
    const auto [lo, hi] = range_for_amax(histogram_quantile(hist_, p_ / 100.0).value);
    return make_result(lo, hi);
  }
  // Bin width of the histogram: the bound on |estimate - exact quantile|.
  double error_bound() const { return hist_.width(); }
  double percentile() const { return p_; }
  std::string name() const override { return fmt::format("percentile:{}", p_); }
  std::unique_ptr<Observer> clone() const override { return std::make_unique<PercentileObserver>(*this); }

 private:
  double p_;
};

}  // namespace qk::calib
