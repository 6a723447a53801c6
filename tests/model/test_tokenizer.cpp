// qk::model::Tokenizer: SentencePiece BPE as llama.cpp's SPM tokenizer. The merge rule is checked against a
// brute-force oracle on random vocabularies; the bundled vocabularies against llama.cpp's own ids (conformance test
// in test_tokenizer_reference.cpp); bad input against the errors it must give.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qk/core/error.hpp"
#include "qk/model/tokenizer.hpp"
#include "test_util.hpp"

namespace {

using qk::model::DecodeOptions;
using qk::model::EncodeOptions;
using qk::model::TokenPiece;
using qk::model::Tokenizer;
using qk::model::TokenType;
using qk::model::Vocabulary;
using ::testing::HasSubstr;

constexpr EncodeOptions kNoBos{.add_special = false};

const Tokenizer& tok512() {
  static const Tokenizer t = Tokenizer::from_llama2c(qk::test::test_data("model/tok512.bin"));
  return t;
}
const Tokenizer& tok105() {
  static const Tokenizer t = Tokenizer::from_llama2c(qk::test::test_data("model/tok105.bin"));
  return t;
}

std::vector<std::string> pieces(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> p;
  for (int32_t id : ids) p.push_back(t.token(id).text);
  return p;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const qk::FormatError& e) {
    return e.what();
  }
  return "(no FormatError)";
}

// A vocabulary of the given pieces (no specials, no byte tokens, no dummy prefix unless asked).
Vocabulary small_vocab(const std::vector<std::pair<std::string, float>>& p, bool prefix = false) {
  Vocabulary v;
  for (const auto& [text, score] : p) v.tokens.push_back({text, score, TokenType::Normal});
  v.bos = v.eos = v.unk = -1;
  v.add_bos = false;
  v.add_space_prefix = prefix;
  return v;
}

// The merge rule stated directly: the text (with the dummy prefix when asked, spaces as '▁') split into characters;
// while some adjacent pair concatenates to a piece, merge the pair whose piece has the highest score, the leftmost
// among equals. O(n^2), obviously right.
std::vector<std::string> oracle(const Vocabulary& v, const std::string& text) {
  std::vector<std::string> s;
  for (char c : (v.add_space_prefix && !text.empty() ? " " : "") + text) {
    if (c == ' ') s.emplace_back("\xE2\x96\x81");
    else s.emplace_back(1, c);
  }
  auto score_of = [&](const std::string& p, float& sc) {
    for (const auto& t : v.tokens)
      if (t.text == p) {
        sc = t.score;
        return true;
      }
    return false;
  };
  for (;;) {
    int best = -1;
    float best_score = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      float sc;
      if (score_of(s[i] + s[i + 1], sc) && (best < 0 || sc > best_score)) {
        best = static_cast<int>(i);
        best_score = sc;
      }
    }
    if (best < 0) return s;
    s[static_cast<size_t>(best)] += s[static_cast<size_t>(best) + 1];
    s.erase(s.begin() + best + 1);
  }
}

TEST(Tokenizer, MergesHighestScoreFirstAndLeftmostAmongEquals) {
  // "abc": both "ab" and "bc" are pieces.
  const Tokenizer tie(small_vocab({{"a", 0}, {"b", 0}, {"c", 0}, {"ab", 1}, {"bc", 1}}));
  EXPECT_THAT(pieces(tie, tie.encode("abc", kNoBos)), ::testing::ElementsAre("ab", "c"));
  const Tokenizer right(small_vocab({{"a", 0}, {"b", 0}, {"c", 0}, {"ab", 1}, {"bc", 2}}));
  EXPECT_THAT(pieces(right, right.encode("abc", kNoBos)), ::testing::ElementsAre("a", "bc"));
  // A merged pair merges again: "abc" becomes a piece only through "ab" + "c".
  const Tokenizer chain(small_vocab({{"a", 0}, {"b", 0}, {"c", 0}, {"ab", 1}, {"abc", -5}}));
  EXPECT_THAT(pieces(chain, chain.encode("abcab", kNoBos)), ::testing::ElementsAre("abc", "ab"));
}

TEST(Tokenizer, EqualsTheBruteForceRuleOnRandomVocabularies) {
  // Pieces over {a, b, ▁} with random scores (many ties). In even trials '▁' only starts pieces, as in vocabularies
  // trained with whitespace splitting (the tokenizer then merges word by word); in odd trials it may be anywhere.
  auto g = qk::test::rng(12);
  const std::string alphabet[3] = {"a", "b", "\xE2\x96\x81"};
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<std::pair<std::string, float>> p = {{"a", 0}, {"b", 0}, {alphabet[2], 0}};
    std::uniform_int_distribution<int> len(2, 5), ch(0, 2), sc(-3, 3);
    const int n = 3 + trial % 14;
    for (int k = 0; k < n; ++k) {
      std::string s;
      for (int i = len(g); i > 0; --i) {
        const int c = ch(g);
        s += (c == 2 && trial % 2 == 0 && !s.empty()) ? alphabet[0] : alphabet[c];
      }
      if (std::none_of(p.begin(), p.end(), [&](const auto& e) { return e.first == s; }))
        p.push_back({s, static_cast<float>(sc(g))});
    }
    const Vocabulary v = small_vocab(p, trial % 4 < 2);
    const Tokenizer t(v);
    std::string text;
    for (int i = std::uniform_int_distribution<int>(0, 40)(g); i > 0; --i) text += "ab "[ch(g)];
    ASSERT_EQ(pieces(t, t.encode(text, kNoBos)), oracle(v, text)) << "trial " << trial << " text '" << text << "'";
  }
}

TEST(Tokenizer, DummyPrefixAndSpaces) {
  // stories260K: the first token of "Once upon a time" is "▁Once"; for the character-level tok105 a lone "▁".
  const auto ids = tok512().encode("Once upon a time");
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);  // BOS
  EXPECT_EQ(tok512().token(ids[1]).text, "\xE2\x96\x81Once");
  const auto c = tok105().encode("Once", kNoBos);
  EXPECT_THAT(pieces(tok105(), c), ::testing::ElementsAre("\xE2\x96\x81", "O", "n", "c", "e"));
  // Without the dummy prefix (tokenizer.ggml.add_space_prefix = false) the text is taken as it is.
  Vocabulary v = tok105().vocabulary();
  v.add_space_prefix = false;
  EXPECT_THAT(pieces(Tokenizer(v), Tokenizer(v).encode("a b", kNoBos)),
              ::testing::ElementsAre("a", "\xE2\x96\x81", "b"));
}

TEST(Tokenizer, EmptyTextGivesNoIdsOrBosAlone) {
  EXPECT_TRUE(tok512().encode("", kNoBos).empty());
  EXPECT_EQ(tok512().encode(""), std::vector<int32_t>{1});
  EXPECT_EQ(tok512().decode(std::vector<int32_t>{}), "");
}

TEST(Tokenizer, ByteFallbackSpellsUnknownCharactersAndDecodesBack) {
  // tok512 has <0x00>..<0xFF>; "✓" (E2 9C 93) and a newline are no pieces.
  const std::string text = "a\n\xE2\x9C\x93!";
  const auto ids = tok512().encode(text, kNoBos);
  const auto p = pieces(tok512(), ids);
  EXPECT_THAT(p, ::testing::Contains("<0x0A>"));
  EXPECT_THAT(p, ::testing::IsSupersetOf({"<0xE2>", "<0x9C>", "<0x93>"}));
  EXPECT_EQ(tok512().decode(ids), text);
  EXPECT_TRUE(tok512().has_byte_fallback());
  EXPECT_FALSE(tok105().has_byte_fallback());
  EXPECT_EQ(tok512().piece(tok512().find("<0x0A>")), "\n");
}

TEST(Tokenizer, DecodeRoundTripsAndKeepsTheSpaceAfterBosAsLlamaCpp) {
  const std::string text = "Lily and Tom  played. \"Look!\" she said, 3 + 4 = 7; naïve café.";
  for (const Tokenizer* t : {&tok512(), &tok105()}) {
    SCOPED_TRACE(t->source());
    std::string covered = text;
    if (t == &tok105()) covered = "Lily and Tom played. \"Look!\" she said.";
    EXPECT_EQ(t->decode(t->encode(covered, kNoBos)), covered);
    const auto with_bos = t->encode(covered);
    EXPECT_EQ(t->decode(with_bos), " " + covered);
    EXPECT_EQ(t->decode(with_bos, DecodeOptions{.special = true}), "<s> " + covered);
    EXPECT_EQ(t->decode(with_bos, DecodeOptions{.remove_special = true}), " " + covered);
  }
  EXPECT_EQ(tok512().piece(1), "");
  EXPECT_EQ(tok512().piece(1, true), "<s>");
  EXPECT_EQ(tok512().piece(0), "");
  EXPECT_EQ(tok512().piece(tok512().find("\xE2\x96\x81Once")), " Once");
  EXPECT_THROW(tok512().piece(512), qk::InvalidArgument);
  EXPECT_THROW(tok512().decode(std::vector<int32_t>{5, -1}), qk::InvalidArgument);
}

TEST(Tokenizer, CharacterTheVocabularyCannotSpellIsAnErrorNamingItAndItsOffset) {
  // tok105 has no newline and no byte tokens (llama.cpp aborts here).
  const std::string msg = error_of([] { tok105().encode("Hi.\nBye", {.source = "story.txt"}); });
  EXPECT_THAT(msg, HasSubstr("story.txt"));
  EXPECT_THAT(msg, HasSubstr("byte 3"));
  EXPECT_THAT(msg, HasSubstr("U+000A"));
  EXPECT_THAT(msg, HasSubstr("no byte tokens"));
  const std::string e2 = error_of([] { tok105().encode("M\xC3\xBCller!"); });
  EXPECT_THAT(e2, HasSubstr("byte 1"));
  EXPECT_THAT(e2, HasSubstr("U+00FC '\xC3\xBC'"));
}

TEST(Tokenizer, InvalidUtf8IsAnErrorNamingTheByteOffset) {
  const std::vector<std::pair<std::string, size_t>> bad = {
      {"ab\xFF", 2},          {"x\xC3", 1},                // stray byte, truncated
      {"\xC0\xAF", 0},        {"ok \xE0\x80\xAF", 3},      // overlong
      {"\xED\xA0\x80", 0},    {"a\xF4\x90\x80\x80", 1},    // surrogate, above U+10FFFF
      {"a\x80", 1},                                        // lone continuation byte
  };
  for (const auto& [text, at] : bad) {
    const std::string msg = error_of([&] { tok512().encode(text, {.source = "in.txt"}); });
    EXPECT_THAT(msg, HasSubstr("in.txt: invalid UTF-8 at byte " + std::to_string(at))) << msg;
  }
  // The longest valid forms pass.
  EXPECT_NO_THROW(tok512().encode("\xF4\x8F\xBF\xBF \xEF\xBF\xBD \xF0\x90\x80\x80"));
}

TEST(Tokenizer, VocabularyChecks) {
  Vocabulary dup = small_vocab({{"a", 0}, {"b", 0}, {"a", 1}});
  EXPECT_THAT(error_of([&] { Tokenizer(dup, "v.gguf"); }), HasSubstr("v.gguf: tokens 0 and 2 are both 'a'"));
  Vocabulary byte = small_vocab({{"a", 0}, {"<0xZZ>", 0}});
  byte.tokens[1].type = TokenType::Byte;
  EXPECT_THAT(error_of([&] { Tokenizer(byte, "v"); }), HasSubstr("not of the form <0xNN>"));
  Vocabulary bos = small_vocab({{"a", 0}});
  bos.bos = 3;
  EXPECT_THAT(error_of([&] { Tokenizer(bos, "v"); }), HasSubstr("BOS id 3"));
  EXPECT_THAT(error_of([] { Tokenizer(Vocabulary{}, "v"); }), HasSubstr("no tokens"));
  // Empty pieces get llama.cpp's placeholder name and never match text.
  Vocabulary empty = small_vocab({{"a", 0}, {"", 0}});
  EXPECT_EQ(Tokenizer(empty).token(1).text, "[EMPTY_1]");
}

std::vector<int32_t> i32_file(const std::string& rel) {
  const auto b = qk::test::read_bytes(qk::test::test_data(rel));
  std::vector<int32_t> ids(b.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), b.data(), ids.size() * 4);
  return ids;
}

// llama.cpp's own ids (llama-tokenize, tests/data/model/README.md) for texts that exercise byte fallback, odd
// spaces and special-token text, with and without parse_special.
TEST(Tokenizer, EqualsLlamaCppOnEdgeCases) {
  const std::string edge = qk::test::slurp(qk::test::test_data("model/edge.txt"));
  EXPECT_EQ(tok512().encode(edge, kNoBos), i32_file("model/edge.stories260K.i32"));
  EXPECT_EQ(tok512().encode(edge, {.parse_special = true}), i32_file("model/edge.stories260K.special.i32"));
  std::string spaced;  // the text's literal '▁' (U+2581) is SentencePiece's space and decodes as one
  for (size_t i = 0; i < edge.size(); ++i) {
    if (edge.compare(i, 3, "\xE2\x96\x81") == 0) {
      spaced += ' ';
      i += 2;
    } else {
      spaced += edge[i];
    }
  }
  EXPECT_EQ(tok512().decode(tok512().encode(edge, kNoBos)), spaced);
  const std::string edge105 = qk::test::slurp(qk::test::test_data("model/edge105.txt"));
  EXPECT_EQ(tok105().encode(edge105, kNoBos), i32_file("model/edge105.babyllama.i32"));
  EXPECT_EQ(tok105().encode(edge105, {.parse_special = true}), i32_file("model/edge105.babyllama.special.i32"));
}

TEST(Tokenizer, UserDefinedPiecesAreAlwaysMatchedFirstAndTheTextAfterThemGetsTheDummySpace) {
  Vocabulary v = small_vocab({{"\xE2\x96\x81", 0}, {"a", 0}, {"b", 0}, {"<x>", 0}, {"\xE2\x96\x81" "a", 1}}, true);
  v.tokens[3].type = TokenType::UserDefined;
  const Tokenizer t(v);
  EXPECT_THAT(pieces(t, t.encode("a<x>b", kNoBos)), ::testing::ElementsAre("\xE2\x96\x81" "a", "<x>", "\xE2\x96\x81", "b"));
  EXPECT_THAT(pieces(t, t.encode("<x>", kNoBos)), ::testing::ElementsAre("<x>"));
  EXPECT_EQ(t.piece(3), "<x>");  // user-defined pieces print as they are
}

TEST(Tokenizer, Llama2cTokenizerBinAsTheConverterReadsIt) {
  const Tokenizer& t = tok512();
  EXPECT_EQ(t.size(), 512);
  EXPECT_EQ(t.token(0).text, "<unk>");
  EXPECT_EQ(t.token(0).type, TokenType::Unknown);
  EXPECT_EQ(t.token(1).text, "<s>");
  EXPECT_EQ(t.token(2).type, TokenType::Control);
  EXPECT_EQ(t.token(3).text, "<0x00>");
  EXPECT_EQ(t.token(3).type, TokenType::Byte);
  EXPECT_EQ(t.token(259).text, "\xE2\x96\x81t");  // " t" with the space escaped
  EXPECT_EQ(t.token(260).score, -1.0f);
  EXPECT_EQ(t.bos(), 1);
  EXPECT_EQ(t.eos(), 2);
  EXPECT_EQ(tok105().size(), 105);
}

TEST(Tokenizer, MalformedTokenizerBinIsAFormatErrorNamingTheFile) {
  const auto good = qk::test::read_bytes(qk::test::test_data("model/tok105.bin"));
  auto as_bytes = [](const std::vector<char>& c) {
    return std::span<const std::byte>(reinterpret_cast<const std::byte*>(c.data()), c.size());
  };
  const std::vector<char> cut(good.begin(), good.end() - 2);
  EXPECT_THAT(error_of([&] { qk::model::read_llama2c_vocabulary(as_bytes(cut), "t.bin"); }),
              HasSubstr("t.bin: truncated"));
  std::vector<char> long_len = good;
  const int32_t huge = 1000;
  std::memcpy(long_len.data() + 8, &huge, 4);  // token 0's length
  EXPECT_THAT(error_of([&] { qk::model::read_llama2c_vocabulary(as_bytes(long_len), "t.bin"); }),
              HasSubstr("t.bin: token 0"));
  const std::vector<char> tiny = {1, 0};
  EXPECT_THAT(error_of([&] { qk::model::read_llama2c_vocabulary(as_bytes(tiny), "t.bin"); }), HasSubstr("t.bin"));
  EXPECT_THROW(Tokenizer::from_llama2c("/nonexistent/tok.bin"), qk::IoError);
}

}  // namespace
