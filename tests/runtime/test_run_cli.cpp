// qtool run: the quantized runtime prints what qtool generate prints from the same file (greedy, both bundled models
// at q4_0 and q8_0), on any thread count, says on stderr how many weights ran quantized, and bad input is a one-line
// error (exit 1) or a usage error (exit 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return fmt::format("'{}'", p.string()); }

class Scratch {
 public:
  Scratch() : dir_(fs::temp_directory_path() / fmt::format("qk_run_cli_{}", ::getpid())) {
    fs::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
};

}  // namespace

TEST(QtoolRun, GreedyEqualsGenerateOnQuantizedFiles) {
  Scratch s;
  for (const std::string name : {"stories260K", "babyllama"}) {
    for (const std::string type : {"q4_0", "q8_0"}) {
      const fs::path out = s.dir() / (name + "-" + type + ".gguf");
      const auto qr = qk::test::run_qtool(fmt::format("quantize {} -o {} --type {} --quiet --force",
                                                      q(qk::test::bundled_model(name)), q(out), type));
      ASSERT_EQ(qr.code, 0) << qr.err;
      const std::string args = fmt::format("{} -p 'Tom and Lily went to the park' -n 32 --temp 0", q(out));
      const auto want = qk::test::run_qtool("generate " + args);
      ASSERT_EQ(want.code, 0) << want.err;
      const auto got = qk::test::run_qtool("run " + args + " -t 1");
      ASSERT_EQ(got.code, 0) << got.err;
      EXPECT_EQ(got.out, want.out) << name << " " << type;
      EXPECT_NE(got.err.find("weights quantized"), std::string::npos) << got.err;
      const auto two = qk::test::run_qtool("run " + args + " -t 2 -q");
      ASSERT_EQ(two.code, 0) << two.err;
      EXPECT_EQ(two.out, got.out);
      EXPECT_TRUE(two.err.empty()) << two.err;
      const auto packed = qk::test::run_qtool("run " + args + " --repack-q4_0 -q");
      ASSERT_EQ(packed.code, 0) << packed.err;
      EXPECT_EQ(packed.out, got.out);
    }
  }
}

TEST(QtoolRun, BadInput) {
  const auto model = qk::test::bundled_model("stories260K");
  std::string lng;
  for (int i = 0; i < 200; ++i) lng += "dog ";
  const auto r = qk::test::run_qtool(fmt::format("run {} -p '{}'", q(model), lng));
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find(model.string() + ": the prompt's"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(qk::test::run_qtool(fmt::format("run {}", q(model))).code, 2);
  EXPECT_EQ(qk::test::run_qtool(fmt::format("run {} -p hi -t -1", q(model))).code, 2);
}
