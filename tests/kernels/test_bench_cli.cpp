// `qtool bench`: a tiny run prints the documented JSON keys; --list names the paths; a bad option exits 2.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "qk/kernels/isa.hpp"
#include "test_util.hpp"

namespace {

using Result = qk::test::RunResult;

Result run(const std::string& args, const std::string& env = "") {
  return qk::test::run_qtool(args, std::filesystem::temp_directory_path(), env);
}

TEST(QtoolBench, GemmJsonHasTheContractKeys) {
  for (const char* weights : {"s8", "w4"}) {
    const Result r = run(std::string("bench gemm --m 2 --n 48 --k 64 --weights ") + weights +
                         " --group 32 --threads 1 --json");
    ASSERT_EQ(r.code, 0) << r.out;
    for (const char* key : {"\"gops\":", "\"weight_gbps\":", "\"kernel\":", "\"isa\":", "\"threads\":1"})
      EXPECT_NE(r.out.find(key), std::string::npos) << key << " missing in " << r.out;
    EXPECT_NE(r.out.find(qk::kernels::isa_name(qk::kernels::active_isa())), std::string::npos) << r.out;
  }
}

TEST(QtoolBench, ListNamesEveryPath) {
  const Result r = run("bench --list");
  ASSERT_EQ(r.code, 0);
  for (qk::kernels::Isa i : qk::kernels::supported_isas())
    EXPECT_NE(r.out.find(qk::kernels::kernel_names(i).gemm_s8), std::string::npos) << r.out;
}

TEST(QtoolBench, BadOptionsExitWithUsageError) {
  EXPECT_EQ(run("bench gemm --m 2 --n 16 --k 64 --weights s7").code, 2);
  EXPECT_EQ(run("bench gemm --m 2 --n 16 --k 60 --weights w4 --group 32").code, 2);
  EXPECT_EQ(run("bench gemm --m 0 --n 16 --k 64 --weights s8").code, 2);
  EXPECT_EQ(run("bench gemm --m 2 --n 16 --k 64 --weights s8 --bogus").code, 2);
}

TEST(QtoolBench, QkIsaOverrideIsHonouredOrRejected) {
  const Result forced = run("bench gemm --m 1 --n 16 --k 32 --weights s8 --json", "QK_ISA=scalar");
  ASSERT_EQ(forced.code, 0);
  EXPECT_NE(forced.out.find("\"isa\":\"scalar\""), std::string::npos) << forced.out;
  EXPECT_EQ(run("bench --list", "QK_ISA=avx9000").code, 2);
}

}  // namespace
