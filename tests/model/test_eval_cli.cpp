// qtool eval --tokens: model-level comparison of two Llama files (perplexity, KL, top-1), text and JSON.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "test_util.hpp"

namespace {

// stdout and stderr together, as a user reads them.
struct Run {
  int code;
  std::string out;
};

Run qtool(const std::string& args) {
  const qk::test::RunResult r = qk::test::run_qtool(args);
  return {r.code, r.out + r.err};
}

std::string model() { return qk::test::test_data("../../examples/models/stories260K-f32.gguf").string(); }
std::string tokens() { return qk::test::test_data("../../examples/models/stories260K.eval-tokens.i32").string(); }

}  // namespace

TEST(QtoolEvalTokens, SameModelCostsNothing) {
  auto r = qtool("eval " + model() + " " + model() + " --tokens " + tokens() + " --chunks 2 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* key : {"\"model\"", "\"ppl_a\"", "\"ppl_b\"", "\"kld\":0", "\"top1_agreement\":1", "\"chunks\":2",
                          "\"scored\":126", "\"ppl_ratio\":1"})
    EXPECT_NE(r.out.find(key), std::string::npos) << key << " missing in " << r.out;
}

TEST(QtoolEvalTokens, TextReportNamesBothModels) {
  auto r = qtool("eval " + model() + " " + model() + " --tokens " + tokens() + " --chunks 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("perplexity"), std::string::npos);
  EXPECT_NE(r.out.find("top-1 agree"), std::string::npos);
}

TEST(QtoolEvalTokens, BadTokenFilesAreOneLineErrors) {
  const auto bad = std::filesystem::temp_directory_path() / "qk_eval_bad_tokens.i32";
  {
    std::ofstream f(bad, std::ios::binary);
    f << "abcde";  // 5 bytes: not a whole number of int32
  }
  auto r = qtool("eval " + model() + " " + model() + " --tokens " + bad.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("int32"), std::string::npos) << r.out;
  std::filesystem::remove(bad);
  auto missing = qtool("eval " + model() + " " + model() + " --tokens /nonexistent/tokens.i32");
  EXPECT_EQ(missing.code, 2) << missing.out;
  // A file that is not a Llama model cannot be scored.
  const std::string npy = qk::test::test_data("io/P4a_stories260K_L2_wq_W.npy").string();
  auto notllama = qtool("eval " + npy + " " + npy + " --tokens " + tokens());
  EXPECT_EQ(notllama.code, 1) << notllama.out;
  EXPECT_NE(notllama.out.find("llama"), std::string::npos) << notllama.out;
}
