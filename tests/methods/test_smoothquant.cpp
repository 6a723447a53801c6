// SmoothQuant W8A8 (reference figures) and LLM.int8() (defining properties).
#include <gtest/gtest.h>

#include "methods_util.hpp"
#include "qk/methods/llm_int8.hpp"
#include "qk/methods/smoothquant.hpp"

namespace qk {
namespace {

using test::RowMat;

double w8a8_error(const RowMat& X, const RowMat& W, const W8A8Layer& L) {
  const Eigen::MatrixXf Y = X * W.transpose();
  const RowMatrixXf Yq = w8a8_forward(X, L);
  return (Y - Yq).cast<double>().squaredNorm() / Y.cast<double>().squaredNorm();
}

class SmoothQuantReference : public ::testing::TestWithParam<int> {};

TEST_P(SmoothQuantReference, WithinTwoPercentOfReference) {
  const test::Problem& p = GetParam() == 0 ? test::p3_small() : test::p4a();
  for (bool smooth : {true, false}) {
    SmoothQuantOptions o;
    o.alpha = 0.5;
    o.smooth = smooth;
    const W8A8Layer L = smoothquant(p.W, p.X, o);
    const char* key = smooth ? "sq_w8a8_a0.5" : "w8a8_nosmooth";
    const double ec = w8a8_error(p.X, p.W, L), eh = w8a8_error(p.Xheld, p.W, L);
    const double rc = test::reference_figure(p.name, key, "E_calib");
    const double rh = test::reference_figure(p.name, key, "E_held");
    std::printf("%s %s: E_calib %.6g (ref %.6g, x%.4f)  E_held %.6g (ref %.6g, x%.4f)\n", p.name.c_str(), key, ec, rc,
                ec / rc, eh, rh, eh / rh);
    EXPECT_LE(ec, 1.02 * rc) << key;
    EXPECT_LE(eh, 1.02 * rh) << key;
  }
  // Smoothing beats plain W8A8 (the RTN of this scheme) on the calibration set.
  SmoothQuantOptions plain;
  plain.smooth = false;
  EXPECT_LT(w8a8_error(p.X, p.W, smoothquant(p.W, p.X)), w8a8_error(p.X, p.W, smoothquant(p.W, p.X, plain)));
}

INSTANTIATE_TEST_SUITE_P(Problems, SmoothQuantReference, ::testing::Values(0, 1),
                         [](const auto& info) { return std::string(info.param == 0 ? "P3_small" : "P4a"); });

TEST(SmoothQuant, ScalesFormulaAndEquivalence) {
  const RowMat X = test::gaussian(64, 16, 1);
  const RowMat W = test::gaussian(8, 16, 2);
  const Eigen::VectorXf amax = channel_absmax(X);
  const Eigen::VectorXf s = smoothquant_scales(amax, W, 0.7);
  for (int j = 0; j < 16; ++j) {
    const double wm = W.col(j).cwiseAbs().maxCoeff();
    EXPECT_NEAR(s[j], std::pow(amax[j], 0.7) / std::pow(wm, 0.3), 1e-5 * s[j]);
  }
  // Smoothing alone is an identity of the layer: (X / s)(W s)ᵀ = X Wᵀ.
  const RowMatrixXf Y1 = (X * s.cwiseInverse().asDiagonal()) * (W * s.asDiagonal()).transpose();
  EXPECT_TRUE(Y1.isApprox(X * W.transpose(), 1e-5f));
  // Static activation scale: the calibration maximum after smoothing.
  SmoothQuantOptions o;
  o.act = ActQuant::PerTensorStatic;
  const W8A8Layer L = smoothquant(W, X, o);
  EXPECT_NEAR(L.act_scale, (X * L.smooth.cwiseInverse().asDiagonal()).cwiseAbs().maxCoeff() / 127.0f, 1e-6f);
  EXPECT_EQ(L.weight.scheme.bits, 8);
  const RowMatrixXf Xq = w8a8_quantize_activations(X, L);
  EXPECT_LE(((X * L.smooth.cwiseInverse().asDiagonal()) - Xq).cwiseAbs().maxCoeff(), 0.5f * L.act_scale + 1e-6f);
}

TEST(SmoothQuant, BadInput) {
  const RowMat X = test::gaussian(8, 16, 1);
  EXPECT_THROW(smoothquant(test::gaussian(4, 15, 2), X), ShapeError);
  RowMat Xn = X;
  Xn(1, 1) = INFINITY;
  EXPECT_THROW(smoothquant(test::gaussian(4, 16, 2), Xn), NumericError);
  SmoothQuantOptions o;
  o.alpha = 1.5;
  EXPECT_THROW(smoothquant(test::gaussian(4, 16, 2), X, o), InvalidArgument);
}

TEST(LlmInt8, NoOutliersIsVectorWiseInt8) {
  const RowMat X = test::uniform(10, 40, 1, -2.0f, 2.0f);
  const RowMat W = test::gaussian(12, 40, 2);
  const LlmInt8Result r = llm_int8_matmul(X, W);
  EXPECT_TRUE(r.outlier_cols.empty());
  // Direct vector-wise int8 reference.
  Eigen::MatrixXf ref(10, 12);
  for (int t = 0; t < 10; ++t)
    for (int n = 0; n < 12; ++n) {
      const float sx = X.row(t).cwiseAbs().maxCoeff() / 127.0f, sw = W.row(n).cwiseAbs().maxCoeff() / 127.0f;
      long acc = 0;
      for (int j = 0; j < 40; ++j)
        acc += static_cast<long>(std::nearbyint(X(t, j) / sx)) * static_cast<long>(std::nearbyint(W(n, j) / sw));
      ref(t, n) = static_cast<float>(static_cast<double>(acc) * sx * sw);
    }
  EXPECT_LT((r.Y - ref).cwiseAbs().maxCoeff(), 1e-4f);
}

TEST(LlmInt8, OutliersInFloatingPoint) {
  RowMat X = test::uniform(64, 48, 3, -1.0f, 1.0f);
  X.col(7) *= 40.0f;
  X.col(30) *= 20.0f;
  const RowMat W = test::gaussian(16, 48, 4);
  const Eigen::MatrixXf Y = X * W.transpose();
  const LlmInt8Result r = llm_int8_matmul(X, W);
  EXPECT_EQ(r.outlier_cols, (std::vector<int64_t>{7, 30}));
  // Only outlier columns non-zero: the product is exact (floating point).
  RowMat Xo = RowMat::Zero(64, 48);
  Xo.col(7) = X.col(7);
  EXPECT_TRUE(llm_int8_matmul(Xo, W).Y.isApprox(Xo * W.transpose(), 1e-6f));
  // Decomposition beats plain int8 on the same product by a wide margin.
  LlmInt8Options none;
  none.threshold = 1e9f;
  const double e_mixed = (r.Y - Y).squaredNorm() / Y.squaredNorm();
  const double e_int8 = (llm_int8_matmul(X, W, none).Y - Y).squaredNorm() / Y.squaredNorm();
  EXPECT_LT(e_mixed, 0.1 * e_int8);
  EXPECT_THROW(llm_int8_matmul(X, test::gaussian(3, 47, 1)), ShapeError);
}

}  // namespace
}  // namespace qk
