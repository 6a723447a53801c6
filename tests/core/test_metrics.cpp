#include "qk/core/metrics.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace qk;
using qk::test::RowMat;

TEST(Metrics, HandComputedValues) {
  RowMat a(1, 4), b(1, 4);
  a << 1, 2, 3, 4;
  b << 1, 2, 3, 2;
  EXPECT_DOUBLE_EQ(mse(a, b), 1.0);
  EXPECT_DOUBLE_EQ(max_abs_error(a, b), 2.0);
  EXPECT_NEAR(sqnr_db(a, b), 10.0 * std::log10(30.0 / 4.0), 1e-12);
  EXPECT_NEAR(cosine(a, b), 22.0 / (std::sqrt(30.0) * std::sqrt(18.0)), 1e-12);
}

TEST(Metrics, EdgeCases) {
  RowMat a = qk::test::gaussian(3, 5, 1);
  EXPECT_EQ(mse(a, a), 0.0);
  EXPECT_TRUE(std::isinf(sqnr_db(a, a)) && sqnr_db(a, a) > 0);
  EXPECT_NEAR(cosine(a, a), 1.0, 1e-12);
  EXPECT_NEAR(cosine(a, RowMat(-a)), -1.0, 1e-12);
  RowMat z = RowMat::Zero(3, 5);
  EXPECT_EQ(cosine(z, z), 1.0);
  EXPECT_EQ(cosine(z, a), 0.0);
  EXPECT_TRUE(std::isinf(sqnr_db(z, a)) && sqnr_db(z, a) < 0);
  EXPECT_THROW(mse(a, RowMat::Zero(5, 3)), ShapeError);
}

TEST(Metrics, RelativeOutputError) {
  RowMat X = qk::test::gaussian(50, 16, 2);
  RowMat W = qk::test::gaussian(8, 16, 3);
  EXPECT_EQ(relative_output_error(X, W, W), 0.0);
  // Ŵ = 0.9·W -> XŴᵀ = 0.9·XWᵀ -> E = 0.01.
  RowMat Wq = 0.9f * W;
  EXPECT_NEAR(relative_output_error(X, W, Wq), 0.01, 1e-6);
  // Brute force against the definition.
  RowMat N = qk::test::gaussian(8, 16, 4, 0.1f);
  RowMat W2 = W + N;
  Eigen::MatrixXd Y = X.cast<double>() * W.cast<double>().transpose();
  Eigen::MatrixXd Y2 = X.cast<double>() * W2.cast<double>().transpose();
  EXPECT_NEAR(relative_output_error(X, W, W2), (Y - Y2).squaredNorm() / Y.squaredNorm(), 1e-6);
  EXPECT_THROW(relative_output_error(X, W, RowMat::Zero(8, 15)), ShapeError);
  EXPECT_THROW(relative_output_error(RowMat::Zero(5, 15), W, W), ShapeError);
}
