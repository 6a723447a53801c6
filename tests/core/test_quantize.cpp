#include "qk/core/quantize.hpp"

#include <gtest/gtest.h>

#include "qk/core/metrics.hpp"
#include "test_util.hpp"

using namespace qk;
using qk::test::RowMat;

namespace {

std::vector<QuantScheme> all_schemes(int64_t group) {
  std::vector<QuantScheme> out;
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {true, false})
      for (bool sgn : {true, false}) {
        out.push_back(QuantScheme::per_tensor(bits, sym, sgn));
        out.push_back(QuantScheme::per_channel(bits, sym, sgn));
        out.push_back(QuantScheme::per_group(bits, group, sym, sgn));
      }
  return out;
}

}  // namespace

TEST(Quantize, CodesStayInRangeAndDequantizeMatchesFakeQuant) {
  RowMat W = qk::test::gaussian(7, 96, 1);
  for (const auto& s : all_schemes(32)) {
    SCOPED_TRACE(s.describe());
    auto q = quantize(W, s);
    for (int64_t r = 0; r < q.rows; ++r)
      for (int64_t c = 0; c < q.cols; ++c) {
        ASSERT_GE(q.code(r, c), s.qmin());
        ASSERT_LE(q.code(r, c), s.qmax());
      }
    RowMat deq = q.dequantize();
    RowMat fq = fake_quant(W, s);
    ASSERT_EQ(deq, fq);
    // The error of each element is at most half a step (no clipping with min/max parameters).
    for (int64_t r = 0; r < q.rows; ++r)
      for (int64_t c = 0; c < q.cols; ++c) ASSERT_LE(std::fabs(W(r, c) - deq(r, c)), 0.5f * q.scale(r, c) * 1.0001f);
  }
}

TEST(Quantize, ValuesOnTheGridComeBackExactly) {
  auto g = qk::test::rng(2);
  for (const auto& s : all_schemes(16)) {
    SCOPED_TRACE(s.describe());
    const int64_t rows = 5, cols = 64;
    QuantParams p(s.param_rows(rows), s.param_cols(cols));
    std::uniform_int_distribution<int> zd(s.qmin(), s.qmax());
    for (Eigen::Index i = 0; i < p.scale.size(); ++i) {
      p.scale.data()[i] = std::ldexp(1.0f, static_cast<int>(i % 7) - 4);  // powers of two: exact products
      p.zero_point.data()[i] = s.symmetric ? (s.is_signed ? 0 : 1 << (s.bits - 1)) : zd(g);
    }
    RowMat W(rows, cols);
    std::vector<int> codes(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        int qv = zd(g);
        codes[static_cast<size_t>(r * cols + c)] = qv;
        const auto pr = s.granularity == Granularity::PerTensor ? 0 : r;
        const auto pc = c / s.span(cols);
        W(r, c) = static_cast<float>(qv - p.zero_point(pr, pc)) * p.scale(pr, pc);
      }
    auto q = quantize(W, s, &p);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(q.code(r, c), codes[static_cast<size_t>(r * cols + c)]);
    ASSERT_EQ(q.dequantize(), W);
  }
}

TEST(Quantize, RoundsHalfToEvenByDefault) {
  RowMat W(1, 4);
  W << 0.5f, 1.5f, 2.5f, -2.5f;
  QuantParams p(1, 1);
  p.scale(0, 0) = 1.0f;
  p.zero_point(0, 0) = 0;
  auto s = QuantScheme::per_tensor(8);
  auto q = quantize(W, s, &p);
  EXPECT_EQ(q.code(0, 0), 0);
  EXPECT_EQ(q.code(0, 1), 2);
  EXPECT_EQ(q.code(0, 2), 2);
  EXPECT_EQ(q.code(0, 3), -2);
  s.rounding = Rounding::NearestAway;
  auto qa = quantize(W, s, &p);
  EXPECT_EQ(qa.code(0, 0), 1);
  EXPECT_EQ(qa.code(0, 2), 3);
  EXPECT_EQ(qa.code(0, 3), -3);
}

TEST(Quantize, ClampsOutOfRangeValues) {
  RowMat W(1, 3);
  W << 1000.f, -1000.f, 3.f;
  auto s = QuantScheme::per_tensor(4);
  auto p = params_from_range(-1.f, 1.f, s);
  auto q = quantize(W, s, &p);
  EXPECT_EQ(q.code(0, 0), 7);
  EXPECT_EQ(q.code(0, 1), -8);
  EXPECT_EQ(q.code(0, 2), 7);
}

TEST(Quantize, DegenerateInputsGiveFiniteResults) {
  for (const auto& s : all_schemes(4)) {
    SCOPED_TRACE(s.describe());
    RowMat zeros = RowMat::Zero(3, 8);
    auto q0 = quantize(zeros, s);
    EXPECT_TRUE(q0.params.scale.allFinite());
    EXPECT_EQ(q0.dequantize(), zeros);

    RowMat constant = RowMat::Constant(3, 8, -2.75f);
    RowMat fc = fake_quant(constant, s);
    EXPECT_TRUE(fc.allFinite());
    if (!s.symmetric) {
      // A constant row is one end of its range, so it is representable up to rounding of the scale.
      EXPECT_NEAR(fc(0, 0), -2.75f, 1e-5f);
    }

    RowMat huge = qk::test::gaussian(3, 8, 3);
    huge(1, 2) = 3.0e38f;
    RowMat fh = fake_quant(huge, s);
    EXPECT_TRUE(fh.allFinite());
    EXPECT_TRUE(quantize(huge, s).params.scale.allFinite());
  }
}

TEST(Quantize, NonFiniteInputIsAnErrorNamingWhere) {
  RowMat W = qk::test::gaussian(4, 32, 4);
  W(2, 17) = std::nanf("");
  for (auto s : {QuantScheme::per_tensor(8), QuantScheme::per_channel(4), QuantScheme::per_group(4, 8)}) {
    try {
      (void)quantize(W, s);
      FAIL() << "no throw for " << s.describe();
    } catch (const NumericError& e) {
      EXPECT_NE(std::string(e.what()).find("[2, 17]"), std::string::npos) << e.what();
    }
    EXPECT_THROW(fake_quant(W, s), NumericError);
  }
  W(2, 17) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(compute_params(W, QuantScheme::per_group(4, 8)), NumericError);
  // Given parameters do not skip the check.
  W(2, 17) = -std::numeric_limits<float>::infinity();
  auto s = QuantScheme::per_tensor(8);
  auto p = params_from_range(-1, 1, s);
  EXPECT_THROW(quantize(W, s, &p), NumericError);
}

TEST(Quantize, BlocksMapsAndColumnMajorAgreeWithPlainRowMajor) {
  RowMat big = qk::test::gaussian(20, 80, 5);
  auto s = QuantScheme::per_group(4, 16, false);
  RowMat plain = big.block(3, 8, 9, 64);
  auto ref = quantize(plain, s);
  auto from_block = quantize(big.block(3, 8, 9, 64), s);
  EXPECT_EQ(ref.packed, from_block.packed);
  Eigen::MatrixXf colmajor = plain;
  EXPECT_EQ(quantize(colmajor, s).packed, ref.packed);
  Eigen::Map<const RowMat> map(plain.data(), plain.rows(), plain.cols());
  EXPECT_EQ(quantize(map, s).packed, ref.packed);
  EXPECT_EQ(fake_quant(big.block(3, 8, 9, 64), s), fake_quant(plain, s));
  // An expression (not a stored matrix) works too.
  EXPECT_EQ(fake_quant(2.0f * plain, s), fake_quant(RowMat(2.0f * plain), s));
}

TEST(Quantize, GivenParametersMustMatchTheScheme) {
  RowMat W = qk::test::gaussian(4, 32, 6);
  auto s = QuantScheme::per_group(4, 8);
  QuantParams wrong(4, 2);
  wrong.scale.setOnes();
  wrong.zero_point.setZero();
  EXPECT_THROW(quantize(W, s, &wrong), ShapeError);
  QuantParams bad(4, 4);
  bad.scale.setZero();
  bad.zero_point.setZero();
  EXPECT_THROW(quantize(W, s, &bad), InvalidArgument);
}

TEST(Quantize, FinerGranularityNeverHurtsOnHeterogeneousRows) {
  // Rows and groups with very different ranges.
  RowMat W = qk::test::gaussian(16, 256, 7);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 256; ++c) W(r, c) *= std::pow(2.0f, static_cast<float>(r % 5)) * (1.0f + static_cast<float>((c / 32) % 4));
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {true, false}) {
      const double t = mse(W, fake_quant(W, QuantScheme::per_tensor(bits, sym)));
      const double ch = mse(W, fake_quant(W, QuantScheme::per_channel(bits, sym)));
      const double gr = mse(W, fake_quant(W, QuantScheme::per_group(bits, 32, sym)));
      EXPECT_LE(ch, t) << bits << " bits sym=" << sym;
      EXPECT_LE(gr, ch) << bits << " bits sym=" << sym;
      EXPECT_LT(gr, 0.9 * t);
    }
}

TEST(Quantize, PackedStorageIsCompact) {
  RowMat W = qk::test::gaussian(3, 33, 8);
  auto q = quantize(W, QuantScheme::per_channel(3));
  EXPECT_EQ(q.row_bytes(), 13);  // 33 * 3 = 99 bits
  EXPECT_EQ(q.packed.size(), 39u);
}
