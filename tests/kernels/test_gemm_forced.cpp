// Run by ctest once per path with QK_ISA=<path> in the environment (tests/kernels.cmake): checks that the
// dispatcher honours the override and that the default entry points (no explicit path) agree with the oracle.
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <gtest/gtest.h>

#include "kernel_test_util.hpp"
#include "qk/kernels/gemm.hpp"

namespace qk::kernels {
namespace {

class ForcedPath : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("QK_ISA");
    if (!env || !*env) GTEST_SKIP() << "QK_ISA is not set: ctest runs this program once per path with QK_ISA=<path>";
    want_ = parse_isa(env);
    if (!cpu_supports(want_)) GTEST_SKIP() << "QK_ISA=" << env << ": this CPU (or its OS) cannot run that path";
    std::cout << "[ forced   ] QK_ISA=" << env << " -> " << isa_name(active_isa()) << " ("
              << active_kernel_names().gemm_s8 << ", " << active_kernel_names().gemm_w4 << ", "
              << active_kernel_names().gemv_w4 << ", " << active_kernel_names().gemm_w4_f32 << ")\n";
  }
  Isa want_ = Isa::scalar;
};

TEST_F(ForcedPath, DispatcherHonoursQkIsa) {
  EXPECT_EQ(active_isa(), want_);
  EXPECT_EQ(active_kernel_names().gemm_s8, kernel_names(want_).gemm_s8);
  EXPECT_NE(active_kernel_names().gemm_s8.find(isa_name(want_) == std::string("avx512") ? "avx512bw" : isa_name(want_)),
            std::string::npos);
}

TEST_F(ForcedPath, DefaultS8PathIsExact) {
  uint64_t seed = 7;
  for (int64_t m : test::kDimsM)
    for (int64_t n : {1, 16, 17, 33, 65})
      for (int64_t k : {1, 4, 5, 33, 67}) {
        const auto c = test::make_s8(m, n, k, seed++);
        const PackedS8 w = pack_s8(c.w.data(), n, k, k, c.ws.data());
        std::vector<int32_t> out(static_cast<size_t>(m * n), 0x5a5a5a5a);
        gemm_s8(c.a.data(), m, k, static_cast<int32_t>(seed % 256), w, out.data(), n);
        const auto ref = test::naive_s8(c, static_cast<int>(seed % 256));
        for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], ref[i]) << "M=" << m << " N=" << n << " K=" << k;
      }
}

TEST_F(ForcedPath, DefaultW4PathsMatchScalar) {
  uint64_t seed = 11;
  for (int64_t m : {1, 2, 5, 9})
    for (int64_t n : {1, 17, 65})
      for (int64_t group : {32, 128}) {
        const auto c = test::make_w4(m, n, 2 * group, group, seed % 2 == 0, seed);
        ++seed;
        const PackedW4 w = pack_w4(c.code.data(), n, 2 * group, 2 * group, group, c.scale.data(),
                                   c.zero.empty() ? nullptr : c.zero.data());
        std::vector<float> ref(static_cast<size_t>(m * n)), out(ref.size(), -1.0f);
        gemm_w4(c.x.data(), m, 2 * group, w, c.bias.data(), ref.data(), n, ActQuant::per_row, Exec{1, Isa::scalar});
        gemm_w4(c.x.data(), m, 2 * group, w, c.bias.data(), out.data(), n);
        ASSERT_EQ(std::memcmp(ref.data(), out.data(), ref.size() * 4), 0) << "M=" << m << " N=" << n;
        gemm_w4_f32(c.x.data(), m, 2 * group, w, nullptr, ref.data(), n, Exec{1, Isa::scalar});
        gemm_w4_f32(c.x.data(), m, 2 * group, w, nullptr, out.data(), n);
        for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-4f * (1.0f + std::fabs(ref[i])));
      }
}

}  // namespace
}  // namespace qk::kernels
