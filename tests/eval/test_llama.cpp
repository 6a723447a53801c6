// The Llama forward pass against the published figure for the bundled model: llama.cpp's perplexity tool gives
// 4.90 on stories260K's evaluation tokens (context 128, BOS first, second half scored); see
// examples/models/README.md.
#include "qk/eval/llama_model.hpp"

#include <gtest/gtest.h>

#include "qk/core/error.hpp"
#include "test_util.hpp"

using namespace qk;

namespace {
std::filesystem::path model_path() { return qk::test::test_data("../../examples/models/stories260K-f32.gguf"); }
std::filesystem::path tokens_path() { return qk::test::test_data("../../examples/models/stories260K.eval-tokens.i32"); }
}  // namespace

TEST(Llama, LoadsTheBundledModel) {
  auto m = eval::LlamaModel::load(model_path());
  EXPECT_EQ(m.config().dim, 64);
  EXPECT_EQ(m.config().hidden, 172);
  EXPECT_EQ(m.config().n_layers, 5);
  EXPECT_EQ(m.config().n_heads, 8);
  EXPECT_EQ(m.config().n_kv_heads, 4);
  EXPECT_EQ(m.config().vocab, 512);
}

TEST(Llama, PerplexityMatchesLlamaCpp) {
  auto m = eval::LlamaModel::load(model_path());
  auto tokens = eval::read_tokens(tokens_path());
  ASSERT_EQ(tokens.size(), 5120u);
  auto r = eval::perplexity(m, tokens);
  EXPECT_EQ(r.chunks, 40);
  EXPECT_EQ(r.scored, 40 * 63);
  EXPECT_NEAR(r.ppl, 4.90, 0.01);
}

TEST(Llama, ComparingAModelWithItselfCostsNothing) {
  auto m = eval::LlamaModel::load(model_path());
  auto m2 = eval::LlamaModel::load(model_path());
  auto tokens = eval::read_tokens(tokens_path());
  eval::PerplexityOptions o;
  o.max_chunks = 4;
  auto c = eval::compare(m, m2, tokens, o);
  EXPECT_NEAR(c.kld, 0.0, 1e-9);
  EXPECT_EQ(c.top1_agree, 1.0);
  EXPECT_DOUBLE_EQ(c.base.ppl, c.candidate.ppl);
}

TEST(Llama, CausalLogitsDoNotSeeTheFuture) {
  auto m = eval::LlamaModel::load(model_path());
  std::vector<int32_t> a = {1, 300, 350, 400, 450}, b = {1, 300, 350, 301, 480};
  auto la = m.forward(a), lb = m.forward(b);
  EXPECT_TRUE(la.topRows(3).isApprox(lb.topRows(3), 1e-6f));
  EXPECT_FALSE(la.row(3).isApprox(lb.row(3), 1e-3f));
}

TEST(Llama, BadInputsAreErrors) {
  auto m = eval::LlamaModel::load(model_path());
  std::vector<int32_t> bad = {1, 600};
  EXPECT_THROW(m.forward(bad), InvalidArgument);
  std::vector<int32_t> few(10, 5);
  EXPECT_THROW(eval::perplexity(m, few), InvalidArgument);
  EXPECT_THROW(eval::read_tokens("/nonexistent/tokens.i32"), IoError);
}
