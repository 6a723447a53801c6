// Every path of the ggml block products against the scalar oracle, parameterized over all paths (the ones this
// CPU lacks are skipped with the reason). The SIMD paths sum in a different order from the oracle, so they are
// held to the float summation bound of ggml_dot_test_util.hpp (docs/kernels.md), not to equal bits; their own
// results do not depend on the thread count (compared byte for byte).
#include <cstring>
#include <iostream>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "ggml_dot_test_util.hpp"

namespace qk::kernels {
namespace {

using ggml::Type;

const float kGarbage = std::numeric_limits<float>::quiet_NaN();

class GgmlPath : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!cpu_supports(GetParam()))
      GTEST_SKIP() << "this CPU (or its OS) cannot run the " << isa_name(GetParam()) << " path";
    std::cout << "[ path     ] " << isa_name(GetParam()) << ": " << ggml_kernel_name(Type::Q4_0, GetParam()) << ", "
              << ggml_kernel_name(Type::Q8_0, GetParam()) << "\n";
  }
};

// Runs one case on the path with a padded ldy over NaN and checks every element against the oracle and that the
// padding is untouched.
void check_case(const test::GgmlCase& c, Isa isa) {
  const int64_t ldy = c.n + 3;
  std::vector<float> ref(static_cast<size_t>(c.m * c.n)), out(static_cast<size_t>(c.m * ldy), kGarbage);
  ggml_gemm(c.type, c.w.data(), c.n, c.k, c.a.data(), c.m, ref.data(), c.n, Exec{1, Isa::scalar});
  ggml_gemm(c.type, c.w.data(), c.n, c.k, c.a.data(), c.m, out.data(), ldy, Exec{1, isa});
  const std::vector<double> mag = test::magnitudes(c);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      const double r = ref[static_cast<size_t>(i * c.n + j)];
      ASSERT_NEAR(out[static_cast<size_t>(i * ldy + j)], r, test::tolerance(c.k, mag[static_cast<size_t>(i * c.n + j)]))
          << ggml::info(c.type).name << " M=" << c.m << " N=" << c.n << " K=" << c.k << " at (" << i << ", " << j << ")";
    }
    for (int64_t j = c.n; j < ldy; ++j)
      ASSERT_TRUE(std::isnan(out[static_cast<size_t>(i * ldy + j)])) << "wrote past N at row " << i;
  }
}

TEST_P(GgmlPath, MatchesOracleOnShapeMatrix) {
  uint64_t seed = 100;
  for (Type t : {Type::Q4_0, Type::Q8_0})
    for (int64_t m : {1, 3, 7})
      for (int64_t n : {1, 5, 33, 100})
        for (int64_t k : {32, 96, 4096}) check_case(test::make_ggml_case(t, m, n, k, seed++), GetParam());
}

TEST_P(GgmlPath, MatchesOracleOnLargerM) {
  uint64_t seed = 300;
  for (Type t : {Type::Q4_0, Type::Q8_0})
    for (int64_t m : {2, 4, 5, 8, 9}) check_case(test::make_ggml_case(t, m, 6, 160, seed++), GetParam());
}

TEST_P(GgmlPath, SameBytesOnAnyThreadCount) {
  for (Type t : {Type::Q4_0, Type::Q8_0}) {
    const test::GgmlCase c = test::make_ggml_case(t, 3, 101, 4096, 77);
    std::vector<float> one(static_cast<size_t>(c.m * c.n));
    ggml_gemm(t, c.w.data(), c.n, c.k, c.a.data(), c.m, one.data(), c.n, Exec{1, GetParam()});
    for (int threads : {2, 3, 4}) {
      std::vector<float> many(one.size(), kGarbage);
      ggml_gemm(t, c.w.data(), c.n, c.k, c.a.data(), c.m, many.data(), c.n, Exec{threads, GetParam()});
      EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * 4), 0) << ggml::info(t).name << " threads=" << threads;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPaths, GgmlPath, ::testing::ValuesIn(kAllIsas),
                         [](const ::testing::TestParamInfo<Isa>& i) { return std::string(isa_name(i.param)); });

}  // namespace
}  // namespace qk::kernels
