// The runtime's Engine (qk/runtime/engine.hpp) on the bundled models quantized to q8_0 and q4_0 by the pipeline:
// its logits agree with the model floor's float evaluation of the same file (LlamaModel with llama.cpp's input
// rounding), greedy generation gives the same tokens, and the results do not depend on the thread count.
#include "qk/runtime/engine.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "../io/io_util.hpp"
#include "qk/core/error.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/model/tokenizer.hpp"
#include "qk/pipeline/quantize.hpp"
#include "test_util.hpp"

using namespace qk;

namespace {

const char* const kPrompt = "Tom and Lily went to the park";

// Quantized copies of the bundled models, made once per process (every linear weight, the embedding and the
// output projection in `type` where their shapes allow).
class Files {
 public:
  ~Files() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path get(const std::string& name, const std::string& type) {
    const std::string key = name + "-" + type;
    auto it = files_.find(key);
    if (it != files_.end()) return it->second;
    if (dir_.empty()) {
      dir_ = std::filesystem::temp_directory_path() / fmt::format("qk-test-runtime-{}", ::getpid());
      std::filesystem::create_directories(dir_);
    }
    const auto input = formats::QuantizedCheckpoint::open(test::bundled_model(name));
    pipeline::PlanOptions po;
    po.type = *pipeline::TargetType::parse(type);
    po.method = pipeline::Method::Rtn;
    po.quantize_embeddings = true;
    po.quantize_output = true;
    const pipeline::Plan plan = pipeline::make_plan(*input, po);
    const auto out = dir_ / (key + ".gguf");
    auto sink = pipeline::make_sink(out, plan, *input, {});
    pipeline::quantize_model(*input, plan, nullptr, *sink);
    return files_[key] = out;
  }

 private:
  std::filesystem::path dir_;
  std::map<std::string, std::filesystem::path> files_;
};

Files& files() {
  static Files f;
  return f;
}

// max |a - b| over max |b|.
double rel_diff(const model::RowMatrixXf& a, const model::RowMatrixXf& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff());
}

model::GenerateOptions greedy(int n) {
  model::GenerateOptions o;
  o.max_tokens = n;
  o.temperature = 0;
  o.eos = -1;
  return o;
}

using Case = std::pair<const char*, const char*>;  // model, type
std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  return std::string(i.param.first) + "_" + i.param.second;
}

}  // namespace

class EngineOnModel : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    path_ = files().get(GetParam().first, GetParam().second);
    prompt_ = model::Tokenizer::load(path_).encode(kPrompt);
  }
  runtime::Engine engine(kernels::Q8Rounding r, int threads = 2, bool repack = false) const {
    runtime::EngineOptions o;
    o.rounding = r;
    o.threads = threads;
    o.repack_q4_0 = repack;
    return runtime::Engine::load(path_, o);
  }
  void every_linear_agrees(bool repack);
  std::filesystem::path path_;
  std::vector<int32_t> prompt_;
};

// Each product on its own: with ggml's reference rounding the engine multiplies the same int8 activation codes the
// model floor rounds its inputs to, so the two differ only in float summation order (Q4_0 read in place, and
// repacked for the int4 kernels).
TEST_P(EngineOnModel, EveryLinearAgreesWithTheModelFloor) {
  for (const bool repack : {false, true}) every_linear_agrees(repack);
}

void EngineOnModel::every_linear_agrees(bool repack) {
  const model::LlamaModel m = model::LlamaModel::load(path_);
  const auto e = engine(kernels::Q8Rounding::reference, 2, repack);
  if (std::string(GetParam().second) == "q4_0") {
    EXPECT_EQ(e.weight(0, model::LinearId::Q).repacked, repack);
  }
  const model::LlamaConfig& c = e.config();
  Eigen::Index rows = 5;
  double worst = 0;
  auto check = [&](const runtime::EngineWeight& w, const float* mw, model::InputRounding r, const std::string& what) {
    model::RowMatrixXf x = model::RowMatrixXf::Random(rows, w.in) * 2.0f, want, got;
    model::linear(want, x, mw, w.out, r);
    e.linear(w, got, x, 0.0f);
    const double d = rel_diff(got, want);
    worst = std::max(worst, d);
    EXPECT_LT(d, 1e-5) << what << (repack ? ", repacked" : "");
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const model::LlamaLayer& L = m.layer(l);
    const model::LayerView v = model::view(L);
    const float* ws[7] = {v.wq, v.wk, v.wv, v.wo, v.w_gate, v.w_up, v.w_down};
    const model::InputRounding rs[7] = {v.round_q, v.round_k, v.round_v, v.round_o, v.round_gate, v.round_up,
                                        v.round_down};
    for (int i = 0; i < 7; ++i)
      check(e.weight(l, static_cast<model::LinearId>(i)), ws[i], rs[i], fmt::format("layer {} linear {}", l, i));
  }
  check(e.output_weight(), m.output(), m.output_rounding(), "output");
  std::printf("%s %s%s: worst max |engine - model| / max |model| of one product: %.3g\n", GetParam().first,
              GetParam().second, repack ? " (Q4_0 repacked)" : "", worst);
}

// The whole pass: the per-product differences (~1e-6) can move an activation of a later layer across a Q8_0
// rounding boundary, one code step (1/127 of that block's largest value), which then propagates; measured on these
// files the logits differ by at most 1.3% of their largest magnitude (0 to 3e-7 where no code moves), and the
// highest logit of every position is the same token.
TEST_P(EngineOnModel, LogitsAgreeWithTheModelFloor) {
  const model::LlamaModel m = model::LlamaModel::load(path_);
  model::KvCache mc;
  const model::RowMatrixXf want = m.decode(prompt_, mc);
  for (const auto r : {kernels::Q8Rounding::reference, kernels::Q8Rounding::ggml_x86}) {
    const auto e = engine(r);
    EXPECT_GT(e.quantized_weights(), 0);
    model::KvCache ec;
    const model::RowMatrixXf got = e.decode(prompt_, ec);
    ASSERT_EQ(got.rows(), want.rows());
    ASSERT_EQ(got.cols(), want.cols());
    const double d = rel_diff(got, want);
    const char* rn = r == kernels::Q8Rounding::reference ? "reference" : "ggml_x86";
    std::printf("%s %s, %s rounding: max |engine - model| / max |model| %.3g\n", GetParam().first,
                GetParam().second, rn, d);
    EXPECT_LT(d, 2e-2) << rn;
    for (Eigen::Index t = 0; t < got.rows(); ++t) {
      Eigen::Index a, b;
      got.row(t).maxCoeff(&a);
      want.row(t).maxCoeff(&b);
      EXPECT_EQ(a, b) << rn << " rounding, position " << t;
    }
  }
}

// Token by token through the cache gives what one call over the prompt gives.
TEST_P(EngineOnModel, IncrementalDecodeMatchesOneCall) {
  const auto e = engine(kernels::Q8Rounding::ggml_x86);
  model::KvCache a, b;
  const model::RowMatrixXf whole = e.decode(prompt_, a);
  model::RowMatrixXf steps(whole.rows(), whole.cols());
  for (size_t t = 0; t < prompt_.size(); ++t)
    steps.row(static_cast<Eigen::Index>(t)) = e.decode(std::span<const int32_t>(&prompt_[t], 1), b).row(0);
  EXPECT_EQ(a.length, b.length);
  EXPECT_LT(rel_diff(steps, whole), 1e-5);
}

TEST_P(EngineOnModel, SameLogitsOnAnyThreadCount) {
  model::KvCache c1, c3;
  const model::RowMatrixXf one = engine(kernels::Q8Rounding::ggml_x86, 1).decode(prompt_, c1);
  const model::RowMatrixXf three = engine(kernels::Q8Rounding::ggml_x86, 3).decode(prompt_, c3);
  EXPECT_TRUE(one == three);
  model::KvCache p1, p3;
  EXPECT_TRUE(engine(kernels::Q8Rounding::ggml_x86, 1, true).decode(prompt_, p1) ==
              engine(kernels::Q8Rounding::ggml_x86, 3, true).decode(prompt_, p3));
}

// 32 greedy tokens equal the model floor's on the same file, with either activation rounding.
TEST_P(EngineOnModel, GreedyEqualsTheModelFloor) {
  const model::LlamaModel m = model::LlamaModel::load(path_);
  const auto want = model::generate(m, prompt_, greedy(32));
  for (const auto r : {kernels::Q8Rounding::reference, kernels::Q8Rounding::ggml_x86}) {
    const auto e = engine(r);
    std::vector<int32_t> streamed;
    const auto got = e.generate(prompt_, greedy(32), [&](int32_t id) {
      streamed.push_back(id);
      return true;
    });
    EXPECT_EQ(got, want) << (r == kernels::Q8Rounding::reference ? "reference" : "ggml_x86") << " rounding";
    EXPECT_EQ(got, streamed);
  }
  EXPECT_EQ(engine(kernels::Q8Rounding::ggml_x86, 2, true).generate(prompt_, greedy(32)), want) << "Q4_0 repacked";
}

INSTANTIATE_TEST_SUITE_P(Bundled, EngineOnModel,
                         ::testing::Values(Case{"stories260K", "q8_0"}, Case{"stories260K", "q4_0"},
                                           Case{"babyllama", "q8_0"}, Case{"babyllama", "q4_0"}),
                         case_name);

// F32 / F16 files (no Q4_0 / Q8_0 weight) run entirely on dequantized weights: the model floor's numbers.
TEST(Engine, FloatFileEqualsTheModelFloor) {
  const auto path = test::bundled_model("stories260K");
  const auto e = runtime::Engine::load(path);
  EXPECT_EQ(e.quantized_weights(), 0);
  const auto prompt = model::Tokenizer::load(path).encode(kPrompt);
  model::KvCache a, b;
  const model::RowMatrixXf want = model::LlamaModel::load(path).decode(prompt, a);
  EXPECT_TRUE(e.decode(prompt, b) == want);
}

TEST(Engine, Errors) {
  const auto e = runtime::Engine::load(test::bundled_model("stories260K"));
  model::KvCache c;
  const int32_t bad[1] = {e.config().vocab};
  EXPECT_THROW(e.decode(bad, c), InvalidArgument);
  EXPECT_THROW(runtime::Engine::load("/nonexistent/model.gguf"), Error);
}
