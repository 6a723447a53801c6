// The Llama forward pass against llama.cpp's figure for the bundled stories260K: its perplexity tool gives 3.5786 on
// the bundled validation text (context 256, BOS first, second half scored; ../shared/data/models/llamacpp-refs.json).
#include "qk/model/llama_model.hpp"
#include "qk/model/token_file.hpp"
#include "qk/model/sample.hpp"
#include "qk/model/perplexity.hpp"
#include "qk/model/text.hpp"
#include "qk/model/tokenizer.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <limits>
#include <span>

#include "qk/core/error.hpp"
#include "test_util.hpp"

using namespace qk;

namespace {
std::filesystem::path model_path() { return qk::test::bundled_model("stories260K"); }
// The bundled validation text as llama.cpp's perplexity tool tokenizes it (BOS first).
std::vector<int32_t> eval_tokens() {
  return model::tokenize_file(model::Tokenizer::load(model_path()), qk::test::bundled_text());
}
}  // namespace

TEST(Llama, LoadsTheBundledModel) {
  auto m = model::LlamaModel::load(model_path());
  EXPECT_EQ(m.config().dim, 64);
  EXPECT_EQ(m.config().hidden, 172);
  EXPECT_EQ(m.config().n_layers, 5);
  EXPECT_EQ(m.config().n_heads, 8);
  EXPECT_EQ(m.config().n_kv_heads, 4);
  EXPECT_EQ(m.config().vocab, 512);
}

TEST(Llama, PerplexityMatchesLlamaCpp) {
  auto m = model::LlamaModel::load(model_path());
  auto tokens = eval_tokens();
  ASSERT_EQ(tokens.size(), 39000u);  // llama.cpp's 38,999 ids and the BOS
  model::PerplexityOptions o;
  o.context = 256;
  auto r = model::perplexity(m, tokens, o);
  EXPECT_EQ(r.chunks, 152);
  EXPECT_EQ(r.scored, 152 * 127);
  EXPECT_NEAR(r.ppl, 3.5786, 0.005 * 3.5786);
}

TEST(Llama, ComparingAModelWithItselfCostsNothing) {
  auto m = model::LlamaModel::load(model_path());
  auto m2 = model::LlamaModel::load(model_path());
  auto tokens = eval_tokens();
  model::PerplexityOptions o;
  o.max_chunks = 4;
  auto c = model::compare(m, m2, tokens, o);
  EXPECT_NEAR(c.kld, 0.0, 1e-9);
  EXPECT_EQ(c.top1_agree, 1.0);
  EXPECT_DOUBLE_EQ(c.base.ppl, c.candidate.ppl);
}

TEST(Llama, CausalLogitsDoNotSeeTheFuture) {
  auto m = model::LlamaModel::load(model_path());
  std::vector<int32_t> a = {1, 300, 350, 400, 450}, b = {1, 300, 350, 301, 480};
  auto la = m.forward(a), lb = m.forward(b);
  EXPECT_TRUE(la.topRows(3).isApprox(lb.topRows(3), 1e-6f));
  EXPECT_FALSE(la.row(3).isApprox(lb.row(3), 1e-3f));
}

TEST(Llama, BadInputsAreErrors) {
  auto m = model::LlamaModel::load(model_path());
  std::vector<int32_t> bad = {1, 600};
  EXPECT_THROW(m.forward(bad), InvalidArgument);
  std::vector<int32_t> few(10, 5);
  EXPECT_THROW(model::perplexity(m, few), InvalidArgument);
  EXPECT_THROW(model::read_tokens("/nonexistent/tokens.i32"), IoError);
}

// The observer sees the four linear inputs of every block in order, with the right widths, and they are the inputs:
// the block's own products of them reproduce what the pass computes next.
TEST(Llama, ObserverSeesEveryLinearInput) {
  auto m = model::LlamaModel::load(model_path());
  struct Seen final : model::ForwardObserver {
    std::vector<std::pair<int, model::LinearInput>> calls;
    std::vector<model::RowMatrixXf> xs;
    void on_linear_input(int layer, model::LinearInput in, const model::RowMatrixXf& x) override {
      calls.emplace_back(layer, in);
      xs.push_back(x);
    }
  } seen;
  std::vector<int32_t> t = {1, 300, 350, 400, 450, 17, 90};
  const auto plain = m.forward(t);
  const auto observed = m.forward(t, &seen);
  EXPECT_TRUE(plain == observed);
  ASSERT_EQ(seen.calls.size(), 5u * 4u);
  for (size_t i = 0; i < seen.calls.size(); ++i) {
    EXPECT_EQ(seen.calls[i].first, static_cast<int>(i / 4));
    EXPECT_EQ(seen.calls[i].second, model::kLinearInputs[i % 4]);
    EXPECT_EQ(seen.xs[i].rows(), 7);
    EXPECT_EQ(seen.xs[i].cols(), i % 4 == 3 ? 172 : 64);
  }
  // ffn_down's input is silu(gate h) * up h, h = the FFN input seen just before it
  const auto& h = seen.xs[2];
  model::RowMatrixXf g = h * m.weight("blk.0.ffn_gate.weight").transpose();
  const model::RowMatrixXf u = h * m.weight("blk.0.ffn_up.weight").transpose();
  g = (g.array() / (1.0f + (-g.array()).exp()) * u.array()).matrix();
  EXPECT_TRUE(g.isApprox(seen.xs[3], 1e-5f));
  EXPECT_EQ(model::linear_names(model::LinearInput::AttnQkv), (std::vector<std::string>{"attn_q", "attn_k", "attn_v"}));
  EXPECT_EQ(model::layer_weight_name(3, "ffn_up"), "blk.3.ffn_up.weight");
}

TEST(Llama, StepwisePassAndIncrementalDecodeMatchForward) {
  auto m = model::LlamaModel::load(model_path());
  std::vector<int32_t> t = {1, 300, 350, 400, 450, 17, 90, 91};
  const auto full = m.forward(t);
  auto x = m.embed(t);
  for (int l = 0; l < m.config().n_layers; ++l) m.forward_layer(l, x);
  EXPECT_TRUE(m.logits(x) == full);
  model::KvCache cache;
  const auto a = m.decode(std::span<const int32_t>(t).first(5), cache);
  const auto b = m.decode(std::span<const int32_t>(t).subspan(5), cache);
  EXPECT_EQ(cache.length, 8);
  EXPECT_TRUE(a.isApprox(full.topRows(5), 1e-5f));
  EXPECT_TRUE(b.isApprox(full.bottomRows(3), 1e-5f));
}

TEST(Llama, SetWeightChangesThePassAndChecksItsArgument) {
  auto m = model::LlamaModel::load(model_path());
  std::vector<int32_t> t = {1, 300, 350, 400};
  const auto before = m.forward(t);
  model::RowMatrixXf w = m.weight("blk.2.attn_v.weight");
  EXPECT_EQ(w.rows(), 32);
  m.set_weight("blk.2.attn_v.weight", 0.5f * w);
  EXPECT_FALSE(m.forward(t).isApprox(before, 1e-4f));
  m.set_weight("blk.2.attn_v.weight", w);
  EXPECT_TRUE(m.forward(t) == before);
  EXPECT_THROW(m.set_weight("blk.2.attn_v.weight", model::RowMatrixXf::Zero(64, 64)), ShapeError);
  model::RowMatrixXf nan = w;
  nan(0, 0) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(m.set_weight("blk.2.attn_v.weight", nan), NumericError);
  EXPECT_THROW(m.weight("blk.5.attn_q.weight"), InvalidArgument);  // 5 layers
  EXPECT_THROW(m.weight("blk.0.attn_norm.weight"), InvalidArgument);
  EXPECT_THROW(m.weight("token_embd.weight"), InvalidArgument);
  EXPECT_NO_THROW(m.weight("output.weight"));
}

TEST(Llama, SamplingIsDeterministicAndThreadIndependent) {
  auto m = model::LlamaModel::load(model_path());
  model::SampleOptions o;
  o.samples = 4;
  o.length = 32;
  o.seed = 5;
  o.threads = 1;
  const int a = m.config().vocab;
  const auto x = model::sample(m, o);
  o.threads = 2;
  const auto y = model::sample(m, o);
  EXPECT_EQ(x, y);
  ASSERT_EQ(x.size(), 128u);
  for (size_t i = 0; i < x.size(); ++i) {
    if (i % 32 == 0) {
      EXPECT_EQ(x[i], 1);
    }
    EXPECT_GE(x[i], 0);
    EXPECT_LT(x[i], a);
  }
  o.seed = 6;
  EXPECT_NE(model::sample(m, o), x);
  // a sampled sequence is likely under the model: lower perplexity than uniform by far
  model::PerplexityOptions p;
  p.context = 32;
  p.bos = -1;
  EXPECT_LT(model::perplexity(m, x, p).ppl, 30.0);
  o.temperature = 0.0f;
  EXPECT_THROW(model::sample(m, o), InvalidArgument);
  const auto path = std::filesystem::temp_directory_path() / ("qk-tokens-" + std::to_string(::getpid()) + ".i32");
  model::write_tokens(path, x);
  EXPECT_EQ(model::read_tokens(path), x);
  std::filesystem::remove(path);
}
