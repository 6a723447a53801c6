// GgmlGrid: rounding through the WeightGrid protocol reproduces ggml's encoder (pure RTN), decoding encode()
// reproduces quantize_column's values, and updated weights land on the nearest point of the fitted grid.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qk/core/error.hpp"
#include "qk/formats/ggml.hpp"
#include "test_util.hpp"

namespace {

using qk::ggml::GgmlGrid;
using qk::ggml::Type;
using qk::test::RowMat;

std::string type_name(const testing::TestParamInfo<Type>& i) { return std::string(qk::ggml::info(i.param).name); }

// Runs the protocol over all blocks of W (in the given column order); returns the values quantize_column gave.
RowMat run_grid(GgmlGrid& g, const RowMat& W, const float* importance, const std::vector<int64_t>& order,
                const RowMat* W_update = nullptr) {
  const int64_t rows = W.rows(), cols = W.cols(), B = g.block_size();
  g.reset(rows, cols);
  for (int64_t c0 = 0; c0 < cols; c0 += B) {
    Eigen::MatrixXf blk = W.middleCols(c0, B);
    g.fit(c0, blk, importance ? importance + c0 : nullptr);
  }
  RowMat out(rows, cols);
  Eigen::VectorXf col(rows), q(rows);
  const RowMat& src = W_update ? *W_update : W;
  for (int64_t c : order) {
    col = src.col(c);
    g.quantize_column(c, col, q);
    out.col(c) = q;
  }
  return out;
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

void expect_decode_equals(Type t, const std::vector<uint8_t>& bytes, const RowMat& values) {
  RowMat y(values.rows(), values.cols());
  qk::ggml::dequantize_rows(t, bytes.data(), values.rows(), values.cols(), y.data());
  for (int64_t i = 0; i < y.size(); ++i) {
    if (!(y.data()[i] == values.data()[i])) {
      ADD_FAILURE() << qk::ggml::info(t).name << ": element " << i << " decodes to " << y.data()[i]
                    << " but quantize_column returned " << values.data()[i];
      return;
    }
  }
}

class GgmlGridTest : public testing::TestWithParam<Type> {};

// Pure RTN through the grid (fit on W, quantize the same W) gives exactly the direct encoder's bytes.
TEST_P(GgmlGridTest, RtnThroughGridEqualsEncoder) {
  const Type t = GetParam();
  for (uint64_t seed : {1u, 2u}) {
    RowMat W = seed == 1 ? qk::test::gaussian(24, 512, 100 + seed, 0.02f) : qk::test::uniform(24, 512, 100 + seed);
    W(3, 7) = 0.6f;  // an outlier
    W.row(5).setZero();  // a zero row (zero scales: the fitted codes are kept)
    W.block(6, 256, 1, 32).setZero();
    GgmlGrid g(t);
    const RowMat out = run_grid(g, W, nullptr, iota(W.cols()));
    const auto bytes = g.encode();
    const auto direct = qk::ggml::quantize(t, W.data(), W.rows(), W.cols());
    EXPECT_EQ(bytes, direct) << qk::ggml::info(t).name << " seed " << seed;
    expect_decode_equals(t, bytes, out);
  }
}

// The reference inputs as well (the heavy-tailed one exercises ggml's corner cases).
TEST_P(GgmlGridTest, RtnThroughGridOnReferenceInputs) {
  const Type t = GetParam();
  const auto p = qk::test::test_data("ggml/heavy.f32");
  if (!std::filesystem::exists(p)) GTEST_SKIP() << "tests/data/ggml/heavy.f32 absent";
  const auto raw = qk::test::read_bytes(p);
  RowMat W(8, 4096);
  ASSERT_EQ(raw.size(), static_cast<size_t>(W.size()) * sizeof(float));
  std::memcpy(W.data(), raw.data(), raw.size());
  GgmlGrid g(t);
  const RowMat out = run_grid(g, W, nullptr, iota(W.cols()));
  EXPECT_EQ(g.encode(), qk::ggml::quantize(t, W.data(), W.rows(), W.cols()));
  expect_decode_equals(t, g.encode(), out);
}

// Column order does not matter (GPTQ act-order visits columns permuted).
TEST_P(GgmlGridTest, ColumnOrderIrrelevant) {
  const Type t = GetParam();
  RowMat W = qk::test::gaussian(8, 512, 9);
  auto order = iota(W.cols());
  std::shuffle(order.begin(), order.end(), qk::test::rng(4));
  GgmlGrid a(t), b(t);
  const RowMat oa = run_grid(a, W, nullptr, iota(W.cols()));
  const RowMat ob = run_grid(b, W, nullptr, order);
  EXPECT_EQ(a.encode(), b.encode());
  EXPECT_TRUE(oa == ob);
}

// Weights changed after the fit (as GPTQ's error feedback does) are rounded onto the fitted grid: decoding the
// bytes gives the returned values, and each value is within one step of its input unless clamped.
TEST_P(GgmlGridTest, UpdatedWeightsStayOnFittedGrid) {
  const Type t = GetParam();
  RowMat W = qk::test::gaussian(16, 512, 21);
  RowMat U = W + 0.05f * qk::test::gaussian(16, 512, 22);
  U(0, 0) = 50.0f;  // far outside: clamps
  U(1, 1) = -50.0f;
  GgmlGrid g(t);
  const RowMat out = run_grid(g, W, nullptr, iota(W.cols()), &U);
  const auto bytes = g.encode();
  expect_decode_equals(t, bytes, out);
  // Re-encoding the decoded values with the same grid fitted on W keeps them (they are grid points).
  Eigen::VectorXf col(W.rows()), q(W.rows());
  for (int64_t c = 0; c < W.cols(); ++c) {
    col = out.col(c);
    g.quantize_column(c, col, q);
    for (int64_t r = 0; r < W.rows(); ++r)
      ASSERT_NEAR(q(r), out(r, c), 1e-6f * std::max(1.0f, std::fabs(out(r, c))))
          << qk::ggml::info(t).name << " r=" << r << " c=" << c;
  }
  EXPECT_EQ(g.encode(), bytes);
  // Where the perturbed value stays inside the block's fitted range (no clamping), the error is comparable to
  // RTN of the same data (same grid resolution).
  const auto direct = qk::ggml::quantize(t, U.data(), 16, 512);
  RowMat y(16, 512);
  qk::ggml::dequantize_rows(t, direct.data(), 16, 512, y.data());
  const int64_t B = g.block_size();
  double err = 0, err_rtn = 0;
  for (int64_t r = 2; r < 16; ++r) {
    for (int64_t c = 0; c < 512; ++c) {
      const float range = W.row(r).segment(c / B * B, B).cwiseAbs().maxCoeff();
      if (std::fabs(U(r, c)) > 0.8f * range) continue;
      err += std::pow(U(r, c) - out(r, c), 2);
      err_rtn += std::pow(U(r, c) - y(r, c), 2);
    }
  }
  EXPECT_LT(err, 4.0 * err_rtn + 1e-12) << qk::ggml::info(t).name;
}

// For the K-quants every returned value is a nearest point of its sub-block's grid {d*sc*q - dmin*m}.
TEST(GgmlGridNearest, KQuantsRoundToNearestGridPoint) {
  for (Type t : {Type::Q4_K, Type::Q5_K, Type::Q6_K}) {
    RowMat W = qk::test::gaussian(4, 256, 31);
    RowMat U = W + 0.1f * qk::test::gaussian(4, 256, 32);
    GgmlGrid g(t);
    const RowMat out = run_grid(g, W, nullptr, iota(256), &U);
    const auto bytes = g.encode();
    // Decode every code value of each sub-block by writing candidate columns through quantize_column is not
    // possible; instead enumerate the sub-block grid from the decoded block: values = dl*q - ml.
    RowMat dec(4, 256);
    qk::ggml::dequantize_rows(t, bytes.data(), 4, 256, dec.data());
    const int sub = t == Type::Q6_K ? 16 : 32;
    const int nq = t == Type::Q4_K ? 16 : t == Type::Q5_K ? 32 : 64;
    for (int64_t r = 0; r < 4; ++r) {
      for (int s = 0; s < 256 / sub; ++s) {
        // Recover (dl, ml) from two distinct decoded codes is fragile; use the grid itself: quantize candidate
        // values spread over the range and collect the distinct outputs.
        std::vector<float> pts;
        Eigen::VectorXf col(4), q(4);
        GgmlGrid probe(t);
        probe.reset(4, 256);
        Eigen::MatrixXf blk = W.leftCols(256);
        probe.fit(0, blk, nullptr);
        for (int k = -400; k <= 400; ++k) {
          col.setConstant(static_cast<float>(k) * 0.01f);
          probe.quantize_column(s * sub, col, q);
          pts.push_back(q(r));
        }
        std::sort(pts.begin(), pts.end());
        pts.erase(std::unique(pts.begin(), pts.end()), pts.end());
        ASSERT_LE(static_cast<int>(pts.size()), nq);
        for (int e = 0; e < sub; ++e) {
          const int64_t c = s * sub + e;
          const float v = U(r, c);
          float best = INFINITY;
          for (float p : pts) best = std::min(best, std::fabs(p - v));
          EXPECT_LE(std::fabs(out(r, c) - v), best * (1 + 1e-5f) + 1e-7f)
              << qk::ggml::info(t).name << " r=" << r << " c=" << c;
        }
      }
    }
  }
}

// With importance, the K-quants' and IQ4_NL's grid fits are the importance-weighted encoder exactly.
TEST(GgmlGridImportance, WeightedFitEqualsWeightedEncoder) {
  RowMat W = qk::test::gaussian(8, 512, 41, 0.02f);
  std::vector<float> im(512);
  auto g = qk::test::rng(42);
  std::uniform_real_distribution<float> u(0.001f, 3.0f);
  for (float& v : im) v = u(g);
  for (Type t : {Type::Q2_K, Type::Q3_K, Type::Q4_K, Type::Q5_K, Type::Q6_K, Type::IQ4_NL}) {
    GgmlGrid grid(t);
    const RowMat out = run_grid(grid, W, im.data(), iota(512));
    EXPECT_EQ(grid.encode(), qk::ggml::quantize(t, W.data(), 8, 512, im.data())) << qk::ggml::info(t).name;
    expect_decode_equals(t, grid.encode(), out);
  }
  // The 32-element types fit with the weighted search too (sigma2 from the block): consistent bytes and values.
  for (Type t : {Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1}) {
    GgmlGrid grid(t);
    const RowMat out = run_grid(grid, W, im.data(), iota(512));
    expect_decode_equals(t, grid.encode(), out);
  }
}

// With the whole rows given (set_row_statistics), the 32-element types' importance-weighted fit finds ggml's
// scales exactly (the block headers equal quantize_rows(..., importance)); their codes are then rounded onto those
// scales, where ggml keeps the codes of its search's best trial, so only the headers are compared for them.
TEST(GgmlGridImportance, RowStatisticsMakeLegacyWeightedFitExact) {
  RowMat W = qk::test::gaussian(8, 512, 51, 0.02f);
  W(2, 100) = 0.5f;
  std::vector<float> im(512);
  auto g = qk::test::rng(52);
  std::uniform_real_distribution<float> u(0.001f, 3.0f);
  for (float& v : im) v = u(g);
  for (Type t : {Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q4_K}) {
    GgmlGrid grid(t);
    const int64_t B = grid.block_size();
    grid.reset(W.rows(), W.cols());
    grid.set_row_statistics(W.data());
    for (int64_t c0 = 0; c0 < W.cols(); c0 += B) {
      Eigen::MatrixXf blk = W.middleCols(c0, B);
      grid.fit(c0, blk, im.data() + c0);
    }
    RowMat out(W.rows(), W.cols());
    Eigen::VectorXf col(W.rows()), q(W.rows());
    for (int64_t c = 0; c < W.cols(); ++c) {
      col = W.col(c);
      grid.quantize_column(c, col, q);
      out.col(c) = q;
    }
    const auto want = qk::ggml::quantize(t, W.data(), W.rows(), W.cols(), im.data());
    if (t != Type::Q4_K) {
      const size_t header = (t == Type::Q4_0 || t == Type::Q5_0) ? 2 : 4;  // d, or d and m
      const auto got = grid.encode();
      const size_t bb = static_cast<size_t>(qk::ggml::info(t).block_bytes);
      ASSERT_EQ(got.size(), want.size());
      for (size_t b = 0; b < got.size(); b += bb)
        ASSERT_EQ(0, std::memcmp(got.data() + b, want.data() + b, header))
            << qk::ggml::info(t).name << " block " << b / bb;
    } else {
      EXPECT_EQ(grid.encode(), want) << qk::ggml::info(t).name;
    }
    expect_decode_equals(t, grid.encode(), out);
  }
  GgmlGrid fresh(Type::Q4_0);
  EXPECT_THROW(fresh.set_row_statistics(W.data()), qk::InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Types, GgmlGridTest,
                         testing::Values(Type::Q4_0, Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q8_0, Type::IQ4_NL,
                                         Type::Q2_K, Type::Q3_K, Type::Q4_K, Type::Q5_K, Type::Q6_K),
                         type_name);

TEST(GgmlGridErrors, ProtocolMisuse) {
  EXPECT_THROW(GgmlGrid{Type::Q8_K}, qk::InvalidArgument);
  GgmlGrid g(Type::Q4_K);
  EXPECT_EQ(g.block_size(), 256);
  EXPECT_STREQ(g.name(), "q4_K");
  EXPECT_THROW(g.reset(4, 300), qk::InvalidArgument);
  EXPECT_THROW((void)g.encode(), qk::InvalidArgument);
  g.reset(4, 512);
  Eigen::VectorXf col = Eigen::VectorXf::Zero(4), q(4);
  EXPECT_THROW(g.quantize_column(0, col, q), qk::InvalidArgument);  // not fitted
  Eigen::MatrixXf blk = Eigen::MatrixXf::Ones(4, 256);
  EXPECT_THROW(g.fit(128, blk, nullptr), qk::InvalidArgument);
  Eigen::MatrixXf wrong = Eigen::MatrixXf::Ones(3, 256);
  EXPECT_THROW(g.fit(0, wrong, nullptr), qk::ShapeError);
  g.fit(0, blk, nullptr);
  EXPECT_NO_THROW(g.quantize_column(0, col, q));
  EXPECT_THROW((void)g.encode(), qk::InvalidArgument);  // block at 256 never fitted
  Eigen::VectorXf shortcol(3);
  EXPECT_THROW(g.quantize_column(1, shortcol, q), qk::ShapeError);
  EXPECT_THROW(g.quantize_column(512, col, q), qk::InvalidArgument);
  col(2) = NAN;
  EXPECT_THROW(g.quantize_column(1, col, q), qk::NumericError);
  blk(1, 1) = INFINITY;
  EXPECT_THROW(g.fit(256, blk, nullptr), qk::NumericError);
}

}  // namespace
