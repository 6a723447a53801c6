// quantize_model through the library API (qk/pipeline/quantize.hpp): the same bytes as qtool, any thread count,
// edited plans, reports, cancellation, and calibration that runs the model block by block.
#include <gtest/gtest.h>

#include <fstream>

#include "../io/io_util.hpp"
#include "qk/core/error.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/formats/tensor_values.hpp"
#include "qk/io/gguf.hpp"
#include "qk/model/llama_model.hpp"
#include "qk/model/sample.hpp"
#include "qk/pipeline/quantize.hpp"
#include "tiny_llama.hpp"

namespace qk::pipeline {
namespace {

class QuantizeApi : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_tiny_llama(model_, spec_);
    input_ = formats::QuantizedCheckpoint::open(model_);
  }
  // Quantizes the tiny model to `type` with `method` (token calibration sampled from the model) into `out`.
  Report run(const std::string& type, Method method, const std::filesystem::path& out, int threads,
             Plan* edited = nullptr, const ProgressFn& progress = {}) {
    GeneratedTokens calibration({8, 32}, 3, threads);
    PlanOptions po;
    po.type = *TargetType::parse(type);
    po.method = method;
    const Plan plan = edited ? *edited : make_plan(*input_, po, coverage(*input_, &calibration));
    auto sink = make_sink(out, plan, *input_, {});
    QuantizeOptions qo;
    qo.threads = threads;
    return quantize_model(*input_, plan, &calibration, *sink, qo, progress);
  }
  test::ScratchDir dir_;
  test::TinyLlama spec_;
  std::filesystem::path model_ = dir_ / "m.gguf";
  std::unique_ptr<formats::QuantizedCheckpoint> input_;
};

TEST_F(QuantizeApi, SameBytesOnAnyThreadCount) {
  for (const Method m : {Method::Gptq, Method::Awq, Method::RtnImatrix}) {
    std::string first;
    for (int threads : {1, 2, 3}) {
      const auto out = dir_ / fmt::format("t{}.gguf", threads);
      run("q4_0", m, out, threads);
      const std::string bytes = test::slurp(out);
      ASSERT_FALSE(bytes.empty());
      if (first.empty()) first = bytes;
      EXPECT_TRUE(bytes == first) << method_name(m) << " with " << threads << " threads";
      std::filesystem::remove(out);
    }
  }
}

TEST_F(QuantizeApi, SameBytesAsQtool) {
#ifdef QK_QTOOL
  const auto a = dir_ / "api.gguf", c = dir_ / "cli.gguf";
  run("q4_k", Method::Gptq, a, 2);
  const auto r = test::run_qtool(fmt::format("quantize \"{}\" -o \"{}\" --type q4_k --method gptq --calib-generate "
                                             "--calib-samples 8 --calib-ctx 32 --calib-seed 3 --threads 2 -q",
                                             model_.string(), c.string()),
                                 dir_.path());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(test::slurp(a) == test::slurp(c));
#else
  GTEST_SKIP() << "qtool is not built in this configuration";
#endif
}

TEST_F(QuantizeApi, ReportAndEditedPlan) {
  GeneratedTokens calibration({8, 32}, 3);
  PlanOptions po;
  po.type = *TargetType::parse("q4_0");
  po.method = Method::Gptq;
  Plan plan = make_plan(*input_, po, coverage(*input_, &calibration));
  TensorPlan& q = *std::find_if(plan.tensors.begin(), plan.tensors.end(),
                                [](const TensorPlan& t) { return t.name == "blk.1.attn_q.weight"; });
  q.block = ggml::Type::Q8_0;
  finish(q, plan.container);
  const auto out = dir_ / "edited.gguf";
  const Report rep = run("q4_0", Method::Gptq, out, 2, &plan);
  const auto f = io::TensorFile::open(out);
  EXPECT_EQ(f->tensor("blk.1.attn_q.weight").type_name(), "Q8_0");
  EXPECT_EQ(f->tensor("blk.0.attn_q.weight").type_name(), "Q4_0");
  ASSERT_EQ(rep.tensors.size(), plan.tensors.size());
  EXPECT_FALSE(rep.calibration.empty());
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const auto& t = rep.tensors[i];
    EXPECT_EQ(t.out_type, plan.tensors[i].out_type);
    if (!plan.tensors[i].quantized()) {
      EXPECT_EQ(t.weight_error, -1) << t.name;
      continue;
    }
    // relative weight error of the stored values, measured independently from the file
    const auto W = formats::read_matrix(input_->file(), input_->file().tensor(t.name));
    const auto D = formats::read_matrix(*f, f->tensor(t.name));
    const double e = (W - D).squaredNorm() / W.squaredNorm();
    EXPECT_NEAR(t.weight_error, e, 1e-6 + 1e-3 * e) << t.name;
    EXPECT_LT(t.weight_error, t.out_type == "q8_0" ? 1e-4 : 3e-2) << t.name;
  }
  EXPECT_NEAR(rep.bits_per_weight(), 8.0 * static_cast<double>(rep.quantized_bytes) / rep.quantized_weights, 1e-12);
}

TEST_F(QuantizeApi, CancelledRunLeavesNothing) {
  const auto out = dir_ / "c.gguf";
  int calls = 0;
  const ProgressFn stop = [&](const ProgressEvent&) { return ++calls < 3; };
  EXPECT_THROW(run("q4_0", Method::Gptq, out, 1, nullptr, stop), Cancelled);
  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST_F(QuantizeApi, GptqNeedsCalibrationThatReachesTheTensor) {
  PlanOptions po;
  po.type = *TargetType::parse("q4_0");
  po.method = Method::Gptq;
  Coverage everything;
  everything.calibrated = [](const std::string&) { return true; };
  const Plan plan = make_plan(*input_, po, everything);
  auto sink = make_sink(dir_ / "x.gguf", plan, *input_, {});
  EXPECT_THROW(quantize_model(*input_, plan, nullptr, *sink), InvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.gguf"));
}

// The streaming sampler (one block resident at a time) gives what the in-memory model gives, whatever the number
// of sequences run together and the thread count.
TEST_F(QuantizeApi, StreamingSamplerMatchesTheModel) {
  const auto m = model::LlamaModel::load(input_->file(), {.llama_rounding = false});
  model::SampleOptions o;
  o.samples = 5;
  o.length = 24;
  o.seed = 11;
  o.threads = 1;
  const auto a = model::sample(m, o);
  o.threads = 3;
  EXPECT_EQ(model::sample(input_->file(), o), a);
  o.samples = 2;
  const auto b = model::sample(input_->file(), o);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin()));
  // and one sequence decoded token by token agrees
  model::KvCache cache;
  std::vector<int32_t> seq = {a[0]};
  for (int t = 1; t < 6; ++t) {
    const auto z = m.decode(std::span<const int32_t>(&seq.back(), 1), cache);
    (void)z;
    seq.push_back(a[static_cast<size_t>(t)]);
  }
  EXPECT_EQ(cache.length, 5);
}

}  // namespace
}  // namespace qk::pipeline
