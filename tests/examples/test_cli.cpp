// The example programs run as a user runs them.
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

TEST(QatMlpCli, JsonHasEveryKeyWithAnAccuracy) {
  const auto r = qk::test::run_program(QK_QAT_MLP, "--json --threads 1");
  ASSERT_EQ(r.code, 0) << r.err;
  // One line, one object, the twelve keys in order, every value a number in [0, 1].
  const std::string num = R"((0(\.[0-9]+)?|1(\.0+)?))";
  std::string pattern = R"(\{)";
  const char* keys[] = {"fp32", "ptq_int8_dynamic", "ptq_int8_static_minmax", "ptq_int8_static_percentile",
                        "ptq_int8_static_entropy", "ptq_int8_static_mse", "ptq_int4", "ptq_int2", "qat_int4_ste",
                        "qat_int2_ste", "qat_int4_lsq", "qat_int2_lsq"};
  for (size_t i = 0; i < std::size(keys); ++i) pattern += (i ? ", " : "") + std::string("\"") + keys[i] + "\": " + num;
  pattern += R"(\}\n)";
  EXPECT_TRUE(std::regex_match(r.out, std::regex(pattern))) << r.out;
}

TEST(QatMlpCli, UsageErrors) {
  EXPECT_EQ(qk::test::run_program(QK_QAT_MLP, "--bogus").code, 2);
  EXPECT_EQ(qk::test::run_program(QK_QAT_MLP, "--seed").code, 2);
  EXPECT_EQ(qk::test::run_program(QK_QAT_MLP, "--threads x").code, 2);
  const auto r = qk::test::run_program(QK_QAT_MLP, "--data /nonexistent/digits.npy");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/digits.npy"), std::string::npos) << r.err;
  EXPECT_EQ(qk::test::run_program(QK_QAT_MLP, "--help").code, 0);
}

}  // namespace
