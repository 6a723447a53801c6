// Text generation (qk/model/generate.hpp): greedy continuations equal llama.cpp's llama-simple for both bundled
// models and three prompts (../shared/data/models/greedy/), sampling is seeded and honours top-k / top-p, and bad
// arguments are errors.
#include "qk/model/generate.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "qk/core/error.hpp"
#include "qk/model/llama_model.hpp"
#include "qk/model/tokenizer.hpp"
#include "test_util.hpp"

using namespace qk;

namespace {

const char* const kPrompts[] = {"Once upon a time", "Tom and Lily went to the park", "The little dog was sad because"};

struct Loaded {
  model::Tokenizer tok;
  model::LlamaModel m;
};

const Loaded& loaded(const std::string& name) {
  static std::map<std::string, Loaded> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    const auto path = test::bundled_model(name);
    it = cache.emplace(name, Loaded{model::Tokenizer::load(path), model::LlamaModel::load(path)}).first;
  }
  return it->second;
}

model::GenerateOptions greedy(int n = 64) {
  model::GenerateOptions o;
  o.max_tokens = n;
  o.temperature = 0;
  return o;
}

}  // namespace

class GreedyMatchesLlamaCpp : public ::testing::TestWithParam<std::pair<const char*, int>> {};

// llama-simple prints every prompt piece (the BOS as "<s>"), then each generated piece, then a newline.
TEST_P(GreedyMatchesLlamaCpp, SameText) {
  const auto [name, i] = GetParam();
  QK_REQUIRE_REFERENCE(ref, fmt::format("models/greedy/{}.{}.txt", name, i + 1));
  const Loaded& l = loaded(name);
  const auto prompt = l.tok.encode(kPrompts[i]);
  std::vector<int32_t> streamed;
  const auto ids = model::generate(l.m, prompt, greedy(), [&](int32_t id) {
    streamed.push_back(id);
    return true;
  });
  EXPECT_EQ(ids, streamed);
  EXPECT_EQ(ids.size(), 64u);
  std::string text;
  for (int32_t id : prompt) text += l.tok.piece(id, /*special=*/true);
  for (int32_t id : ids) text += l.tok.piece(id);
  EXPECT_EQ(text + "\n", test::slurp(ref));
}

INSTANTIATE_TEST_SUITE_P(BothModels, GreedyMatchesLlamaCpp,
                         ::testing::Values(std::pair{"stories260K", 0}, std::pair{"stories260K", 1},
                                           std::pair{"stories260K", 2}, std::pair{"babyllama", 0},
                                           std::pair{"babyllama", 1}, std::pair{"babyllama", 2}),
                         [](const auto& info) {
                           return fmt::format("{}_{}", info.param.first, info.param.second + 1);
                         });

TEST(Generate, SamplingIsSeeded) {
  const Loaded& l = loaded("stories260K");
  const auto prompt = l.tok.encode("Once upon a time");
  model::GenerateOptions o;
  o.max_tokens = 40;
  o.eos = -1;
  o.seed = 7;
  const auto a = model::generate(l.m, prompt, o), b = model::generate(l.m, prompt, o);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 40u);
  o.seed = 8;
  EXPECT_NE(model::generate(l.m, prompt, o), a);
  // The callback stops it.
  int seen = 0;
  EXPECT_EQ(model::generate(l.m, prompt, o, [&](int32_t) { return ++seen < 3; }).size(), 3u);
}

TEST(Generate, TopKOneAndTinyTopPAreGreedy) {
  const Loaded& l = loaded("babyllama");
  const auto prompt = l.tok.encode("The little dog");
  const auto g = model::generate(l.m, prompt, greedy(30));
  model::GenerateOptions o = greedy(30);
  o.temperature = 1.5f;
  o.top_k = 1;
  EXPECT_EQ(model::generate(l.m, prompt, o), g);
  o.top_k = 0;
  o.top_p = 1e-6f;
  EXPECT_EQ(model::generate(l.m, prompt, o), g);
}

TEST(Generate, ChooseTokenKeepsToTopK) {
  const std::vector<float> z = {0.0f, 5.0f, 4.9f, -1.0f, 4.8f};
  model::GenerateOptions o;
  o.temperature = 100.0f;  // nearly uniform over what top-k keeps
  o.top_k = 2;
  o.top_p = 1.0f;
  uint64_t state = 3;
  for (int i = 0; i < 200; ++i) {
    const int32_t t = model::choose_token(z, o, state);
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
  o.temperature = 0;
  EXPECT_EQ(model::choose_token(z, o, state), 1);
  const std::vector<float> tie = {1.0f, 3.0f, 3.0f};
  EXPECT_EQ(model::choose_token(tie, o, state), 1);  // the lowest id among equal logits
}

TEST(Generate, StopsAtTheContextAndRefusesLongPrompts) {
  const Loaded& l = loaded("stories260K");
  const int ctx = l.m.config().context;
  ASSERT_EQ(ctx, 128);
  std::vector<int32_t> prompt(static_cast<size_t>(ctx - 4), 300);
  prompt[0] = 1;
  auto o = greedy(64);
  o.eos = -1;
  EXPECT_EQ(model::generate(l.m, prompt, o).size(), 5u);  // positions 124..128: the last one is not fed back
  prompt.resize(static_cast<size_t>(ctx), 300);
  o.source = "m.gguf";
  try {
    model::generate(l.m, prompt, o);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("m.gguf: the prompt's 128 tokens leave no room"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(model::generate(l.m, std::vector<int32_t>{}, o), ShapeError);
  o.top_p = 0;
  EXPECT_THROW(model::generate(l.m, std::vector<int32_t>{1}, o), InvalidArgument);
}
