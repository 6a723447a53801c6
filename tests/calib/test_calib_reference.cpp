// Calibration observers against the reference figures of PyTorch 1.13's observers and NVIDIA pytorch-quantization
// 2.2.1's HistogramCalibrator (tests/data/calib/reference.json, copied from shared/data/calib).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "calib_test_util.hpp"
#include "qk/calib/calib.hpp"

namespace {

using namespace qk::calib;
using qk::QuantScheme;
using qk::test::calib::dataset;
using qk::test::calib::fq_mse_nvidia;
using qk::test::calib::fq_mse_torch;
using qk::test::calib::Json;
using qk::test::calib::reference;

QuantScheme torch_qint8_sym() { return QuantScheme::per_tensor(8, /*symmetric=*/true, /*is_signed=*/true); }
QuantScheme torch_quint8_affine() { return QuantScheme::per_tensor(8, /*symmetric=*/false, /*is_signed=*/false); }
// NVIDIA's amax convention: signed narrow range [-127, 127] with scale amax/127, or unsigned [0, 255] on [0, amax].
QuantScheme nvidia_scheme(bool is_unsigned) {
  if (is_unsigned) return QuantScheme::per_tensor(8, /*symmetric=*/false, /*is_signed=*/false);
  QuantScheme s = QuantScheme::per_tensor(8, true, true);
  s.narrow_range = true;
  return s;
}

const Json& ds(const std::string& id) { return reference()["datasets"][id]; }

// torch.tensor_split(x, parts) along the flat array: the first n % parts pieces are one longer.
std::vector<std::pair<int64_t, int64_t>> split(int64_t n, int64_t parts) {
  std::vector<std::pair<int64_t, int64_t>> r;
  int64_t at = 0;
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t len = n / parts + (p < n % parts ? 1 : 0);
    r.emplace_back(at, len);
    at += len;
  }
  return r;
}

// The batches of the moving-average references: flat chunks for 1-D sets, column chunks for D5 ([64, 16384]).
template <typename Obs>
void feed_batches(Obs& o, const std::string& id, int64_t parts) {
  const auto& d = dataset(id);
  if constexpr (std::is_base_of_v<Observer, Obs>) {
    if (d.shape.size() == 1) {
      for (auto [at, len] : split(d.shape[0], parts)) o.observe(d.x.data() + at, len);
      return;
    }
  }
  const int64_t R = d.shape[0], C = d.shape[1];
  Eigen::Map<const qk::test::RowMat> X(d.x.data(), R, C);
  for (auto [at, len] : split(C, parts)) o.observe(X.middleCols(at, len));
}

const char* kSets[] = {"D1", "D2", "D3", "D5"};

// ------------------------------------------------------------------ PyTorch min-max and moving average
struct TorchCase {
  std::string set, observer, scheme;
};

void PrintTo(const TorchCase& c, std::ostream* os) { *os << c.set << " " << c.observer << " " << c.scheme; }

class TorchObserverMatch : public ::testing::TestWithParam<TorchCase> {};

TEST_P(TorchObserverMatch, MinMaxScaleZeroPointAndMse) {
  const auto& c = GetParam();
  const Json& ref = ds(c.set)[c.observer][c.scheme];
  const QuantScheme s = c.scheme == "qint8_per_tensor_symmetric" ? torch_qint8_sym() : torch_quint8_affine();
  CalibResult r;
  if (c.observer == "minmax") {
    MinMaxObserver o(s);
    const auto& d = dataset(c.set);
    o.observe(d.x.data(), static_cast<int64_t>(d.x.size()));
    r = o.result();
  } else {
    MovingAverageMinMaxObserver o(s, static_cast<float>(ds(c.set)["moving_average_minmax"]["averaging_constant"].d()));
    feed_batches(o, c.set, static_cast<int64_t>(ds(c.set)["moving_average_minmax"]["batches"].d()));
    r = o.result();
  }
  // min/max are float32 in PyTorch: exact equality.
  EXPECT_EQ(r.lo, static_cast<float>(ref["min_val"].d()));
  EXPECT_EQ(r.hi, static_cast<float>(ref["max_val"].d()));
  // Scale to float precision (PyTorch computes it in float32; qk in double, rounded once).
  EXPECT_NEAR(r.scale, ref["scale"].d(), 2e-7 * ref["scale"].d()) << "scale";
  EXPECT_EQ(r.zero_point, static_cast<int>(ref["zero_point"].d()));
  EXPECT_EQ(s.qmin(), static_cast<int>(ref["quant_min"].d()));
  EXPECT_EQ(s.qmax(), static_cast<int>(ref["quant_max"].d()));
  const auto& d = dataset(c.set);
  const double mse = fq_mse_torch(d.x.data(), static_cast<int64_t>(d.x.size()), r.scale, r.zero_point, s.qmin(), s.qmax());
  EXPECT_NEAR(mse, ref["fq_mse"].d(), 1e-5 * ref["fq_mse"].d());
  // The histogram's prediction (clipping of the moving average included) is close to the measured MSE.
  EXPECT_NEAR(r.predicted_mse, mse, 0.03 * mse);
  std::printf("[ %s %s %s ] predicted mse %.6g measured %.6g (ratio %.4f)\n", c.set.c_str(), c.observer.c_str(),
              c.scheme.c_str(), r.predicted_mse, mse, r.predicted_mse / mse);
}

std::vector<TorchCase> torch_cases() {
  std::vector<TorchCase> v;
  for (const char* set : kSets)
    for (const char* obs : {"minmax", "moving_average_minmax"})
      for (const char* sch : {"qint8_per_tensor_symmetric", "quint8_per_tensor_affine"}) v.push_back({set, obs, sch});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Reference, TorchObserverMatch, ::testing::ValuesIn(torch_cases()),
                         [](const auto& info) {
                           return info.param.set + "_" + info.param.observer + "_" +
                                  (info.param.scheme[1] == 'i' ? "qint8" : "quint8");
                         });

TEST(CalibReference, PerChannelMinMaxAndMovingAverageMatchPyTorch) {
  const auto& d = dataset("D5");
  const Json& pc = ds("D5")["per_channel"];
  for (const char* obs : {"per_channel_minmax", "moving_average_per_channel_minmax"}) {
    for (const char* sch : {"qint8_per_channel_symmetric", "quint8_per_channel_affine"}) {
      SCOPED_TRACE(std::string(obs) + " " + sch);
      const QuantScheme s = sch[1] == 'i' ? torch_qint8_sym() : torch_quint8_affine();
      const bool ma = obs[0] == 'm';
      std::unique_ptr<Observer> proto;
      if (ma) proto = std::make_unique<MovingAverageMinMaxObserver>(s, 0.01f);
      else proto = std::make_unique<MinMaxObserver>(s);
      PerChannelObserver o(*proto, /*axis=*/0);
      if (ma) feed_batches(o, "D5", 100);
      else o.observe(d.x.data(), d.shape);
      const auto r = o.results();
      const Json& ref = pc[obs][sch];
      ASSERT_EQ(r.size(), 64u);
      const auto scale = ref["scale"].vec(), zp = ref["zero_point"].vec(), mn = ref["min_val"].vec(),
                 mx = ref["max_val"].vec();
      for (size_t c = 0; c < r.size(); ++c) {
        EXPECT_EQ(r[c].lo, static_cast<float>(mn[c])) << "channel " << c;
        EXPECT_EQ(r[c].hi, static_cast<float>(mx[c])) << "channel " << c;
        EXPECT_NEAR(r[c].scale, scale[c], 2e-7 * scale[c]) << "channel " << c;
        EXPECT_EQ(r[c].zero_point, static_cast<int>(zp[c])) << "channel " << c;
      }
      const auto P = o.params();
      EXPECT_EQ(P.rows(), 64);
    }
  }
}

// ------------------------------------------------------------------ NVIDIA histogram calibrators
struct NvCase {
  std::string set;
  bool streaming;  // 100 collect() calls instead of one
  bool signed_variant = false;
};

std::string nv_key(const NvCase& c) {
  if (c.signed_variant) return "nvidia_histogram_calibrator_signed_variant";
  return c.streaming ? "nvidia_histogram_calibrator_100batches" : "nvidia_histogram_calibrator";
}

bool nv_unsigned(const NvCase& c) { return !c.signed_variant && ds(c.set)["unsigned_for_nvidia"].b; }

template <typename Obs>
void feed(Obs& o, const NvCase& c) {
  if (c.streaming) {
    // NVIDIA's 100-batch feed, as for the moving averages: flat chunks, column chunks of D5 (all channels).
    feed_batches(o, c.set, 100);
  } else {
    const auto& d = dataset(c.set);
    o.observe(d.x.data(), static_cast<int64_t>(d.x.size()));
  }
}

void PrintTo(const NvCase& c, std::ostream* os) { *os << c.set << " " << nv_key(c); }

class NvidiaMatch : public ::testing::TestWithParam<NvCase> {};

TEST_P(NvidiaMatch, HistogramBinsLikeHistc) {
  const auto& c = GetParam();
  const Json& ref = ds(c.set)[nv_key(c)]["histogram"];
  PercentileObserver o(nvidia_scheme(false), 99.99, 2048);
  feed(o, c);
  const auto& h = o.histogram();
  EXPECT_EQ(h.total(), static_cast<uint64_t>(ref["total_count"].d()));
  if (c.streaming) {
    // Both start from the first batch's width; NVIDIA then appends bins (here to ref num_bins), qk doubles the
    // width and keeps 2048 bins: the widths differ by a power of two.
    EXPECT_EQ(h.counts().size(), 2048u);
    const double ratio = h.width() / ref["bin_width"].d();
    EXPECT_NEAR(ratio, std::exp2(std::round(std::log2(ratio))), 1e-6 * ratio);
    EXPECT_GT(ref["num_bins"].d(), 2048.0);
    return;
  }
  EXPECT_EQ(h.counts()[0], static_cast<uint64_t>(ref["bin0_count"].d()));
  EXPECT_EQ(h.counts()[1], static_cast<uint64_t>(ref["bin1_count"].d()));
  EXPECT_NEAR(h.width(), ref["bin_width"].d(), 1e-6 * ref["bin_width"].d());
}

TEST_P(NvidiaMatch, PercentileWithinOneBin) {
  const auto& c = GetParam();
  const Json& nv = ds(c.set)[nv_key(c)];
  const double ref_width = nv["histogram"]["bin_width"].d();
  for (const char* p : {"99.9", "99.99"}) {
    SCOPED_TRACE(p);
    PercentileObserver o(nvidia_scheme(nv_unsigned(c)), std::stod(p), 2048);
    feed(o, c);
    const CalibResult r = o.result();
    const double ref_amax = nv[std::string("percentile_") + p]["amax"].d();
    // Both thresholds lie in the bin holding the p-quantile; with coarser bins after re-binning, the bound is
    // the wider of the two bins.
    const double bound = std::max(ref_width, o.error_bound());
    EXPECT_NEAR(r.amax(), ref_amax, bound);
    // The defining property: the exact p-quantile of |x| is within one of our bins.
    std::vector<float> a(dataset(c.set).x);
    for (float& v : a) v = std::fabs(v);
    const size_t k = static_cast<size_t>(std::ceil(std::stod(p) / 100.0 * static_cast<double>(a.size()))) - 1;
    std::nth_element(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(k), a.end());
    EXPECT_NEAR(r.amax(), a[k], o.error_bound());
    RecordProperty(std::string("amax_p") + p, std::to_string(r.amax()) + " ref " + std::to_string(ref_amax));
  }
}

TEST_P(NvidiaMatch, EntropyMseWithin2PercentOfReference) {
  const auto& c = GetParam();
  const Json& nv = ds(c.set)[nv_key(c)];
  const bool uns = nv_unsigned(c);
  EntropyObserver o(nvidia_scheme(uns), 2048);
  feed(o, c);
  const EntropySearch e = o.search();
  const CalibResult r = o.result();
  const auto& d = dataset(c.set);
  const double mse = fq_mse_nvidia(d.x.data(), static_cast<int64_t>(d.x.size()), r.amax(), uns);
  const double ref = nv["entropy"]["fq_mse"].d();
  EXPECT_EQ(o.quant_bins(), static_cast<int64_t>(nv["entropy"]["quant_bins"].d()));
  EXPECT_LE(mse, 1.02 * ref) << "amax " << r.amax() << " (edge " << e.edge_index << ") vs reference "
                             << nv["entropy"]["amax"].d() << " (edge " << nv["entropy"]["edge_index"].d() << ")";
  if (!c.streaming) {
    // Same histogram, same algorithm: the same threshold up to KL near-ties.
    EXPECT_NEAR(static_cast<double>(e.edge_index), nv["entropy"]["edge_index"].d(), 2.0);
  }
  // The prediction from the histogram is the MSE actually obtained with the chosen parameters (narrow-range
  // scale amax/127 vs NVIDIA's 127/amax differ in the last bit only).
  EXPECT_NEAR(r.predicted_mse, mse, 0.02 * mse);
  std::printf("[ %s %s ] entropy amax %.6f mse %.6g  ref amax %.6f mse %.6g  ratio %.4f\n", c.set.c_str(),
              nv_key(c).c_str(), r.amax(), mse, nv["entropy"]["amax"].d(), ref, mse / ref);
}

TEST_P(NvidiaMatch, MseSearchWithin2PercentOfReference) {
  const auto& c = GetParam();
  const Json& nv = ds(c.set)[nv_key(c)];
  const bool uns = nv_unsigned(c);
  MseObserver o(nvidia_scheme(uns), 2048);
  feed(o, c);
  const CalibResult r = o.result();
  const auto& d = dataset(c.set);
  const double mse = fq_mse_nvidia(d.x.data(), static_cast<int64_t>(d.x.size()), r.amax(), uns);
  const double ref = nv["mse"]["fq_mse"].d();
  EXPECT_LE(mse, 1.02 * ref) << "amax " << r.amax() << " vs reference " << nv["mse"]["amax"].d();
  // and close to the exact optimum (the reference's oracle search on the raw data)
  const Json& oracle = ds(c.set)[c.signed_variant ? "oracle_mse_search_signed" : "oracle_mse_search"];
  EXPECT_LE(mse, 1.005 * oracle["fq_mse"].d());
  EXPECT_NEAR(r.predicted_mse, mse, 0.02 * mse);
  std::printf("[ %s %s ] mse amax %.6f mse %.6g  ref amax %.6f mse %.6g  ratio %.4f  oracle %.6g\n", c.set.c_str(),
              nv_key(c).c_str(), r.amax(), mse, nv["mse"]["amax"].d(), ref, mse / ref, oracle["fq_mse"].d());
}

std::vector<NvCase> nv_cases() {
  std::vector<NvCase> v;
  for (const char* set : kSets) {
    v.push_back({set, false});
    if (std::string(set) != "D3") v.push_back({set, true});
  }
  v.push_back({"D3", false, true});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Reference, NvidiaMatch, ::testing::ValuesIn(nv_cases()), [](const auto& info) {
  return info.param.set + (info.param.streaming ? "_100batches" : "_1batch") +
         (info.param.signed_variant ? "_signed" : "");
});

// ------------------------------------------------------------------ NVIDIA per-channel (D5, axis 0)
TEST(CalibReference, PerChannelPercentileAndMse) {
  const auto& d = dataset("D5");
  const Json& nv = ds("D5")["per_channel"]["nvidia_per_channel"]["methods"];
  const QuantScheme s = nvidia_scheme(false);
  const int64_t C = d.shape[0], N = d.shape[1];
  {
    PerChannelObserver o(PercentileObserver(s, 99.99, 2048), 0);
    o.observe(d.x.data(), d.shape);
    const auto r = o.results();
    const auto ref = nv["percentile_99.99"]["amax"].vec(), mx = nv["max"]["amax"].vec();
    for (int64_t c = 0; c < C; ++c)
      EXPECT_NEAR(r[static_cast<size_t>(c)].amax(), ref[static_cast<size_t>(c)], mx[static_cast<size_t>(c)] / 2048.0)
          << "channel " << c;
  }
  {
    PerChannelObserver o(MseObserver(s, 2048), 0);
    o.observe(d.x.data(), d.shape);
    const auto r = o.results();
    double total = 0.0;
    for (int64_t c = 0; c < C; ++c)
      total += fq_mse_nvidia(d.x.data() + c * N, N, r[static_cast<size_t>(c)].amax(), false);
    total /= static_cast<double>(C);
    EXPECT_LE(total, 1.02 * nv["mse"]["fq_mse_overall"].d());
    std::printf("[ D5 per-channel ] mse overall %.6g  ref %.6g  ratio %.4f\n", total, nv["mse"]["fq_mse_overall"].d(),
                total / nv["mse"]["fq_mse_overall"].d());
  }
}

}  // namespace
