#pragma once
// Calibration observers: feed activation batches with observe() any number of times, then read result():
// the clipping range, the QuantParams of the scheme for it, and the fake-quant MSE the observer predicts.
//
// Every observer is streaming: its memory does not depend on the number of batches (min/max: two floats;
// histogram-based: a fixed number of bins, see histogram.hpp).
//
//   MinMaxObserver               range = [min x, max x]                           (PyTorch MinMaxObserver)
//   MovingAverageMinMaxObserver  first batch sets min/max, then m += c·(batch_m - m) in float32
//                                                                                 (PyTorch MovingAverageMinMaxObserver)
//   PercentileObserver           percentile.hpp     EntropyObserver   entropy.hpp      MseObserver   mse.hpp
//   PerChannelObserver           one observer per channel of a given axis.
//
// Ranges become parameters with qk::range_to_params (PyTorch's symmetric/affine formulas, docs/calibration.md).
// Predicted MSE: every observer keeps a histogram (min-max ones only for this) and integrates the quantizer's
// error over it (histogram.hpp, predicted_mse), clipping included.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "qk/calib/histogram.hpp"
#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/core/scheme.hpp"

namespace qk::calib {

struct CalibResult {
  std::string method;
  float lo = 0.0f, hi = 0.0f;  // the clipping range handed to range_to_params
  float scale = 1.0f;
  int zero_point = 0;
  double predicted_mse = 0.0;  // per value, of fake-quantizing the observed data with (scale, zero_point)
  double mean_square = 0.0;    // signal power of the observed data, mean x²
  uint64_t count = 0;          // values observed
  double amax() const { return std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi))); }
  // 10·log10(signal / predicted noise); +inf when no error is predicted.
  double predicted_sqnr_db() const {
    if (predicted_mse <= 0.0) return std::numeric_limits<double>::infinity();
    if (mean_square <= 0.0) return -std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(mean_square / predicted_mse);
  }
  QuantParams params() const {
    QuantParams p(1, 1);
    p.scale(0, 0) = scale;
    p.zero_point(0, 0) = zero_point;
    return p;
  }
};

// The quantizer a scheme's parameters define (for predictions and tests).
inline AffineQuantizer quantizer_for(const QuantScheme& s, float scale, int zero_point) {
  return AffineQuantizer{static_cast<double>(scale), zero_point, s.qmin(), s.qmax()};
}

// Fills scale / zero-point of r from its range with the scheme's formulas.
inline void finish_params(CalibResult& r, const QuantScheme& s) { range_to_params(r.lo, r.hi, s, r.scale, r.zero_point); }

namespace detail {
inline void batch_minmax(const float* x, int64_t n, float& lo, float& hi) {
  float mn = std::numeric_limits<float>::infinity(), mx = -mn;
  for (int64_t i = 0; i < n; ++i) {
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  lo = mn;
  hi = mx;
}
}  // namespace detail

class Observer {
 public:
  explicit Observer(const QuantScheme& s) : scheme_(s) {
    scheme_.validate();
  }
  virtual ~Observer() = default;
  Observer(const Observer&) = default;
  Observer& operator=(const Observer&) = default;

  // One batch. NaN/Inf: NumericError, and the batch is not counted.
  virtual void observe(const float* x, int64_t n) = 0;
  void observe(std::span<const float> x) { observe(x.data(), static_cast<int64_t>(x.size())); }
  // Any Eigen expression is one batch (all its elements).
  template <typename Derived>
  void observe(const Eigen::MatrixBase<Derived>& X) {
    using Plain = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Plain m = X.template cast<float>();
    observe(m.data(), static_cast<int64_t>(m.size()));
  }
  // Throws InvalidArgument when nothing was observed.
  virtual CalibResult result() const = 0;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<Observer> clone() const = 0;
  const QuantScheme& scheme() const { return scheme_; }
  uint64_t count() const { return count_; }

 protected:
  void require_data() const {
    if (count_ == 0) fail<InvalidArgument>("{} observer: no values observed", name());
  }
  QuantScheme scheme_;
  uint64_t count_ = 0;
};

// min / max over everything observed (PyTorch MinMaxObserver; torch.aminmax per batch, then running min/max).
// It also keeps a histogram (histogram.hpp, `bins` counters) for its MSE prediction only.
class MinMaxObserver : public Observer {
 public:
  explicit MinMaxObserver(const QuantScheme& s, int64_t bins = 2048)
      : Observer(s), hist_(bins, s.symmetric ? HistMode::Abs : HistMode::Signed) {}
  void observe(const float* x, int64_t n) override {
    if (n <= 0) return;
    hist_.add(x, n);  // checks for NaN/Inf before counting anything
    float lo, hi;
    detail::batch_minmax(x, n, lo, hi);
    update(lo, hi);
    count_ += static_cast<uint64_t>(n);
  }
  using Observer::observe;
  CalibResult result() const override {
    require_data();
    CalibResult r;
    r.method = name();
    r.lo = lo_;
    r.hi = hi_;
    finish_params(r, scheme_);
    r.predicted_mse = predicted_mse(hist_, quantizer_for(scheme_, r.scale, r.zero_point));
    r.mean_square = hist_.mean_square();
    r.count = count_;
    return r;
  }
  std::string name() const override { return "minmax"; }
  std::unique_ptr<Observer> clone() const override { return std::make_unique<MinMaxObserver>(*this); }
  float min() const { return lo_; }
  float max() const { return hi_; }
  const Histogram& histogram() const { return hist_; }

 protected:
  virtual void update(float lo, float hi) {
    lo_ = std::min(lo_, lo);
    hi_ = std::max(hi_, hi);
  }
  Histogram hist_;
  float lo_ = std::numeric_limits<float>::infinity();
  float hi_ = -std::numeric_limits<float>::infinity();
};

// PyTorch MovingAverageMinMaxObserver: the first batch sets min/max = the batch's; each later batch moves
// them by c·(batch value - running value), in float32 (torch.ao.quantization.observer, averaging_constant).
class MovingAverageMinMaxObserver : public MinMaxObserver {
 public:
  explicit MovingAverageMinMaxObserver(const QuantScheme& s, float averaging_constant = 0.01f, int64_t bins = 2048)
      : MinMaxObserver(s, bins), c_(averaging_constant) {
    if (!(c_ > 0.0f && c_ <= 1.0f))
      fail<InvalidArgument>("moving-average observer: averaging constant must be in (0, 1], got {}", c_);
  }
  CalibResult result() const override {
    CalibResult r = MinMaxObserver::result();
    r.method = name();
    return r;
  }
  std::string name() const override { return "moving_average"; }
  std::unique_ptr<Observer> clone() const override { return std::make_unique<MovingAverageMinMaxObserver>(*this); }

 protected:
  void update(float lo, float hi) override {
    if (count_ == 0) {
      lo_ = lo;
      hi_ = hi;
    } else {
      lo_ = lo_ + c_ * (lo - lo_);
      hi_ = hi_ + c_ * (hi - hi_);
    }
  }

 private:
  float c_;
};

// Base of the histogram observers. Symmetric schemes count |x| (the threshold is an amax), asymmetric ones
// count x. The result is a symmetric range [-amax, amax] for symmetric schemes, [0, amax] for asymmetric
// schemes on non-negative data, and [lo, hi] for asymmetric schemes on two-sided data.
class HistogramObserver : public Observer {
 public:
  HistogramObserver(const QuantScheme& s, int64_t bins)
      : Observer(s), hist_(bins, s.symmetric ? HistMode::Abs : HistMode::Signed) {}
  void observe(const float* x, int64_t n) override {
    if (n <= 0) return;
    hist_.add(x, n);
    count_ += static_cast<uint64_t>(n);
  }
  using Observer::observe;
  const Histogram& histogram() const { return hist_; }
  // True when the data never went below zero (then [0, amax] ranges and 2^bits levels above zero).
  bool non_negative() const {
    if (hist_.mode() == HistMode::Signed) return hist_.min() >= 0.0f;
    for (uint64_t c : hist_.negative_counts())
      if (c) return false;
    return true;
  }

 protected:
  // Completes a result from a range: parameters, prediction, signal power.
  CalibResult make_result(float lo, float hi) const {
    CalibResult r;
    r.method = name();
    r.lo = lo;
    r.hi = hi;
    finish_params(r, scheme_);
    r.predicted_mse = predicted_mse(hist_, quantizer_for(scheme_, r.scale, r.zero_point));
    r.mean_square = hist_.mean_square();
    r.count = count_;
    return r;
  }
  // The range for an amax found on the |x| histogram.
  std::pair<float, float> range_for_amax(double amax) const {
    const float a = static_cast<float>(amax);
    if (!scheme_.symmetric && non_negative()) return {0.0f, a};
    return {-a, a};
  }
  Histogram hist_;
};

// One observer per channel along `axis` of an N-d row-major tensor (the per-channel variant of any observer:
// PyTorch PerChannelMinMaxObserver / MovingAveragePerChannelMinMaxObserver, NVIDIA's per-channel amax).
// Each observe() is one batch for every channel. Channels are created on the first batch; later batches must
// have the same number of channels.
class PerChannelObserver {
 public:
  // Each channel's observer keeps a histogram (16 bytes per bin for symmetric schemes), so the channel count is
  // bounded: 65536 channels of 2048 bins take 2 GiB.
  static constexpr int64_t kMaxChannels = 65536;
  PerChannelObserver(const Observer& prototype, int axis) : proto_(prototype.clone()), axis_(axis) {}

  // data: row-major tensor of the given shape; the channel axis may be negative (from the end).
  void observe(const float* data, std::span<const int64_t> shape) {
    const int rank = static_cast<int>(shape.size());
    const int ax = axis_ < 0 ? axis_ + rank : axis_;
    if (ax < 0 || ax >= rank) fail<InvalidArgument>("per-channel observer: axis {} out of range for a rank-{} tensor", axis_, rank);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < ax; ++d) outer *= shape[static_cast<size_t>(d)];
    for (int d = ax + 1; d < rank; ++d) inner *= shape[static_cast<size_t>(d)];
    const int64_t C = shape[static_cast<size_t>(ax)];
    if (obs_.empty()) {
      if (C <= 0) fail<ShapeError>("per-channel observer: channel axis {} has no channels", axis_);
      if (C > kMaxChannels)
        fail<InvalidArgument>("per-channel observer: {} channels along axis {} (at most {}: each keeps its own "
                              "histogram)", C, axis_, kMaxChannels);
      for (int64_t c = 0; c < C; ++c) obs_.push_back(proto_->clone());
    } else if (C != static_cast<int64_t>(obs_.size())) {
      fail<ShapeError>("per-channel observer: batch has {} channels along axis {}, earlier batches had {}", C, axis_,
                       obs_.size());
    }
    if (outer * inner == 0) return;
    std::vector<float> buf;
    for (int64_t c = 0; c < C; ++c) {
      const float* src;
      if (outer == 1) {
        src = data + c * inner;
      } else {
        buf.resize(static_cast<size_t>(outer * inner));
        for (int64_t o = 0; o < outer; ++o)
          std::copy_n(data + (o * C + c) * inner, inner, buf.data() + o * inner);
        src = buf.data();
      }
      obs_[static_cast<size_t>(c)]->observe(src, outer * inner);
    }
  }
  // A 2-D batch (any Eigen expression): axis 0 = rows are channels, axis 1 = columns are channels.
  template <typename Derived>
  void observe(const Eigen::MatrixBase<Derived>& X) {
    const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m = X.template cast<float>();
    const int64_t shape[2] = {m.rows(), m.cols()};
    observe(m.data(), shape);
  }

  int64_t channels() const { return static_cast<int64_t>(obs_.size()); }
  const Observer& channel(int64_t c) const { return *obs_.at(static_cast<size_t>(c)); }
  std::vector<CalibResult> results() const {
    if (obs_.empty()) fail<InvalidArgument>("per-channel observer: no batch observed");
    std::vector<CalibResult> r;
    r.reserve(obs_.size());
    for (const auto& o : obs_) r.push_back(o->result());
    return r;
  }
  // Parameters as a [channels, 1] grid (the per-channel QuantParams of a weight whose rows are the channels).
  QuantParams params() const {
    const auto r = results();
    QuantParams p(static_cast<Eigen::Index>(r.size()), 1);
    for (size_t c = 0; c < r.size(); ++c) {
      p.scale(static_cast<Eigen::Index>(c), 0) = r[c].scale;
      p.zero_point(static_cast<Eigen::Index>(c), 0) = r[c].zero_point;
    }
    return p;
  }

 private:
  std::unique_ptr<Observer> proto_;
  int axis_;
  std::vector<std::unique_ptr<Observer>> obs_;
};

}  // namespace qk::calib
