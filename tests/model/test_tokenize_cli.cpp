// qtool tokenize and qtool convert end to end: output formats, the llama2.c checkpoint + tokenizer.bin path equal
// to the converted GGUF's, and bad input as one-line errors naming the file (exit 1) or usage errors (exit 2).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qk/io/gguf.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class CliText : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / fmt::format("qk-cli-text-{}-{}", ::getpid(), info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    tok512_ = qk::test::test_data("model/tok512.bin");
    tok105_ = qk::test::test_data("model/tok105.bin");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A small llama2.c checkpoint (dim 8, 1 layer) for a vocabulary of `vocab` tokens.
  fs::path checkpoint(const std::string& name, int32_t vocab) {
    const int32_t dim = 8, hidden = 4, layers = 1, heads = 2, kv = 1, seq = 2;
    const int64_t n = int64_t{vocab} * dim + layers * (2 * dim + 2 * dim * dim + 2 * (dim / heads * kv) * dim +
                                                       3 * hidden * dim) + dim + seq * (dim / heads);
    std::vector<float> w(static_cast<size_t>(n), 0.5f);
    const int32_t hdr[7] = {dim, hidden, layers, heads, kv, vocab, seq};
    const fs::path p = dir_ / name;
    std::ofstream o(p, std::ios::binary);
    o.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
    o.write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(w.size() * 4));
    return p;
  }
  fs::path file(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary) << content;
    return dir_ / name;
  }
  qk::test::RunResult qtool(const std::string& args) { return qk::test::run_qtool(args, dir_); }
  // Quoted for the shell (built with append: GCC 12 warns falsely on "'" + string + "'").
  static std::string q(const fs::path& p) {
    std::string s(1, '\'');
    s.append(p.string()).push_back('\'');
    return s;
  }
  // A failed run: exit 1, one line on stderr.
  static void expect_error(const qk::test::RunResult& r, const std::string& want) {
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_THAT(r.err, StartsWith("qtool: error: "));
    EXPECT_THAT(r.err, HasSubstr(want));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }

  fs::path dir_, tok512_, tok105_;
};

TEST_F(CliText, ConvertThenTokenizeFromTheGgufOrTheCheckpointAndItsTokenizer) {
  const fs::path bin = checkpoint("tiny.bin", 512), gguf = dir_ / "tiny.gguf";
  const auto c = qtool("convert " + q(bin) + " --tokenizer " + q(tok512_) + " -o " + q(gguf));
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_THAT(c.out, HasSubstr("12 tensors"));
  EXPECT_THAT(c.out, HasSubstr("vocabulary of 512 tokens"));

  const auto a = qtool("tokenize " + q(gguf) + " -p 'Once upon a time'");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_THAT(a.out, StartsWith("1\t<s>\n"));
  EXPECT_THAT(a.out, HasSubstr("\t\xE2\x96\x81Once\n"));
  const auto b = qtool("tokenize " + q(bin) + " --tokenizer " + q(tok512_) + " -p 'Once upon a time'");
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);

  const fs::path text = file("t.txt", "Hi.\nBye");
  const auto ids = qtool("tokenize " + q(gguf) + " -f " + q(text) + " --ids --no-bos");
  ASSERT_EQ(ids.code, 0) << ids.err;
  EXPECT_THAT(ids.out, ::testing::MatchesRegex("[0-9]+( [0-9]+)*\n"));
  EXPECT_THAT(qtool("tokenize " + q(gguf) + " -f " + q(text)).out, HasSubstr("\t<0x0A>\n"));  // byte fallback

  // "<s>" is text unless --parse-special.
  const auto plain = qtool("tokenize " + q(gguf) + " -p '<s>' --ids --no-bos");
  EXPECT_NE(plain.out, "1\n");
  EXPECT_EQ(qtool("tokenize " + q(gguf) + " -p '<s>' --ids --no-bos --parse-special").out, "1\n");

  // An existing output is kept without --force.
  expect_error(qtool("convert " + q(bin) + " --tokenizer " + q(tok512_) + " -o " + q(gguf)), gguf.string());
  EXPECT_EQ(qtool("convert " + q(bin) + " --tokenizer " + q(tok512_) + " -o " + q(gguf) + " --force").code, 0);
}

TEST_F(CliText, BadTextIsAOneLineErrorNamingTheFile) {
  const fs::path gguf = dir_ / "tiny.gguf";
  ASSERT_EQ(qtool("convert " + q(checkpoint("tiny.bin", 512)) + " --tokenizer " + q(tok512_) + " -o " + q(gguf)).code,
            0);
  const fs::path bad = file("bad.txt", "ok \xFF");
  expect_error(qtool("tokenize " + q(gguf) + " -f " + q(bad)), bad.string() + ": invalid UTF-8 at byte 3");
  const fs::path empty = file("empty.txt", "");
  expect_error(qtool("tokenize " + q(gguf) + " -f " + q(empty)), empty.string() + ": empty file");
  expect_error(qtool("tokenize " + q(gguf) + " -f " + q(dir_ / "missing.txt")), "missing.txt");

  // BabyLlama's vocabulary has no newline and no byte tokens.
  const fs::path baby = checkpoint("baby.bin", 105);
  const fs::path story = file("story.txt", "One day.\nThe end.");
  expect_error(qtool("tokenize " + q(baby) + " --tokenizer " + q(tok105_) + " -f " + q(story)),
               story.string() + ": byte 8: U+000A (line feed) cannot be encoded");

  // A GGUF without a vocabulary.
  const fs::path novocab = dir_ / "novocab.gguf";
  {
    qk::io::GgufWriter w(novocab);
    w.set("general.architecture", std::string("llama"));
    w.add_tensor("x", 0, {1});
    const float one = 1;
    w.write_tensor(std::as_bytes(std::span<const float>(&one, 1)));
    w.commit();
  }
  expect_error(qtool("tokenize " + q(novocab) + " -p hi"), novocab.string() + ": no vocabulary");
  // The wrong tokenizer for a checkpoint.
  expect_error(qtool("tokenize " + q(baby) + " --tokenizer " + q(tok512_) + " -p hi"),
               tok512_.string() + ": 512 tokens, but the model " + baby.string() + " has 105");
}

TEST_F(CliText, UsageErrors) {
  const fs::path bin = checkpoint("tiny.bin", 512);
  const auto no_tok = qtool("tokenize " + q(bin) + " -p hi");
  EXPECT_EQ(no_tok.code, 2);
  EXPECT_THAT(no_tok.err, HasSubstr("give its tokenizer.bin"));
  EXPECT_EQ(qtool("tokenize " + q(bin) + " --tokenizer " + q(tok512_)).code, 2);  // neither -p nor -f
  EXPECT_EQ(qtool("tokenize " + q(bin) + " --tokenizer " + q(tok512_) + " -p a -f b").code, 2);
  EXPECT_EQ(qtool("convert " + q(bin) + " -o x.gguf").code, 2);  // --tokenizer is required
  const auto mismatch = qtool("convert " + q(bin) + " --tokenizer " + q(tok105_) + " -o " + q(dir_ / "x.gguf"));
  EXPECT_EQ(mismatch.code, 1);
  EXPECT_THAT(mismatch.err, HasSubstr("105 tokens, but the checkpoint"));
  const auto not_ck = qtool("convert " + q(tok512_) + " --tokenizer " + q(tok512_) + " -o " + q(dir_ / "x.gguf"));
  EXPECT_EQ(not_ck.code, 1);
  EXPECT_THAT(not_ck.err, HasSubstr("not a llama2.c checkpoint"));
}

TEST_F(CliText, IdsOfTheValidationTextEqualLlamaCpps) {
  QK_REQUIRE_REFERENCE(gguf, "models/stories260K.gguf");
  QK_REQUIRE_REFERENCE(text, "text/tinystories-valid.joined.txt");
  QK_REQUIRE_REFERENCE(ref, "text/tinystories-valid.stories260K.i32");
  const auto r = qtool("tokenize " + q(gguf) + " -f " + q(text) + " --ids --no-bos");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto bytes = qk::test::read_bytes(ref);
  std::vector<int32_t> want(bytes.size() / 4);
  std::memcpy(want.data(), bytes.data(), bytes.size());
  std::istringstream in(r.out);
  std::vector<int32_t> got;
  for (int32_t x; in >> x;) got.push_back(x);
  EXPECT_EQ(got, want);
}

}  // namespace
