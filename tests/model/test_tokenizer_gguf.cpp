// Tokenizer from GGUF metadata, and conformance: on the bundled TinyStories validation text the ids equal
// llama.cpp's (llama-tokenize --ids --no-bos on the GGUF files llama.cpp's converter made), for both models and
// both vocabulary sources (the GGUF files and the llama2.c tokenizer.bin files).
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qk/core/error.hpp"
#include "qk/io/gguf.hpp"
#include "qk/model/tokenizer.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
using qk::io::MetaArray;
using qk::io::MetaValue;
using qk::model::Tokenizer;
using qk::model::TokenType;
using ::testing::HasSubstr;

class TokenizerGguf : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("qk-tok-gguf-{}", ::getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A GGUF with one tensor and the given metadata.
  fs::path write(const std::string& name, const std::vector<std::pair<std::string, MetaValue>>& meta) {
    const fs::path p = dir_ / name;
    qk::io::GgufWriter w(p);
    for (const auto& [k, v] : meta) w.set(k, v);
    w.add_tensor("x", 0, {1});
    const float one = 1.0f;
    w.write_tensor(std::as_bytes(std::span<const float>(&one, 1)));
    w.commit();
    return p;
  }
  static MetaValue strings(const std::vector<std::string>& s) {
    auto a = std::make_shared<MetaArray>();
    a->element_type = 8;
    for (const auto& x : s) a->values.emplace_back(x);
    return a;
  }
  static MetaValue floats(const std::vector<float>& s) {
    auto a = std::make_shared<MetaArray>();
    a->element_type = 6;
    for (float x : s) a->values.emplace_back(x);
    return a;
  }
  static MetaValue ints(const std::vector<int32_t>& s) {
    auto a = std::make_shared<MetaArray>();
    a->element_type = 5;
    for (int32_t x : s) a->values.emplace_back(x);
    return a;
  }
  static std::string error_of(const fs::path& p) {
    try {
      Tokenizer::load(p);
    } catch (const qk::FormatError& e) {
      return e.what();
    }
    return "(no FormatError)";
  }
  fs::path dir_;
};

TEST_F(TokenizerGguf, ReadsPiecesScoresTypesSpecialsAndFlags) {
  const fs::path p = write("v.gguf", {{"tokenizer.ggml.model", std::string("llama")},
                                      {"tokenizer.ggml.tokens", strings({"<unk>", "<s>", "</s>", "a", "b", "ab"})},
                                      {"tokenizer.ggml.scores", floats({0, 0, 0, -1, -2, 5})},
                                      {"tokenizer.ggml.token_type", ints({2, 3, 3, 1, 1, 1})},
                                      {"tokenizer.ggml.bos_token_id", uint32_t{2}},
                                      {"tokenizer.ggml.eos_token_id", uint32_t{99}},  // out of range: default 2
                                      {"tokenizer.ggml.add_space_prefix", false},
                                      {"tokenizer.ggml.add_eos_token", true}});
  const Tokenizer t = Tokenizer::load(p);
  EXPECT_EQ(t.size(), 6);
  EXPECT_EQ(t.token(5).score, 5.0f);
  EXPECT_EQ(t.token(0).type, TokenType::Unknown);
  EXPECT_EQ(t.bos(), 2);
  EXPECT_EQ(t.eos(), 2);
  EXPECT_EQ(t.encode("abab"), (std::vector<int32_t>{2, 5, 5, 2}));  // no dummy prefix; BOS and EOS added
  EXPECT_EQ(t.source(), p.string());
}

TEST_F(TokenizerGguf, FileWithoutVocabularyIsAnErrorNamingIt) {
  const fs::path none = write("none.gguf", {{"general.architecture", std::string("llama")}});
  EXPECT_THAT(error_of(none), HasSubstr(none.string() + ": no vocabulary"));
  const fs::path gpt2 = write("gpt2.gguf", {{"tokenizer.ggml.model", std::string("gpt2")},
                                            {"tokenizer.ggml.tokens", strings({"a"})}});
  EXPECT_THAT(error_of(gpt2), HasSubstr("'gpt2' is not supported"));
  const fs::path bad = write("bad.gguf", {{"tokenizer.ggml.model", std::string("llama")},
                                          {"tokenizer.ggml.tokens", strings({"a", "b"})},
                                          {"tokenizer.ggml.scores", floats({0})}});
  EXPECT_THAT(error_of(bad), HasSubstr("1 scores for 2 tokens"));
  const fs::path ty = write("ty.gguf", {{"tokenizer.ggml.model", std::string("llama")},
                                        {"tokenizer.ggml.tokens", ints({1, 2})}});
  EXPECT_THAT(error_of(ty), HasSubstr("tokenizer.ggml.tokens is not an array of"));
}

// ---------------------------------------------------------------- conformance with llama.cpp

// llama.cpp's ids: little-endian int32.
std::vector<int32_t> reference_ids(const fs::path& p) {
  const auto b = qk::test::read_bytes(p);
  std::vector<int32_t> ids(b.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), b.data(), ids.size() * 4);
  return ids;
}

struct Case {
  const char* model;  // file stem in ../shared/data/models
  const char* tok;    // its tokenizer.bin
};

class Conformance : public ::testing::TestWithParam<Case> {};

TEST_P(Conformance, IdsEqualLlamaCppOnTheValidationTextFromGgufAndTokenizerBin) {
  const Case c = GetParam();
  QK_REQUIRE_REFERENCE(text_path, "text/tinystories-valid.joined.txt");
  QK_REQUIRE_REFERENCE(ids_path, fmt::format("text/tinystories-valid.{}.i32", c.model));
  QK_REQUIRE_REFERENCE(gguf, fmt::format("models/{}.gguf", c.model));
  QK_REQUIRE_REFERENCE(bin, fmt::format("models/{}", c.tok));
  const std::string text = qk::test::slurp(text_path);
  const auto want = reference_ids(ids_path);
  ASSERT_FALSE(want.empty());
  for (const fs::path& vocab : {gguf, bin}) {
    SCOPED_TRACE(vocab.string());
    const Tokenizer t = Tokenizer::load(vocab);
    const auto got = t.encode(text, {.add_special = false});
    ASSERT_EQ(got.size(), want.size());
    size_t first_diff = got.size();
    for (size_t i = 0; i < got.size() && first_diff == got.size(); ++i)
      if (got[i] != want[i]) first_diff = i;
    EXPECT_EQ(first_diff, got.size()) << "first difference at id " << first_diff;
    EXPECT_EQ(t.decode(got), text);  // and back
  }
}

TEST_P(Conformance, TokenizerBinGivesTheVocabularyOfTheConvertedGguf) {
  const Case c = GetParam();
  QK_REQUIRE_REFERENCE(gguf, fmt::format("models/{}.gguf", c.model));
  QK_REQUIRE_REFERENCE(bin, fmt::format("models/{}", c.tok));
  const Tokenizer a = Tokenizer::load(gguf), b = Tokenizer::load(bin);
  ASSERT_EQ(a.size(), b.size());
  for (int32_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a.token(i).text, b.token(i).text) << i;
    EXPECT_EQ(a.token(i).score, b.token(i).score) << i;
    EXPECT_EQ(a.token(i).type, b.token(i).type) << i;
  }
  EXPECT_EQ(a.bos(), b.bos());
  EXPECT_EQ(a.eos(), b.eos());
  EXPECT_EQ(a.unk(), b.unk());
}

INSTANTIATE_TEST_SUITE_P(Models, Conformance,
                         ::testing::Values(Case{"stories260K", "tok512.bin"}, Case{"babyllama", "tok105.bin"}),
                         [](const auto& info) { return std::string(info.param.model); });

TEST(TokenizerReference, BabyLlamaCannotEncodeTheStoriesWithTheirNewlines) {
  QK_REQUIRE_REFERENCE(text_path, "text/tinystories-valid.txt");
  const Tokenizer t = Tokenizer::from_llama2c(qk::test::test_data("model/tok105.bin"));
  const std::string text = qk::test::slurp(text_path);
  const size_t nl = text.find('\n');
  try {
    t.encode(text, {.source = "tinystories-valid.txt"});
    FAIL() << "no error";
  } catch (const qk::FormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr(fmt::format("tinystories-valid.txt: byte {}: U+000A", nl)));
  }
}

}  // namespace
