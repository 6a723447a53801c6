#pragma once
// KL-divergence ("entropy") calibration, as in TensorRT's INT8 calibration (S. Migacz, "8-bit Inference with
// TensorRT", GTC 2017) in the form NVIDIA pytorch-quantization 2.2.1 implements it
// (calib/histogram.py, _compute_amax_entropy; the facts are listed in docs/calibration.md):
//
//  1. A histogram of |x| (2048 bins by default). The first bin's count is replaced by the second's
//     (this keeps a spike of exact zeros, e.g. after ReLU, from dominating the divergence).
//  2. For every candidate i = start_bin .. B (B = number of bins up to the last occupied one), threshold
//     amax = upper edge of bin i-1:
//       P = counts of bins 0..i-1, with everything beyond (the clipped mass) added to bin i-1;
//       Q = bins 0..i-1 merged into `quant_bins` groups (bin j belongs to group floor(j·quant_bins / i)), each
//           group's total spread evenly over its non-empty bins; empty bins stay 0 in Q;
//       KL(P || Q) with both normalised (natural log). A bin with P > 0 and Q = 0 (the clipped mass landing in
//       an empty bin) gives +inf.
//  3. amax of the smallest KL; among equal minima the larger threshold (NVIDIA takes the last argmin).
//  quant_bins = 2^(bits-1) for signed codes, 2^bits when the data is non-negative and the codes are unsigned.
//
// Zero-bin smoothing (optional, off by default to follow NVIDIA): with smoothing = eps > 0 both normalised
// distributions give eps to each empty bin and take it evenly from the non-empty ones (MXNet's
// _smooth_distribution), so no candidate is infinite.
//
// Cost: with prefix sums each candidate costs O(quant_bins) (the divergence in closed form per group), so the
// search is O(B · quant_bins): about 0.25M logarithms for 2048 bins. With smoothing it is O(B²).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "qk/calib/histogram.hpp"
#include "qk/calib/observer.hpp"
#include "qk/core/error.hpp"

namespace qk::calib {

struct EntropyOptions {
  int64_t start_bin = 128;
  int64_t stride = 1;
  bool flatten_zero_bin = true;  // counts[0] = counts[1] before the search (NVIDIA)
  double smoothing = 0.0;        // eps of zero-bin smoothing; 0 = none (NVIDIA)
};

struct EntropySearch {
  double amax = 0.0;
  int64_t edge_index = 0;  // amax = edge_index · bin width
  double kl = 0.0;         // divergence at the chosen threshold
  int64_t candidates = 0;
};

// Counts of |x| indexed from grid bin 0 (bin j covers [j·w, (j+1)·w)) up to the last occupied bin.
inline std::vector<double> abs_counts_from_zero(const Histogram& h) {
  const Histogram a = (h.mode() == HistMode::Signed && h.min() < 0.0f) ? h.folded() : h;
  std::vector<double> out;
  const int64_t end = a.last_nonzero_end();
  if (end == 0) return out;
  if (a.first_bin() < 0) fail<InvalidArgument>("histogram holds negative bins after folding");
  out.assign(static_cast<size_t>(a.first_bin() + end), 0.0);
  const auto c = a.counts();
  for (int64_t i = 0; i < end; ++i) out[static_cast<size_t>(a.first_bin() + i)] = static_cast<double>(c[static_cast<size_t>(i)]);
  return out;
}

// The search on counts indexed from zero with bin width w.
inline EntropySearch entropy_search(std::vector<double> hist, double width, int64_t quant_bins,
                                    const EntropyOptions& o = {}) {
  if (quant_bins < 2) fail<InvalidArgument>("entropy calibration: quant_bins must be >= 2, got {}", quant_bins);
  if (o.stride < 1 || o.start_bin < 1) fail<InvalidArgument>("entropy calibration: start_bin and stride must be >= 1");
  const int64_t B = static_cast<int64_t>(hist.size());
  if (B == 0) fail<InvalidArgument>("entropy calibration: empty histogram");
  for (double v : hist)
    if (!(v >= 0.0) || !std::isfinite(v)) fail<InvalidArgument>("entropy calibration: bad histogram count {}", v);
  if (o.flatten_zero_bin && B > 1) hist[0] = hist[1];
  double total = 0.0;
  for (double v : hist) total += v;
  // suffix sums: clipped mass beyond bin i-1
  std::vector<double> tail(static_cast<size_t>(B + 1), 0.0);
  for (int64_t i = B - 1; i >= 0; --i) tail[static_cast<size_t>(i)] = tail[static_cast<size_t>(i + 1)] + hist[static_cast<size_t>(i)];
  std::vector<double> gsum(static_cast<size_t>(quant_bins)), gnz(static_cast<size_t>(quant_bins));
  std::vector<int32_t> group;
  // Prefix sums for the O(quant_bins) form of one candidate's divergence (no smoothing):
  //   KL = (1/T) [ Σ P log P - T log T + T log S_i - Σ_g G_g log(G_g / n_g) - c log(Q_{i-1}) ]
  // with T the total, S_i = Σ_{j<i} h_j, G_g / n_g the count / non-empty bins of group g, c the clipped mass
  // (added to P_{i-1}); groups are the contiguous ranges j in [ceil(g·i/qb), ceil((g+1)·i/qb)).
  std::vector<double> S(static_cast<size_t>(B + 1), 0.0), Z(S), L(S);
  for (int64_t j = 0; j < B; ++j) {
    const double h = hist[static_cast<size_t>(j)];
    S[static_cast<size_t>(j + 1)] = S[static_cast<size_t>(j)] + h;
    Z[static_cast<size_t>(j + 1)] = Z[static_cast<size_t>(j)] + (h != 0.0 ? 1.0 : 0.0);
    L[static_cast<size_t>(j + 1)] = L[static_cast<size_t>(j)] + (h > 0.0 ? h * std::log(h) : 0.0);
  }
  auto kl_closed_form = [&](int64_t i) {
    const size_t ui = static_cast<size_t>(i);
    const double Si = S[ui], clipped = total - Si, hl = hist[ui - 1];
    const double plast = hl + clipped;
    if (clipped > 0.0 && hl == 0.0) return std::numeric_limits<double>::infinity();
    if (!(Si > 0.0)) return std::numeric_limits<double>::infinity();
    double plogp = L[ui - 1] + (plast > 0.0 ? plast * std::log(plast) : 0.0);
    double plogq = 0.0, qlast = 0.0;
    for (int64_t g = 0; g < quant_bins; ++g) {
      const int64_t a = (g * i + quant_bins - 1) / quant_bins, b = ((g + 1) * i + quant_bins - 1) / quant_bins;
      if (b <= a) continue;
      const double G = S[static_cast<size_t>(b)] - S[static_cast<size_t>(a)];
      const double n = Z[static_cast<size_t>(b)] - Z[static_cast<size_t>(a)];
      if (G <= 0.0) continue;
      const double lq = std::log(G / n);
      plogq += G * lq;
      if (b == i) qlast = lq;
    }
    plogq += clipped > 0.0 ? clipped * qlast : 0.0;
    const double v = (plogp - total * std::log(total) + total * std::log(Si) - plogq) / total;
    return v < 0.0 ? 0.0 : v;  // KL >= 0; rounding can leave a tiny negative
  };
  EntropySearch best;
  best.kl = std::numeric_limits<double>::infinity();
  bool found = false;
  const int64_t start = std::min(o.start_bin, B);
  for (int64_t i = start; i <= B; i += o.stride) {
    ++best.candidates;
    const double clipped = tail[static_cast<size_t>(i)];
    const double totP = total, totQ = total - clipped;
    double kl = 0.0;
    if (o.smoothing > 0.0) {
      std::fill(gsum.begin(), gsum.end(), 0.0);
      std::fill(gnz.begin(), gnz.end(), 0.0);
      group.resize(static_cast<size_t>(i));
      for (int64_t j = 0; j < i; ++j) {
        const int64_t g = j * quant_bins / i;
        group[static_cast<size_t>(j)] = static_cast<int32_t>(g);
        const double v = hist[static_cast<size_t>(j)];
        if (v != 0.0) {
          gsum[static_cast<size_t>(g)] += v;
          gnz[static_cast<size_t>(g)] += 1.0;
        }
      }
      // Normalised p and q with eps moved into the empty bins.
      int64_t pz = 0, qz = 0;
      for (int64_t j = 0; j < i; ++j) {
        const double pj = hist[static_cast<size_t>(j)] + (j == i - 1 ? clipped : 0.0);
        pz += pj == 0.0;
        qz += hist[static_cast<size_t>(j)] == 0.0;
      }
      const double eps = o.smoothing;
      const double pdec = (i - pz) > 0 ? eps * static_cast<double>(pz) / static_cast<double>(i - pz) : 0.0;
      const double qdec = (i - qz) > 0 ? eps * static_cast<double>(qz) / static_cast<double>(i - qz) : 0.0;
      for (int64_t j = 0; j < i; ++j) {
        const double hj = hist[static_cast<size_t>(j)];
        const double pj = hj + (j == i - 1 ? clipped : 0.0);
        const int32_t g = group[static_cast<size_t>(j)];
        const double qj = hj != 0.0 ? gsum[static_cast<size_t>(g)] / gnz[static_cast<size_t>(g)] : 0.0;
        const double p = pj == 0.0 ? eps : pj / totP - pdec;
        const double q = qj == 0.0 ? eps : (totQ > 0 ? qj / totQ : 0.0) - qdec;
        if (p > 0.0) kl += q > 0.0 ? p * std::log(p / q) : std::numeric_limits<double>::infinity();
      }
    } else {
      kl = kl_closed_form(i);
    }
    // last argmin: ties go to the larger threshold
    if (!found || kl <= best.kl) {
      if (std::isfinite(kl) || !found) {
        best.kl = kl;
        best.edge_index = i;
        found = true;
      }
    }
  }
  best.amax = static_cast<double>(best.edge_index) * width;
  return best;
}

// Entropy search on a histogram of |x| (a Signed histogram of two-sided data is folded first).
inline EntropySearch entropy_threshold(const Histogram& h, int64_t quant_bins, const EntropyOptions& o = {}) {
  if (h.empty()) fail<InvalidArgument>("entropy calibration: empty histogram");
  const Histogram a = (h.mode() == HistMode::Signed && h.min() < 0.0f) ? h.folded() : h;
  EntropySearch r = entropy_search(abs_counts_from_zero(a), a.width(), quant_bins, o);
  r.amax = std::min(r.amax, static_cast<double>(a.max()));
  return r;
}

class EntropyObserver : public HistogramObserver {
 public:
  explicit EntropyObserver(const QuantScheme& s, int64_t bins = 2048, EntropyOptions opt = {})
      : HistogramObserver(s, bins), opt_(opt) {}
  // Levels above zero: 2^(bits-1), or 2^bits for unsigned ranges [0, amax] on non-negative data.
  int64_t quant_bins() const {
    return (!scheme_.symmetric && non_negative()) ? (int64_t{1} << scheme_.bits) : (int64_t{1} << (scheme_.bits - 1));
  }
  EntropySearch search() const {
    require_data();
    if (!scheme_.symmetric && !non_negative())
      fail<InvalidArgument>("entropy calibration needs a symmetric scheme or non-negative data (an asymmetric "
                            "range of two-sided data has no single threshold)");
    return entropy_threshold(hist_, quant_bins(), opt_);
  }
  CalibResult result() const override {
    const EntropySearch e = search();
    const auto [lo, hi] = range_for_amax(e.amax);
    return make_result(lo, hi);
  }
  std::string name() const override { return "entropy"; }
  std::unique_ptr<Observer> clone() const override { return std::make_unique<EntropyObserver>(*this); }

 private:
  EntropyOptions opt_;
};

}  // namespace qk::calib
