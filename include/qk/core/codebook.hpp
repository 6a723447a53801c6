#pragma once
// Non-uniform (codebook) quantization: a sorted table of levels, each value coded as the index of the nearest.
//
//  - Codebook / CodebookTensor: any table of up to 256 levels; codes packed with pack.hpp (ceil(log2 k) bits,
//    LSB-first), dequantization by table look-up.
//  - lloyd_max(): the MSE-optimal scalar quantizer for a distribution given by samples or by a histogram
//    (S. P. Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28(2), 1982; J. Max,
//    "Quantizing for minimum distortion", IRE Trans. Inf. Theory 6(1), 1960). Alternates the two optimality
//    conditions: decision thresholds at midpoints between levels (nearest-neighbour cells), levels at the
//    centroids (conditional means) of their cells. Each step cannot increase the MSE; it stops when the relative
//    decrease falls below a tolerance.
//  - NF4 (QLoRA: T. Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs", 2023; bitsandbytes):
//    the published 16-value NormalFloat table, block-wise absmax scaling (block 64), and double quantization
//    of the absmax constants: their mean is subtracted and the rest quantized with an 8-bit code in blocks of
//    256, each block with an fp32 scale. Storage per parameter: 4 + 8/64 + 32/(64·256) ≈ 4.127 bits
//    (4.5 bits without double quantization).
//    The 8-bit code for the constants is bitsandbytes' signed dynamic map (Dettmers, "8-Bit Approximations for
//    Parallelism in Deep Learning", 2015): for exponent e = 0..6, 2^e values (the midpoints of linspace(0.1, 1,
//    2^e + 1)) scaled by 10^(e-6), both signs, plus 0 and 1.
//    Nibble order: qk packs element 2j in the low nibble of byte j (pack.hpp); bitsandbytes puts it in the high
//    nibble. Codes and tables are the same; only the byte layout differs.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "qk/core/error.hpp"
#include "qk/core/pack.hpp"

namespace qk {

// ------------------------------------------------------------------------------------------------ Codebook
class Codebook {
 public:
  Codebook() = default;
  // Levels are sorted; 1..256 of them, finite.
  explicit Codebook(std::vector<float> levels) : levels_(std::move(levels)) {
    if (levels_.empty() || levels_.size() > 256)
      fail<InvalidArgument>("codebook: needs 1..256 levels, got {}", levels_.size());
    for (float v : levels_)
      if (!std::isfinite(v)) fail<InvalidArgument>("codebook: level {} is not finite", v);
    std::sort(levels_.begin(), levels_.end());
    mid_.resize(levels_.size() - 1);
    for (size_t i = 0; i + 1 < levels_.size(); ++i) mid_[i] = 0.5f * (levels_[i] + levels_[i + 1]);
  }
  size_t size() const { return levels_.size(); }
  const std::vector<float>& levels() const { return levels_; }
  // Bits per code: ceil(log2(size)), at least 1.
  int bits() const {
    int b = 1;
    while ((size_t{1} << b) < levels_.size()) ++b;
    return b;
  }
  // Index of the nearest level (ties between two levels go to the upper one). NaN codes to 0.
  uint8_t encode(float x) const {
    return static_cast<uint8_t>(std::upper_bound(mid_.begin(), mid_.end(), x) - mid_.begin());
  }
  float decode(uint8_t code) const { return levels_[std::min<size_t>(code, levels_.size() - 1)]; }

 private:
  std::vector<float> levels_;
  std::vector<float> mid_;  // decision thresholds
};

// A 1-d tensor coded against a codebook, codes packed with pack_bits.
struct CodebookTensor {
  Codebook codebook;
  int64_t numel = 0;
  std::vector<uint8_t> packed;
  size_t nbytes() const { return packed.size() + codebook.size() * sizeof(float); }
  std::vector<float> dequantize() const {
    std::vector<uint8_t> codes(static_cast<size_t>(numel));
    unpack_bits(packed, codebook.bits(), codes);
    std::vector<float> out(codes.size());
    for (size_t i = 0; i < codes.size(); ++i) out[i] = codebook.decode(codes[i]);
    return out;
  }
};

inline CodebookTensor codebook_quantize(std::span<const float> x, const Codebook& cb) {
  if (cb.size() == 0) fail<InvalidArgument>("codebook_quantize: empty codebook");
  CodebookTensor t;
  t.codebook = cb;
  t.numel = static_cast<int64_t>(x.size());
  std::vector<uint8_t> codes(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) fail<NumericError>("codebook_quantize: non-finite value {} at index {}", x[i], i);
    codes[i] = cb.encode(x[i]);
  }
  t.packed.assign(packed_size(x.size(), cb.bits()), 0);
  pack_bits(codes, cb.bits(), t.packed);
  return t;
}

// ------------------------------------------------------------------------------------------------ Lloyd-Max
struct LloydMaxOptions {
  int max_iterations = 200;
  double rel_tolerance = 1e-7;  // stop when (mse_prev - mse) <= rel_tolerance · mse_prev
};

struct LloydMaxResult {
  Codebook codebook;
  double mse = 0.0;                 // of the final codebook on the data / histogram
  int iterations = 0;
  std::vector<double> mse_history;  // after each iteration (non-increasing)
};

namespace detail {

// Moments (count, Σx, Σx²) of the mass in [a, b) of a distribution, for Lloyd-Max.
struct MomentSource {
  virtual ~MomentSource() = default;
  virtual void moments(double a, double b, double& m0, double& m1, double& m2) const = 0;
  virtual double quantile(double q) const = 0;
  virtual double lo() const = 0;
  virtual double hi() const = 0;
};

// Sorted samples with prefix sums.
class SampleMoments final : public MomentSource {
 public:
  explicit SampleMoments(std::span<const float> x) : v_(x.begin(), x.end()) {
    for (float f : v_)
      if (!std::isfinite(f)) fail<NumericError>("lloyd_max: non-finite sample {}", f);
    std::sort(v_.begin(), v_.end());
    s1_.assign(v_.size() + 1, 0.0);
    s2_.assign(v_.size() + 1, 0.0);
    for (size_t i = 0; i < v_.size(); ++i) {
      s1_[i + 1] = s1_[i] + v_[i];
      s2_[i + 1] = s2_[i] + static_cast<double>(v_[i]) * v_[i];
    }
  }
  void moments(double a, double b, double& m0, double& m1, double& m2) const override {
    const size_t i = idx(a), j = idx(b);
    m0 = static_cast<double>(j - i);
    m1 = s1_[j] - s1_[i];
    m2 = s2_[j] - s2_[i];
  }
  double quantile(double q) const override {
    const size_t i = std::min(v_.size() - 1, static_cast<size_t>(q * static_cast<double>(v_.size())));
    return v_[i];
  }
  double lo() const override { return v_.front(); }
  double hi() const override { return v_.back(); }

 private:
  size_t idx(double t) const {
    if (t == -std::numeric_limits<double>::infinity()) return 0;
    if (t == std::numeric_limits<double>::infinity()) return v_.size();
    return static_cast<size_t>(std::lower_bound(v_.begin(), v_.end(), t) - v_.begin());
  }
  std::vector<float> v_;
  std::vector<double> s1_, s2_;
};

// Equal-width bins [first_edge + i·w, first_edge + (i+1)·w), mass spread uniformly inside each.
class HistogramMoments final : public MomentSource {
 public:
  HistogramMoments(std::span<const double> counts, double first_edge, double width)
      : c_(counts.begin(), counts.end()), e0_(first_edge), w_(width) {
    if (c_.empty() || !(width > 0)) fail<InvalidArgument>("lloyd_max: empty histogram or non-positive bin width");
    p0_.assign(c_.size() + 1, 0.0);
    p1_ = p2_ = p0_;
    for (size_t i = 0; i < c_.size(); ++i) {
      if (c_[i] < 0) fail<InvalidArgument>("lloyd_max: negative histogram count");
      double a = e0_ + static_cast<double>(i) * w_, m0, m1, m2;
      part(i, a, a + w_, m0, m1, m2);
      p0_[i + 1] = p0_[i] + m0;
      p1_[i + 1] = p1_[i] + m1;
      p2_[i + 1] = p2_[i] + m2;
    }
    if (!(p0_.back() > 0)) fail<InvalidArgument>("lloyd_max: histogram holds no counts");
  }
  void moments(double a, double b, double& m0, double& m1, double& m2) const override {
    a = std::clamp(a, lo(), hi());
    b = std::clamp(b, lo(), hi());
    m0 = m1 = m2 = 0.0;
    if (!(b > a)) return;
    const size_t ia = bin(a), ib = bin(b);
    double x0, x1, x2;
    if (ia == ib) {
      part(ia, a, b, m0, m1, m2);
      return;
    }
    part(ia, a, e0_ + static_cast<double>(ia + 1) * w_, m0, m1, m2);
    m0 += p0_[ib] - p0_[ia + 1];
    m1 += p1_[ib] - p1_[ia + 1];
    m2 += p2_[ib] - p2_[ia + 1];
    if (ib < c_.size()) {
      part(ib, e0_ + static_cast<double>(ib) * w_, b, x0, x1, x2);
      m0 += x0; m1 += x1; m2 += x2;
    }
  }
  double quantile(double q) const override {
    const double target = q * p0_.back();
    const size_t i = std::min(c_.size() - 1, static_cast<size_t>(std::upper_bound(p0_.begin(), p0_.end(), target) - p0_.begin()) - 1);
    const double frac = c_[i] > 0 ? std::clamp((target - p0_[i]) / c_[i], 0.0, 1.0) : 0.0;
    return e0_ + (static_cast<double>(i) + frac) * w_;
  }
  double lo() const override { return e0_; }
  double hi() const override { return e0_ + static_cast<double>(c_.size()) * w_; }

 private:
  size_t bin(double x) const {
    return std::min(c_.size() - 1, static_cast<size_t>(std::max(0.0, std::floor((x - e0_) / w_))));
  }
  void part(size_t i, double a, double b, double& m0, double& m1, double& m2) const {
    const double d = c_[i] / w_;
    m0 = d * (b - a);
    m1 = d * (b * b - a * a) / 2.0;
    m2 = d * (b * b * b - a * a * a) / 3.0;
  }
  std::vector<double> c_;
  double e0_, w_;
  std::vector<double> p0_, p1_, p2_;
};

inline LloydMaxResult lloyd_max_run(const MomentSource& src, int k, const LloydMaxOptions& o) {
  if (k < 1 || k > 256) fail<InvalidArgument>("lloyd_max: level count must be in 1..256, got {}", k);
  const size_t K = static_cast<size_t>(k);
  std::vector<double> lev(K);
  // start from the quantiles of the cells' centres
  for (size_t j = 0; j < K; ++j) lev[j] = src.quantile((static_cast<double>(j) + 0.5) / static_cast<double>(K));
  for (size_t j = 1; j < K; ++j)
    if (lev[j] <= lev[j - 1]) lev[j] = std::nextafter(lev[j - 1], std::numeric_limits<double>::infinity());
  LloydMaxResult r;
  double total = 0.0;
  {
    double m0, m1, m2;
    src.moments(-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity(), m0, m1, m2);
    total = m0;
  }
  if (!(total > 0)) fail<InvalidArgument>("lloyd_max: no data");
  auto cells = [&](const std::vector<double>& L, std::vector<double>& new_levels) {
    double err = 0.0;
    new_levels = L;
    for (size_t j = 0; j < K; ++j) {
      const double a = j == 0 ? -std::numeric_limits<double>::infinity() : 0.5 * (L[j - 1] + L[j]);
      const double b = j + 1 == K ? std::numeric_limits<double>::infinity() : 0.5 * (L[j] + L[j + 1]);
      double m0, m1, m2;
      src.moments(a, b, m0, m1, m2);
      err += std::max(0.0, m2 - 2.0 * L[j] * m1 + L[j] * L[j] * m0);
      if (m0 > 0) new_levels[j] = m1 / m0;  // centroid; an empty cell keeps its level
    }
    return err / total;
  };
  std::vector<double> next;
  double prev = cells(lev, next);
  for (int it = 0; it < o.max_iterations; ++it) {
    std::vector<double> cand = next;
    std::sort(cand.begin(), cand.end());
    std::vector<double> nn;
    const double e = cells(cand, nn);
    r.iterations = it + 1;
    if (e > prev) break;  // cannot happen in exact arithmetic; guards rounding
    r.mse_history.push_back(e);
    lev = cand;
    next = nn;
    const bool done = prev - e <= o.rel_tolerance * prev;
    prev = e;
    if (done) break;
  }
  std::vector<float> lf(K);
  for (size_t j = 0; j < K; ++j) lf[j] = static_cast<float>(lev[j]);
  r.codebook = Codebook(lf);
  r.mse = prev;
  return r;
}

}  // namespace detail

// k levels fitted to samples.
inline LloydMaxResult lloyd_max(std::span<const float> samples, int k, const LloydMaxOptions& o = {}) {
  if (samples.empty()) fail<InvalidArgument>("lloyd_max: no samples");
  return detail::lloyd_max_run(detail::SampleMoments(samples), k, o);
}

// k levels fitted to a histogram of equal-width bins starting at first_edge (mass uniform inside each bin).
inline LloydMaxResult lloyd_max_histogram(std::span<const double> counts, double first_edge, double width, int k,
                                          const LloydMaxOptions& o = {}) {
  return detail::lloyd_max_run(detail::HistogramMoments(counts, first_edge, width), k, o);
}

// ------------------------------------------------------------------------------------------------ NF4
namespace nf4 {

// The NormalFloat4 table as published with QLoRA (Appendix E) and in bitsandbytes.
inline constexpr std::array<float, 16> kTable = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f,
    1.0f};

inline const Codebook& codebook() {
  static const Codebook cb(std::vector<float>(kTable.begin(), kTable.end()));
  return cb;
}

// bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(signed=True), 256 values in [-1, 1]).
inline const Codebook& dynamic_map() {
  static const Codebook cb = [] {
    std::vector<float> v;
    for (int e = 0; e < 7; ++e) {
      const int n = (1 << e) + 1;  // linspace(0.1, 1, 2^e + 1)
      std::vector<float> b(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) b[static_cast<size_t>(i)] = static_cast<float>(0.1 + 0.9 * i / (n - 1));
      const double scale = std::pow(10.0, e - 6);
      for (int i = 0; i + 1 < n; ++i) {
        const double m = 0.5 * (static_cast<double>(b[static_cast<size_t>(i)]) + b[static_cast<size_t>(i + 1)]);
        v.push_back(static_cast<float>(scale * m));
        v.push_back(static_cast<float>(-scale * m));
      }
    }
    v.push_back(0.0f);
    v.push_back(1.0f);
    return Codebook(v);
  }();
  return cb;
}

}  // namespace nf4

struct Nf4Options {
  int64_t block = 64;
  bool double_quant = true;
  int64_t dq_block = 256;
};

// A 1-d tensor in NF4: packed 4-bit codes and the per-block absmax, plain or double-quantized.
struct Nf4Tensor {
  int64_t numel = 0;
  int64_t block = 64;
  std::vector<uint8_t> packed;  // 4-bit codes, pack_bits order
  bool double_quant = false;
  std::vector<float> absmax;          // !double_quant: one fp32 per block
  std::vector<uint8_t> absmax_codes;  // double_quant: dynamic-map code of (absmax - offset) / dq_scale[block / dq_block]
  std::vector<float> dq_scale;        // double_quant: one fp32 per dq_block constants
  float offset = 0.0f;                // double_quant: mean of the absmax constants
  int64_t dq_block = 256;

  int64_t blocks() const { return (numel + block - 1) / block; }
  // Bytes of codes and constants.
  size_t storage_bytes() const {
    size_t b = packed.size();
    if (double_quant) b += absmax_codes.size() + dq_scale.size() * sizeof(float) + sizeof(float);
    else b += absmax.size() * sizeof(float);
    return b;
  }
  double bits_per_parameter() const {
    return numel ? 8.0 * static_cast<double>(storage_bytes()) / static_cast<double>(numel) : 0.0;
  }
  // The absmax constants as the dequantizer sees them.
  std::vector<float> block_absmax() const {
    if (!double_quant) return absmax;
    std::vector<float> a(absmax_codes.size());
    const Codebook& dm = nf4::dynamic_map();
    for (size_t i = 0; i < a.size(); ++i)
      a[i] = dm.decode(absmax_codes[i]) * dq_scale[i / static_cast<size_t>(dq_block)] + offset;
    return a;
  }
  std::vector<float> dequantize() const {
    const std::vector<float> am = block_absmax();
    std::vector<uint8_t> codes(static_cast<size_t>(numel));
    unpack_bits(packed, 4, codes);
    std::vector<float> out(codes.size());
    for (size_t i = 0; i < codes.size(); ++i)
      out[i] = nf4::kTable[codes[i] & 15] * am[i / static_cast<size_t>(block)];
    return out;
  }
};

inline Nf4Tensor nf4_quantize(std::span<const float> x, const Nf4Options& o = {}) {
  if (o.block <= 0) fail<InvalidArgument>("nf4: block size must be positive, got {}", o.block);
  if (o.double_quant && o.dq_block <= 0) fail<InvalidArgument>("nf4: double-quantization block must be positive, got {}", o.dq_block);
  Nf4Tensor t;
  t.numel = static_cast<int64_t>(x.size());
  t.block = o.block;
  t.double_quant = o.double_quant;
  t.dq_block = o.dq_block;
  const size_t n = x.size(), B = static_cast<size_t>(o.block), nb = static_cast<size_t>(t.blocks());
  std::vector<float> am(nb, 0.0f);
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) fail<NumericError>("nf4: non-finite value {} at index {}", x[i], i);
    am[i / B] = std::max(am[i / B], std::fabs(x[i]));
  }
  // Constants as the dequantizer will see them (after double quantization), so codes are chosen against them.
  if (o.double_quant) {
    double mean = 0.0;
    for (float a : am) mean += a;
    mean = nb ? mean / static_cast<double>(nb) : 0.0;
    t.offset = static_cast<float>(mean);
    const size_t G = static_cast<size_t>(o.dq_block), ng = (nb + G - 1) / G;
    t.dq_scale.assign(ng, 0.0f);
    t.absmax_codes.assign(nb, 0);
    const Codebook& dm = nf4::dynamic_map();
    for (size_t g = 0; g < ng; ++g) {
      float m = 0.0f;
      for (size_t i = g * G; i < std::min(nb, (g + 1) * G); ++i) m = std::max(m, std::fabs(am[i] - t.offset));
      t.dq_scale[g] = m > 0.0f ? m : 1.0f;
      for (size_t i = g * G; i < std::min(nb, (g + 1) * G); ++i)
        t.absmax_codes[i] = dm.encode((am[i] - t.offset) / t.dq_scale[g]);
    }
  } else {
    t.absmax = am;
  }
  const std::vector<float> used = t.block_absmax();
  std::vector<uint8_t> codes(n);
  const Codebook& cb = nf4::codebook();
  for (size_t i = 0; i < n; ++i) {
    const float a = used[i / B];
    codes[i] = a > 0.0f ? cb.encode(x[i] / a) : uint8_t{7};  // code 7 is 0.0
  }
  t.packed.assign(packed_size(n, 4), 0);
  pack_bits(codes, 4, t.packed);
  return t;
}

}  // namespace qk
