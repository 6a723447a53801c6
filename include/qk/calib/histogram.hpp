#pragma once
// A streaming histogram with bounded memory, and the fake-quant error it predicts.
//
// Grid. Bins are anchored at zero: bin k covers [k·w, (k+1)·w) and the histogram stores `capacity` consecutive
// bins k0 .. k0+capacity-1. The index of a value v is floor((v·n) / d) computed in float32, with n the capacity
// and d = w·n; for the first batch of an |x| histogram d is max|x|, which is exactly how torch.histc bins
// (NVIDIA pytorch-quantization's HistogramCalibrator uses histc(|x|, 2048, 0, max|x|)), and as in histc a value
// equal to the top edge of the stored range goes into the last bin.
//
// Growth (re-binning). When a batch falls outside the stored bins, the width doubles as often as needed
// (d ← d·2^s) and old bin k moves to bin k >> s (floor division): pairs of bins merge exactly, so no count is ever
// split, moved across an edge or lost, and the grid stays consistent with new values (floor(q/2^s) =
// floor(q) >> s, and scaling a float32 quotient by a power of two is exact). Memory is `capacity` counters
// whatever the number of batches; the price is resolution: after growth, the occupied bins number between
// capacity/2 and capacity. (NVIDIA keeps the width and appends bins, which is unbounded: 1,031,697 bins for
// a row-major feed of the D5 set; PyTorch's HistogramObserver re-distributes counts by interpolation, which
// moves counts across edges.)
//
// Modes. Abs histograms count |x| (symmetric calibration: the threshold is an amax, as in TensorRT's INT8
// calibration); Signed histograms count x (asymmetric ranges). A Signed histogram folds exactly into an Abs one.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"

namespace qk::calib {

enum class HistMode { Abs, Signed };

class Histogram {
 public:
  static constexpr float kMaxMagnitude = 1e34f;
  explicit Histogram(int64_t capacity = 2048, HistMode mode = HistMode::Abs) : cap_(capacity), mode_(mode) {
    if (capacity < 8 || capacity > (int64_t{1} << 26))
      fail<InvalidArgument>("histogram: bin count must be in 8..2^26, got {}", capacity);
    counts_.assign(static_cast<size_t>(cap_), 0);
    if (mode_ == HistMode::Abs) neg_.assign(static_cast<size_t>(cap_), 0);
    nf_ = static_cast<float>(cap_);
  }

  HistMode mode() const { return mode_; }
  int64_t capacity() const { return cap_; }
  uint64_t total() const { return total_; }
  bool empty() const { return total_ == 0; }
  // Bin width, and the grid index of stored bin 0: stored bin i covers [edge(i), edge(i+1)).
  double width() const { return static_cast<double>(den_) / static_cast<double>(nf_); }
  int64_t first_bin() const { return k0_; }
  double edge(int64_t i) const { return static_cast<double>(k0_ + i) * width(); }
  // The float32 grid: value v lands in grid bin floor((v · grid_numerator()) / grid_denominator()).
  float grid_numerator() const { return nf_; }
  float grid_denominator() const { return den_; }
  std::span<const uint64_t> counts() const { return counts_; }
  // Abs mode: how many of each bin's counts came from negative values (empty span in Signed mode).
  std::span<const uint64_t> negative_counts() const { return neg_; }
  // Exact extremes of what was counted (of |x| in Abs mode) and the exact sum of squares.
  float min() const { return min_; }
  float max() const { return max_; }
  double sum_squares() const { return sumsq_; }
  double mean_square() const { return total_ ? sumsq_ / static_cast<double>(total_) : 0.0; }
  // Exact zeros counted (they sit in the bin starting at 0; predictions treat them as a point mass).
  uint64_t zeros() const { return zeros_; }
  // Stored index of the bin holding 0, or -1 when it is outside the stored bins.
  int64_t zero_bin() const { return (k0_ <= 0 && -k0_ < cap_) ? -k0_ : -1; }
  // Stored bins [begin, end) that hold counts (empty range when nothing was counted).
  int64_t first_nonzero() const {
    for (int64_t i = 0; i < cap_; ++i)
      if (counts_[static_cast<size_t>(i)]) return i;
    return cap_;
  }
  int64_t last_nonzero_end() const {
    for (int64_t i = cap_; i > 0; --i)
      if (counts_[static_cast<size_t>(i - 1)]) return i;
    return 0;
  }

  // Counts n values; NaN or Inf: NumericError (nothing of the batch is counted).
  void add(const float* x, int64_t n) {
    if (n <= 0) return;
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    double ss = 0.0;
    bool bad = false;
    for (int64_t i = 0; i < n; ++i) {
      float v = mode_ == HistMode::Abs ? std::fabs(x[i]) : x[i];
      bad |= !std::isfinite(v);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      ss += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    }
    if (bad) {
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i])) fail<NumericError>("histogram: non-finite value {} at index {} of the batch", x[i], i);
    }
    // v·n must stay finite in float32 for the grid arithmetic.
    if (std::max(std::fabs(lo), std::fabs(hi)) > kMaxMagnitude)
      fail<NumericError>("histogram: value {} is beyond the calibratable magnitude {}",
                         std::fabs(lo) > std::fabs(hi) ? lo : hi, kMaxMagnitude);
    if (total_ == 0) start(lo, hi);
    fit(lo, hi);
    const float nf = nf_, den = den_;
    const int64_t k0 = k0_, last = cap_ - 1;
    uint64_t* c = counts_.data();
    uint64_t* ng = neg_.data();
    uint64_t nz = 0;
    constexpr int64_t kChunk = 1024;
    int32_t idx[kChunk];
    for (int64_t s = 0; s < n; s += kChunk) {
      const int64_t m = std::min(kChunk, n - s);
      const float* xs = x + s;
      if (mode_ == HistMode::Abs) {
        for (int64_t i = 0; i < m; ++i) {
          // |x| >= 0, so truncation is floor; k0 is 0 in Abs mode.
          const int32_t k = static_cast<int32_t>((std::fabs(xs[i]) * nf) / den);
          idx[i] = k > last ? static_cast<int32_t>(last) : k;
        }
      } else {
        for (int64_t i = 0; i < m; ++i) {
          int64_t k = static_cast<int64_t>(std::floor((xs[i] * nf) / den)) - k0;
          k = k < 0 ? 0 : k;
          idx[i] = static_cast<int32_t>(k > last ? last : k);
        }
      }
      for (int64_t i = 0; i < m; ++i) nz += xs[i] == 0.0f;
      for (int64_t i = 0; i < m; ++i) ++c[idx[i]];
      if (mode_ == HistMode::Abs)
        for (int64_t i = 0; i < m; ++i) ng[idx[i]] += xs[i] < 0.0f;
    }
    zeros_ += nz;
    total_ += static_cast<uint64_t>(n);
    sumsq_ += ss;
    min_ = std::min(min_, lo);
    max_ = std::max(max_, hi);
  }
  void add(std::span<const float> x) { add(x.data(), static_cast<int64_t>(x.size())); }

  // The |x| histogram of a Signed one: grid bin k < 0 ([k·w, (k+1)·w)) is |x| in ((-k-1)·w, -k·w], bin -k-1.
  Histogram folded() const {
    if (mode_ == HistMode::Abs) return *this;
    Histogram h(cap_, HistMode::Abs);
    if (empty()) return h;
    h.den_ = den_;
    h.k0_ = 0;
    int64_t top = 0;
    for (int64_t i = 0; i < cap_; ++i)
      if (counts_[static_cast<size_t>(i)]) {
        const int64_t k = k0_ + i;
        top = std::max(top, k < 0 ? -k - 1 : k);
      }
    int shift = 0;
    while ((top >> shift) >= cap_) ++shift;
    h.den_ = std::ldexp(den_, shift);
    for (int64_t i = 0; i < cap_; ++i) {
      const uint64_t cnt = counts_[static_cast<size_t>(i)];
      if (!cnt) continue;
      const int64_t k = k0_ + i;
      h.counts_[static_cast<size_t>((k < 0 ? -k - 1 : k) >> shift)] += cnt;
      if (k < 0) h.neg_[static_cast<size_t>((-k - 1) >> shift)] += cnt;
    }
    h.total_ = total_;
    h.zeros_ = zeros_;
    h.sumsq_ = sumsq_;
    const float a = std::fabs(min_), b = std::fabs(max_);
    h.max_ = std::max(a, b);
    h.min_ = (min_ <= 0.0f && max_ >= 0.0f) ? 0.0f : std::min(a, b);
    return h;
  }

 private:
  // The first batch decides the width: [lo, hi] spread over all bins.
  void start(float lo, float hi) {
    double span;
    if (lo >= 0.0f) {
      span = hi;  // [0, hi] in `cap` bins: histc's binning for |x|
      k0_ = 0;
    } else if (hi <= 0.0f) {
      span = -lo;
      k0_ = -cap_;
    } else {
      // Two-sided data: up to two bins are lost to the grid's anchoring at zero (and float rounding).
      span = (static_cast<double>(hi) - lo) * static_cast<double>(cap_) / static_cast<double>(cap_ - 2);
      k0_ = 0;
    }
    if (!(span > 0.0)) span = std::max(static_cast<double>(std::fabs(lo)), 1e-30);
    den_ = static_cast<float>(span);
    if (!(den_ > 0.0f)) den_ = std::numeric_limits<float>::min();
    if (lo < 0.0f && hi > 0.0f) k0_ = static_cast<int64_t>(std::floor((lo * nf_) / den_));
  }

  // Grid index of v (not stored-relative), with v at the stored top edge counted in the last bin.
  // Saturates far outside int64 (fit() then merges in several steps).
  int64_t grid_index(float v, bool top) const {
    const float q = (v * nf_) / den_;
    if (!(std::fabs(q) < 1e18f)) return q > 0 ? int64_t{1} << 60 : -(int64_t{1} << 60);
    int64_t k = static_cast<int64_t>(std::floor(q));
    if (top && k == k0_ + cap_ && q == static_cast<float>(k)) k -= 1;
    return k;
  }

  // Makes [lo, hi] fit the stored bins, doubling the width (merging bin pairs) as often as needed.
  void fit(float lo, float hi) {
    for (;;) {
      int64_t kl = grid_index(lo, false), kh = grid_index(hi, true);
      if (kl >= k0_ && kh < k0_ + cap_) return;
      // Occupied grid range after this batch.
      const int64_t f = first_nonzero();
      if (mode_ == HistMode::Abs) kl = 0;
      if (f < cap_) {
        kl = std::min(kl, k0_ + f);
        kh = std::max(kh, k0_ + last_nonzero_end() - 1);
      }
      int shift = 0;
      // floor division by 2^s of negative indices: arithmetic shift right.
      while ((kh >> shift) - (kl >> shift) + 1 > cap_) ++shift;
      const int64_t nk0 = kl >> shift;
      std::vector<uint64_t> nc(static_cast<size_t>(cap_), 0), nn(neg_.size(), 0);
      for (int64_t i = 0; i < cap_; ++i) {
        const uint64_t cnt = counts_[static_cast<size_t>(i)];
        if (!cnt) continue;
        const size_t k = static_cast<size_t>(std::clamp<int64_t>(((k0_ + i) >> shift) - nk0, 0, cap_ - 1));
        nc[k] += cnt;
        if (!neg_.empty()) nn[k] += neg_[static_cast<size_t>(i)];
      }
      counts_.swap(nc);
      neg_.swap(nn);
      k0_ = nk0;
      den_ = std::ldexp(den_, shift);
    }
  }

  int64_t cap_;
  HistMode mode_;
  std::vector<uint64_t> counts_;
  std::vector<uint64_t> neg_;  // Abs mode: negatives per bin
  float nf_ = 0.0f;
  float den_ = 1.0f;  // bin width · capacity
  int64_t k0_ = 0;
  uint64_t total_ = 0;
  uint64_t zeros_ = 0;
  double sumsq_ = 0.0;
  float min_ = std::numeric_limits<float>::infinity();
  float max_ = -std::numeric_limits<float>::infinity();
};

// An affine quantizer x -> (clamp(round(x/scale) + zp, qmin, qmax) - zp) · scale.
struct AffineQuantizer {
  double scale = 1.0;
  int zero_point = 0;
  int qmin = -128, qmax = 127;
  double apply(double x) const {
    double q = std::nearbyint(x / scale) + zero_point;
    q = std::clamp(q, static_cast<double>(qmin), static_cast<double>(qmax));
    return (q - zero_point) * scale;
  }
};

// Fake-quant MSE per counted value that a histogram predicts for quantizer Q, taking the values as uniformly
// spread inside each bin (the outermost occupied bins are narrowed to the exact observed min/max, and exact zeros
// are a point mass at 0, which matters after ReLU or padding). Each bin's contribution is the exact integral of
// (x - Q(x))² over the pieces where Q is constant: ∫_{u1}^{u2} (x - v)² dx = ((u2 - v)³ - (u1 - v)³) / 3.
// An Abs histogram holds |x| and, per bin, how many values were negative: those are measured against the mirrored
// quantizer (-Q(-u)), so asymmetric code ranges such as [-128, 127] are predicted exactly.
inline double predicted_mse(const Histogram& h, const AffineQuantizer& Q) {
  if (h.empty()) return 0.0;
  const auto c = h.counts();
  const auto neg = h.negative_counts();
  const double w = h.width(), s = Q.scale;
  const int64_t first = h.first_nonzero(), end = h.last_nonzero_end();
  const double lo_obs = h.min(), hi_obs = h.max();
  // -Q(-u) = clamp(round(u/s), zp - qmax, zp - qmin)·s  (round half to even is odd-symmetric)
  const AffineQuantizer M{Q.scale, 0, Q.zero_point - Q.qmax, Q.zero_point - Q.qmin};
  double acc = 0.0;
  auto cube = [](double t) { return t * t * t; };
  // ∫_a^b (x - q(x))² dx for quantizer q, b > a
  auto integral = [&](const AffineQuantizer& q, double a, double b) {
    auto code = [&](double x) {
      return static_cast<int64_t>(
          std::clamp(std::floor(x / s + 0.5) + q.zero_point, static_cast<double>(q.qmin), static_cast<double>(q.qmax)));
    };
    const int64_t qa = code(a), qb = code(b);
    double r = 0.0;
    for (int64_t k = qa; k <= qb; ++k) {
      const double v = static_cast<double>(k - q.zero_point) * s;
      const double u1 = k == q.qmin ? a : std::max(a, (static_cast<double>(k - q.zero_point) - 0.5) * s);
      const double u2 = k == q.qmax ? b : std::min(b, (static_cast<double>(k - q.zero_point) + 0.5) * s);
      if (u2 > u1) r += cube(u2 - v) - cube(u1 - v);
    }
    return r / 3.0;
  };
  const int64_t zb = h.zero_bin();
  if (h.zeros() > 0) {
    const double e = Q.apply(0.0);
    acc += static_cast<double>(h.zeros()) * e * e;
  }
  for (int64_t i = first; i < end; ++i) {
    uint64_t cnt = c[static_cast<size_t>(i)];
    if (!cnt) continue;
    const uint64_t nneg = neg.empty() ? 0 : neg[static_cast<size_t>(i)];
    uint64_t npos = cnt - nneg;
    if (i == zb) npos -= std::min(npos, h.zeros());
    const double a = std::max(h.edge(i), lo_obs), b = std::min(h.edge(i) + w, hi_obs);
    for (int side = 0; side < 2; ++side) {
      const uint64_t n = side == 0 ? npos : nneg;
      if (!n) continue;
      const AffineQuantizer& q = side == 0 ? Q : M;
      if (!(b > a)) {  // a point mass
        const double e = a - q.apply(a);
        acc += static_cast<double>(n) * e * e;
      } else {
        acc += static_cast<double>(n) * integral(q, a, b) / (b - a);
      }
    }
  }
  return acc / static_cast<double>(h.total());
}

}  // namespace qk::calib
