// Text files as model input (qk/model/text.hpp): evaluation tokens as llama.cpp's perplexity tool makes them,
// calibration sequences with BOS first, and the errors for bad text.
#include "qk/model/text.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "qk/core/error.hpp"
#include "qk/model/token_file.hpp"
#include "test_util.hpp"

using namespace qk;
namespace fs = std::filesystem;

namespace {

const model::Tokenizer& stories() {
  static const auto t = model::Tokenizer::load(test::bundled_model("stories260K"));
  return t;
}

fs::path write(const std::string& name, const std::string& bytes) {
  const fs::path d = fs::temp_directory_path() / fmt::format("qk_text_{}", ::getpid());
  fs::create_directories(d);
  std::ofstream(d / name, std::ios::binary) << bytes;
  return d / name;
}

template <typename E, typename F>
std::string message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

// The ids llama.cpp's tokenizer gives the validation text, with the BOS the perplexity tool puts first.
TEST(Text, EvaluationTokensAreLlamaCppsWithBos) {
  QK_REQUIRE_REFERENCE(ref, "text/tinystories-valid.stories260K.i32");
  const auto ids = model::evaluation_tokens(stories(), test::bundled_text(), 256);
  const auto want = model::read_tokens(ref);
  ASSERT_EQ(ids.size(), want.size() + 1);
  EXPECT_EQ(ids[0], 1);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), ids.begin() + 1));
}

TEST(Text, CalibrationSequencesAreConsecutiveStretchesWithBosFirst) {
  const auto all = model::tokenize_file(stories(), test::bundled_train_text(), false);
  const auto seqs = model::text_sequences(stories(), test::bundled_train_text(), 10, 64);
  ASSERT_EQ(seqs.size(), 10u);
  for (size_t s = 0; s < seqs.size(); ++s) {
    ASSERT_EQ(seqs[s].size(), 64u);
    EXPECT_EQ(seqs[s][0], 1);
    EXPECT_TRUE(std::equal(seqs[s].begin() + 1, seqs[s].end(), all.begin() + static_cast<ptrdiff_t>(s * 63))) << s;
  }
  // at most what the text holds
  EXPECT_EQ(model::text_sequences(stories(), test::bundled_train_text(), 1 << 20, 128).size(), all.size() / 127);
}

TEST(Text, BadTextIsAFormatErrorNamingTheFile) {
  const fs::path empty = write("empty.txt", "");
  EXPECT_EQ(message<FormatError>([&] { model::read_text_file(empty); }), empty.string() + ": empty file: no text");
  const fs::path bad = write("bad.txt", "abc\xC3(");
  EXPECT_NE(message<FormatError>([&] { model::tokenize_file(stories(), bad); }).find(bad.string() + ": invalid UTF-8"),
            std::string::npos);
  const fs::path small = write("small.txt", "Once upon a time.");
  EXPECT_EQ(message<FormatError>([&] { model::evaluation_tokens(stories(), small, 128); }),
            small.string() + ": 6 tokens do not fill one chunk of 128 (--ctx)");
  EXPECT_NE(message<FormatError>([&] { model::text_sequences(stories(), small, 4, 128); })
                .find(small.string() + ": 5 tokens do not fill one calibration sequence of 128"),
            std::string::npos);
  EXPECT_THROW(model::read_text_file("/nonexistent/text.txt"), IoError);
}
