#pragma once
// MSE calibration: the clipping range that minimises the fake-quant MSE predicted from the histogram.
//
// Source: NVIDIA pytorch-quantization's HistogramCalibrator, method "mse" (_compute_amax_mse), which tries
// every bin centre from bin 128 on as amax and measures the error with all counts placed at bin centres.
// qk keeps the idea (a grid of candidate thresholds, the one with the least error wins) and makes two changes:
//  - the error of a candidate is predicted_mse() (histogram.hpp): values spread uniformly inside each bin and the
//    quantizer's error integrated exactly, with the scheme's own parameters (range_to_params), so the figure is
//    the MSE the chosen QuantParams give, not a proxy;
//  - grid, then refine: bin edges are the candidates (every one up to 512 bins, then every k-th so that about 512
//    are tried), then a golden-section search between the best candidate's neighbours (the MSE is smooth at that
//    scale).
// Symmetric schemes search amax on |x| (range [-amax, amax]); asymmetric schemes on non-negative data search
// [0, hi]; asymmetric schemes on two-sided data search a common shrink factor of [min, max], then each end by
// coordinate descent (two rounds).
// Cost: O(B · (B + levels)) for B bins: a few milliseconds for 2048 bins.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "qk/calib/histogram.hpp"
#include "qk/calib/observer.hpp"
#include "qk/core/error.hpp"
#include "qk/core/params.hpp"

namespace qk::calib {

struct MseOptions {
  int refine_iterations = 40;  // golden-section steps after the grid
};

struct MseSearch {
  float lo = 0.0f, hi = 0.0f;
  double mse = 0.0;  // predicted fake-quant MSE at [lo, hi]
  int64_t evaluations = 0;
};

namespace detail {

inline double range_error(const Histogram& h, const QuantScheme& s, double lo, double hi, int64_t& evals) {
  float scale;
  int zp;
  range_to_params(static_cast<float>(lo), static_cast<float>(hi), s, scale, zp);
  ++evals;
  return predicted_mse(h, AffineQuantizer{static_cast<double>(scale), zp, s.qmin(), s.qmax()});
}

// Minimises f on [a, b] by golden-section search, keeping the best point seen (starting from (x0, f0)).
inline void golden(const std::function<double(double)>& f, double a, double b, int iters, double& x0, double& f0) {
  const double g = 0.5 * (std::sqrt(5.0) - 1.0);
  double c = b - g * (b - a), d = a + g * (b - a);
  double fc = f(c), fd = f(d);
  for (int it = 0; it < iters; ++it) {
    if (fc < f0) { f0 = fc; x0 = c; }
    if (fd < f0) { f0 = fd; x0 = d; }
    if (fc <= fd) {
      b = d; d = c; fd = fc;
      c = b - g * (b - a); fc = f(c);
    } else {
      a = c; c = d; fc = fd;
      d = a + g * (b - a); fd = f(d);
    }
  }
  if (fc < f0) { f0 = fc; x0 = c; }
  if (fd < f0) { f0 = fd; x0 = d; }
}

// Best x of f over candidates x_i = i·step (i = 1..n, every `stride`-th one), then a golden-section search
// between the neighbours of the best candidate.
inline void grid_then_refine(const std::function<double(double)>& f, double step, int64_t n, double top, int iters,
                             double& best_x, double& best_f, int64_t grid_points = 512) {
  const int64_t stride = std::max<int64_t>(1, (n + grid_points - 1) / grid_points);
  int64_t best_i = n;
  for (int64_t i = stride; i <= n; i += stride) {
    const double x = std::min(static_cast<double>(i) * step, top);
    const double e = f(x);
    if (e < best_f) {
      best_f = e;
      best_x = x;
      best_i = i;
    }
  }
  const double a = std::max(static_cast<double>(best_i - stride) * step, 0.5 * step);
  const double b = std::min(static_cast<double>(best_i + stride) * step, top);
  if (b > a) golden(f, a, b, iters, best_x, best_f);
}

}  // namespace detail

// Threshold amax minimising the predicted MSE of scheme s with range [-amax, amax], or [0, amax] when
// `zero_based` (asymmetric scheme, non-negative data). h: a histogram of |x| (or of non-negative x).
inline MseSearch mse_threshold(const Histogram& h, const QuantScheme& s, bool zero_based, const MseOptions& o = {}) {
  if (h.empty()) fail<InvalidArgument>("mse calibration: empty histogram");
  const Histogram a = (h.mode() == HistMode::Signed && h.min() < 0.0f) ? h.folded() : h;
  MseSearch r;
  const double top = a.max();
  if (!(top > 0.0)) {
    r.lo = 0.0f; r.hi = 0.0f;
    return r;
  }
  auto f = [&](double amax) { return detail::range_error(a, s, zero_based ? 0.0 : -amax, amax, r.evaluations); };
  const int64_t n = a.first_bin() + a.last_nonzero_end();
  double best_x = top, best_f = f(top);
  detail::grid_then_refine(f, a.width(), n, top, o.refine_iterations, best_x, best_f);
  r.lo = zero_based ? 0.0f : -static_cast<float>(best_x);
  r.hi = static_cast<float>(best_x);
  r.mse = best_f;
  return r;
}

// Asymmetric range [lo, hi] for two-sided data on a Signed histogram.
inline MseSearch mse_range(const Histogram& h, const QuantScheme& s, const MseOptions& o = {}) {
  if (h.empty()) fail<InvalidArgument>("mse calibration: empty histogram");
  if (h.mode() != HistMode::Signed) fail<InvalidArgument>("mse_range needs a Signed histogram");
  MseSearch r;
  double lo = std::min(0.0f, h.min()), hi = std::max(0.0f, h.max());
  if (!(hi > lo)) return r;
  auto err = [&](double l, double u) { return detail::range_error(h, s, l, u, r.evaluations); };
  // 1. common shrink factor t of [min, max]
  const int64_t steps = std::min<int64_t>(h.capacity(), 1024);
  double best_t = 1.0, best_f = err(lo, hi);
  auto ft = [&](double t) { return err(t * lo, t * hi); };
  detail::grid_then_refine(ft, 1.0 / static_cast<double>(steps), steps, 1.0, o.refine_iterations, best_t, best_f);
  double l = best_t * lo, u = best_t * hi;
  // 2. coordinate descent on each end
  for (int round = 0; round < 2; ++round) {
    if (hi > 0.0) {
      double x = u;
      auto fu = [&](double v) { return err(l, v); };
      detail::grid_then_refine(fu, h.width(), static_cast<int64_t>(std::ceil(hi / h.width())), hi, o.refine_iterations, x, best_f);
      u = x;
    }
    if (lo < 0.0) {
      double x = -l;
      auto fl = [&](double v) { return err(-v, u); };
      detail::grid_then_refine(fl, h.width(), static_cast<int64_t>(std::ceil(-lo / h.width())), -lo, o.refine_iterations, x, best_f);
      l = -x;
    }
  }
  r.lo = static_cast<float>(l);
  r.hi = static_cast<float>(u);
  r.mse = best_f;
  return r;
}

class MseObserver : public HistogramObserver {
 public:
  explicit MseObserver(const QuantScheme& s, int64_t bins = 2048, MseOptions opt = {})
      : HistogramObserver(s, bins), opt_(opt) {}
  MseSearch search() const {
    require_data();
    if (hist_.mode() == HistMode::Signed && !non_negative()) return mse_range(hist_, scheme_, opt_);
    return mse_threshold(hist_, scheme_, !scheme_.symmetric, opt_);
  }
  CalibResult result() const override {
    const MseSearch m = search();
    return make_result(m.lo, m.hi);
  }
  std::string name() const override { return "mse"; }
  std::unique_ptr<Observer> clone() const override { return std::make_unique<MseObserver>(*this); }

 private:
  MseOptions opt_;
};

}  // namespace qk::calib
