// The f32 GEMM (qk/kernels/sgemm.hpp) against a double-precision product, run by ctest once per path with
// QK_ISA=<path> (tests/kernels.cmake), so every micro-kernel the CPU supports is checked: odd shapes around the
// micro-tile and cache-block sizes, every stride layout of A, B and C, alpha/beta cases, beta = 0 over NaN garbage,
// one and two threads.
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qk/core/error.hpp"
#include "qk/util/isa.hpp"
#include "qk/linalg/sgemm.hpp"

namespace qk::linalg {
namespace {

struct Mat {
  int64_t rows, cols;
  bool row_major;
  int64_t pad;  // extra leading-dimension elements, so strides are not the bare sizes
  std::vector<float> v;
  Mat(int64_t r, int64_t c, bool rm, int64_t pd = 3) : rows(r), cols(c), row_major(rm), pad(pd) {
    v.assign(static_cast<size_t>(std::max<int64_t>(1, (rm ? r : c) * ld())), 0.0f);
  }
  int64_t ld() const { return (row_major ? cols : rows) + pad; }
  int64_t rs() const { return row_major ? ld() : 1; }
  int64_t cs() const { return row_major ? 1 : ld(); }
  float& at(int64_t i, int64_t j) { return v[static_cast<size_t>(i * rs() + j * cs())]; }
  float at(int64_t i, int64_t j) const { return v[static_cast<size_t>(i * rs() + j * cs())]; }
  SgemmView view() const { return {v.data(), rs(), cs()}; }
  SgemmMutView mut() { return {v.data(), rs(), cs()}; }
};

void fill(Mat& m, std::mt19937& g) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) m.at(i, j) = d(g);
}

class Sgemm : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("QK_ISA");
    if (!env || !*env) GTEST_SKIP() << "QK_ISA is not set: ctest runs this program once per path with QK_ISA=<path>";
    if (!cpu_supports(parse_isa(env))) GTEST_SKIP() << "QK_ISA=" << env << ": this CPU (or its OS) cannot run that path";
    std::cout << "[ forced   ] QK_ISA=" << env << " -> " << sgemm_kernel_name() << "\n";
  }

  // Runs C = alpha A B + beta C and compares with the double product within a bound scaled by k.
  static void check(int64_t m, int64_t n, int64_t k, bool a_rm, bool b_rm, bool c_rm, float alpha, float beta,
                    int threads, uint32_t seed, SgemmTriangle tri = SgemmTriangle::none) {
    std::mt19937 g(seed);
    Mat A(m, k, a_rm), B(k, n, b_rm), C(m, n, c_rm);
    fill(A, g);
    fill(B, g);
    // The zero triangle of a triangular operand.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p)
        if ((tri == SgemmTriangle::a_lower && p > i) || (tri == SgemmTriangle::a_upper && p < i)) A.at(i, p) = 0.0f;
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j)
        if ((tri == SgemmTriangle::b_lower && p < j) || (tri == SgemmTriangle::b_upper && p > j)) B.at(p, j) = 0.0f;
    if (beta == 0.0f) {
      std::fill(C.v.begin(), C.v.end(), std::nanf(""));
    } else {
      fill(C, g);
    }
    const Mat C0 = C;
    sgemm(m, n, k, alpha, A.view(), B.view(), beta, C.mut(), threads, tri);
    const double tol = 4e-7 * static_cast<double>(k + 4) + 1e-6;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double ref = 0;
        for (int64_t p = 0; p < k; ++p) ref += double(A.at(i, p)) * double(B.at(p, j));
        ref *= alpha;
        if (beta != 0.0f) ref += double(beta) * double(C0.at(i, j));
        ASSERT_NEAR(C.at(i, j), ref, tol) << "m=" << m << " n=" << n << " k=" << k << " layouts " << a_rm << b_rm
                                          << c_rm << " alpha=" << alpha << " beta=" << beta << " tri "
                                          << static_cast<int>(tri) << " at [" << i << ","
                                          << j << "]";
      }
    // The padding past each column (or row) of C is never written.
    for (int64_t o = 0; o < (c_rm ? m : n); ++o)
      for (int64_t q = (c_rm ? n : m); q < C.ld(); ++q) {
        const size_t idx = static_cast<size_t>(o * C.ld() + q);
        if (idx < C.v.size() && !std::isnan(C0.v[idx])) {
          ASSERT_EQ(C.v[idx], C0.v[idx]);
        }
      }
  }
};

TEST_F(Sgemm, OddShapesEveryLayout) {
  uint32_t seed = 1;
  for (int64_t m : {1, 7, 31, 32, 33, 67})
    for (int64_t n : {1, 5, 11, 12, 13, 25})
      for (int64_t k : {1, 3, 17, 64})
        for (int layout = 0; layout < 8; ++layout)
          check(m, n, k, layout & 1, layout & 2, layout & 4, 1.0f, 0.0f, 1, seed++);
}

TEST_F(Sgemm, AlphaBetaAccumulate) {
  uint32_t seed = 100;
  for (float alpha : {1.0f, -1.0f, 0.5f})
    for (float beta : {0.0f, 1.0f, -2.0f})
      for (int layout : {0, 3, 5, 6}) check(45, 29, 37, layout & 1, layout & 2, layout & 4, alpha, beta, 1, seed++);
}

TEST_F(Sgemm, CacheBlockBoundaries) {
  // Depth past one packed slice (384) and rows past one packed block (192), columns past several micro-panels.
  uint32_t seed = 200;
  check(193, 40, 385, false, false, false, 1.0f, 1.0f, 1, seed++);
  check(200, 37, 770, true, false, false, -1.0f, 0.0f, 1, seed++);
  check(65, 3100, 9, false, true, false, 1.0f, 1.0f, 1, seed++);
}

TEST_F(Sgemm, TwoThreadsSplitRowsOrColumns) {
  uint32_t seed = 300;
  check(301, 47, 200, false, false, false, 1.0f, 1.0f, 2, seed++);  // split over rows
  check(45, 301, 200, true, false, false, -1.0f, 0.0f, 2, seed++);  // split over columns
  check(150, 140, 130, false, true, true, 1.0f, 0.5f, 2, seed++);
}

TEST_F(Sgemm, TriangularOperandsSkipTheirZeroBlocks) {
  // Sizes past one depth slice (384) and one row block (192), every layout (a row-major C swaps the operands and
  // turns a lower A into an upper B), beta applied exactly once, one and two threads.
  uint32_t seed = 400;
  for (SgemmTriangle tri : {SgemmTriangle::a_lower, SgemmTriangle::a_upper, SgemmTriangle::b_lower,
                            SgemmTriangle::b_upper})
    for (int layout = 0; layout < 8; ++layout) {
      const bool on_a = tri == SgemmTriangle::a_lower || tri == SgemmTriangle::a_upper;
      const int64_t t = 400;
      const int64_t m = on_a ? t : 37, n = on_a ? 29 : t;
      check(m, n, t, layout & 1, layout & 2, layout & 4, -1.0f, layout % 3 == 0 ? 0.0f : 0.5f, layout % 2 + 1,
            seed++, tri);
    }
  check(1, 1, 1, false, false, false, 1.0f, 1.0f, 1, seed++, SgemmTriangle::a_lower);
  check(900, 33, 900, false, false, false, 1.0f, 1.0f, 2, seed++, SgemmTriangle::a_lower);
  check(33, 900, 900, false, false, false, 1.0f, 1.0f, 2, seed++, SgemmTriangle::b_lower);
  float x = 1.0f;
  EXPECT_THROW(sgemm(3, 2, 4, 1.0f, {&x, 1, 1}, {&x, 1, 1}, 0.0f, {&x, 1, 1}, 1, SgemmTriangle::a_lower),
               InvalidArgument);
}

TEST_F(Sgemm, SymmetricRankKLowerTriangle) {
  uint32_t seed = 500;
  for (int64_t n : {1, 7, 33, 45, 200, 401})
    for (int64_t k : {1, 17, 400})
      for (int layout = 0; layout < 4; ++layout) {
        const bool a_rm = layout & 1;
        const float beta = (layout & 2) ? 0.5f : 0.0f;
        std::mt19937 g(seed++);
        Mat A(n, k, a_rm), C(n, n, false);
        fill(A, g);
        fill(C, g);
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < n; ++i)
            if (i < j || beta == 0.0f) C.at(i, j) = std::nanf("");  // upper: never touched; lower: garbage for beta 0
        const Mat C0 = C;
        ssyrk_lower(n, k, -1.5f, A.view(), beta, C.mut(), (layout & 1) + 1);
        const double tol = 4e-7 * static_cast<double>(k + 4) * 1.5 + 1e-6;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < n; ++i) {
            if (i < j) {
              ASSERT_TRUE(std::isnan(C.at(i, j))) << "upper triangle written at [" << i << "," << j << "]";
              continue;
            }
            double ref = 0;
            for (int64_t p = 0; p < k; ++p) ref += double(A.at(i, p)) * double(A.at(j, p));
            ref *= -1.5;
            if (beta != 0.0f) ref += double(beta) * double(C0.at(i, j));
            ASSERT_NEAR(C.at(i, j), ref, tol) << "n=" << n << " k=" << k << " layout " << layout << " at [" << i
                                              << "," << j << "]";
          }
      }
}

TEST_F(Sgemm, DegenerateSizes) {
  std::vector<float> c(6, 2.0f);
  const float a = 1.0f;
  sgemm(2, 3, 0, 1.0f, {&a, 1, 2}, {&a, 1, 1}, 0.5f, {c.data(), 1, 2});
  for (float v : c) EXPECT_EQ(v, 1.0f);  // k = 0: C = beta C
  std::vector<float> nan(6, std::nanf(""));
  sgemm(2, 3, 0, 1.0f, {&a, 1, 2}, {&a, 1, 1}, 0.0f, {nan.data(), 1, 2});
  for (float v : nan) EXPECT_EQ(v, 0.0f);  // beta = 0 does not read C
  sgemm(0, 3, 5, 1.0f, {nullptr, 1, 1}, {&a, 1, 1}, 0.0f, {nullptr, 1, 1});  // empty: nothing to do
  EXPECT_THROW(sgemm(-1, 3, 5, 1.0f, {&a, 1, 1}, {&a, 1, 1}, 0.0f, {c.data(), 1, 1}), InvalidArgument);
  EXPECT_THROW(sgemm(2, 3, 5, 1.0f, {nullptr, 1, 2}, {&a, 1, 1}, 0.0f, {c.data(), 1, 2}), InvalidArgument);
}

}  // namespace
}  // namespace qk::linalg
