// AWQ: reference figures of the problems and defining properties.
#include <gtest/gtest.h>

#include "methods_util.hpp"
#include "qk/core/quantize.hpp"
#include "qk/methods/awq.hpp"
#include "qk/methods/rtn.hpp"

namespace qk {
namespace {

using test::RowMat;

QuantScheme asym4(int64_t group) { return QuantScheme::per_group(4, group, false, false); }

struct AwqCase {
  const char* method;
  bool clip;
};

class AwqReference : public ::testing::TestWithParam<std::tuple<int, AwqCase>> {};

TEST_P(AwqReference, WithinTwoPercentOfReference) {
  const auto& [which, c] = GetParam();
  const test::Problem& p = which == 0 ? test::p3_small() : test::p4a();
  AwqOptions o;
  o.search_clip = c.clip;
  AwqResult r;
  const QuantizedTensor q = awq_quantize(p.W, p.X, asym4(p.group), o, &r);
  const double ec = test::rel_output_error(p.X, p.W, r.dequantized);
  const double eh = test::rel_output_error(p.Xheld, p.W, r.dequantized);
  const double rc = test::reference_figure(p.name, c.method, "E_calib");
  const double rh = test::reference_figure(p.name, c.method, "E_held");
  std::printf("%s %s: ratio %.2f E_calib %.6g (ref %.6g, x%.4f)  E_held %.6g (ref %.6g, x%.4f)\n", p.name.c_str(),
              c.method, r.ratio, ec, rc, ec / rc, eh, rh, eh / rh);
  EXPECT_LE(ec, 1.02 * rc);
  EXPECT_LE(eh, 1.02 * rh);
  const double e_rtn = test::rel_output_error(p.X, p.W, fake_quant(p.W, asym4(p.group)));
  EXPECT_LT(ec, e_rtn);
  // The encoding holds Q(clip(W·diag(s))); dividing by s gives Ŵ back.
  EXPECT_TRUE(q.dequantize().isApprox(r.scaled_quantized, 1e-6f));
  EXPECT_TRUE((r.scaled_quantized * r.scales.cwiseInverse().asDiagonal()).isApprox(r.dequantized, 1e-6f));
  EXPECT_EQ(r.ratio_losses.size(), 20u);
}

const AwqCase kCases[] = {{"awq_w4", true}, {"awq_w4_scaleonly", false}};

INSTANTIATE_TEST_SUITE_P(Problems, AwqReference, ::testing::Combine(::testing::Values(0, 1), ::testing::ValuesIn(kCases)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == 0 ? "P3_small_" : "P4a_") +
                                  std::get<1>(info.param).method;
                         });

// α = 0 gives s = 1: the first loss is RTN's; with neither search AWQ is RTN.
TEST(Awq, NoSearchIsRtnAndFirstRatioIsRtn) {
  const RowMat X = test::gaussian(200, 64, 3);
  const RowMat W = test::gaussian(24, 64, 4, 0.1f);
  const QuantScheme s = asym4(16);
  AwqOptions none;
  none.search_scale = none.search_clip = false;
  AwqResult r;
  awq_quantize(W, X, s, none, &r);
  EXPECT_TRUE(r.dequantized.isApprox(fake_quant(W, s), 1e-6f));
  AwqOptions full;
  full.threads = 2;
  awq_quantize(W, X, s, full, &r);
  const double rtn_mse = (X * (W - fake_quant(W, s)).transpose()).cast<double>().squaredNorm() / (200.0 * 24.0);
  EXPECT_NEAR(r.ratio_losses[0] / rtn_mse, 1.0, 1e-3);
  // The chosen ratio is the argmin of the recorded losses.
  const auto it = std::min_element(r.ratio_losses.begin(), r.ratio_losses.end());
  EXPECT_DOUBLE_EQ(r.ratio, static_cast<double>(it - r.ratio_losses.begin()) / 20.0);
}

// Activation outlier channels: AWQ protects them (their scale is the largest).
TEST(Awq, ScalesFollowActivationMagnitude) {
  RowMat X = test::gaussian(256, 64, 7);
  X.col(5) *= 30.0f;
  const RowMat W = test::gaussian(32, 64, 8, 0.05f);
  AwqOptions o;
  o.search_clip = false;
  AwqResult r;
  awq_quantize(W, X, asym4(32), o, &r);
  Eigen::Index arg;
  r.scales.maxCoeff(&arg);
  EXPECT_GT(r.ratio, 0.0);
  EXPECT_EQ(arg, 5);
}

TEST(Awq, BadInput) {
  const RowMat X = test::gaussian(16, 32, 1);
  const RowMat W = test::gaussian(8, 32, 2);
  EXPECT_THROW(awq_quantize(W, test::gaussian(16, 31, 1), asym4(16)), ShapeError);
  RowMat Xn = X;
  Xn(3, 4) = NAN;
  EXPECT_THROW(awq_quantize(W, Xn, asym4(16)), NumericError);
  EXPECT_THROW(awq_quantize(W, X, asym4(12)), InvalidArgument);
}

}  // namespace
}  // namespace qk
