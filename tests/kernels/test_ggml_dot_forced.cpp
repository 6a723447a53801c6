// Run by ctest once per path with QK_ISA=<path> in the environment (tests/kernels.cmake): the ggml block products'
// default entry points (no explicit path) take the forced path and agree with the oracle.
#include <cstdlib>
#include <iostream>
#include <vector>

#include <gtest/gtest.h>

#include "ggml_dot_test_util.hpp"

namespace qk::kernels {
namespace {

using ggml::Type;

class GgmlForced : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("QK_ISA");
    if (!env || !*env) GTEST_SKIP() << "QK_ISA is not set: ctest runs this program once per path with QK_ISA=<path>";
    want_ = parse_isa(env);
    if (!cpu_supports(want_)) GTEST_SKIP() << "QK_ISA=" << env << ": this CPU (or its OS) cannot run that path";
    std::cout << "[ forced   ] QK_ISA=" << env << " -> " << isa_name(active_isa()) << " ("
              << ggml_kernel_name(Type::Q4_0, active_isa()) << ", " << ggml_kernel_name(Type::Q8_0, active_isa()) << ")\n";
  }
  Isa want_ = Isa::scalar;
};

TEST_F(GgmlForced, DefaultPathIsTheForcedOne) { EXPECT_EQ(active_isa(), want_); }

TEST_F(GgmlForced, DefaultPathMatchesOracle) {
  uint64_t seed = 500;
  for (Type t : {Type::Q4_0, Type::Q8_0})
    for (int64_t m : {1, 3})
      for (int64_t n : {5, 33})
        for (int64_t k : {96, 4096}) {
          const test::GgmlCase c = test::make_ggml_case(t, m, n, k, seed++);
          std::vector<float> ref(static_cast<size_t>(m * n)), out(ref.size());
          ggml_gemm(t, c.w.data(), n, k, c.a.data(), m, ref.data(), n, Exec{1, Isa::scalar});
          ggml_gemm(t, c.w.data(), n, k, c.a.data(), m, out.data(), n);
          const std::vector<double> mag = test::magnitudes(c);
          for (size_t i = 0; i < ref.size(); ++i)
            ASSERT_NEAR(out[i], ref[i], test::tolerance(k, mag[i])) << ggml::info(t).name << " M=" << m << " N=" << n << " K=" << k;
        }
}

}  // namespace
}  // namespace qk::kernels
