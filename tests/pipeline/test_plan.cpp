// The Plan (qk/pipeline/plan.hpp): llama.cpp's per-tensor rules, fallbacks, methods by coverage, JSON round trip,
// and the check of a plan against its input.
#include <gtest/gtest.h>

#include "../io/io_util.hpp"
#include "qk/core/error.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/pipeline/plan.hpp"
#include "tiny_llama.hpp"

namespace qk::pipeline {
namespace {

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::TinyLlama s;  // dim 256 (K-quant rows), ffn 96 (only 32-element blocks), vocab 300
    test::write_tiny_llama(dir_ / "m.gguf", s);
    input_ = formats::QuantizedCheckpoint::open(dir_ / "m.gguf");
  }
  Plan plan(const std::string& type, PlanOptions o, const Coverage& c) {
    o.type = *TargetType::parse(type);
    return make_plan(*input_, o, c);
  }
  Plan plan(const std::string& type, const PlanOptions& o) { return plan(type, o, Coverage()); }
  Plan plan(const std::string& type) { return plan(type, PlanOptions(), Coverage()); }
  test::ScratchDir dir_;
  std::unique_ptr<formats::QuantizedCheckpoint> input_;
};

TEST_F(PlanTest, FollowsLlamaCppRules) {
  const Plan p = plan("q4_k");
  ASSERT_EQ(p.tensors.size(), input_->tensors().size());
  auto t = [&](const char* n) { return *p.find(n); };
  EXPECT_EQ(t("output_norm.weight").out_type, "F32");
  EXPECT_EQ(t("output_norm.weight").action, Action::Convert);
  EXPECT_EQ(t("token_embd.weight").out_type, "q8_0");  // qk keeps a separate embedding at q8_0
  EXPECT_EQ(t("output.weight").out_type, "q6_K");      // rows of 256: Q6_K, as llama.cpp
  EXPECT_EQ(t("blk.0.attn_q.weight").out_type, "q4_K");
  EXPECT_EQ(t("blk.0.attn_q.weight").method, Method::Rtn);
  EXPECT_FALSE(t("blk.0.attn_q.weight").fallback);
  // ffn_down rows of 96: llama.cpp's 32-block demotion of q4_K, q5_0
  EXPECT_EQ(t("blk.1.ffn_down.weight").out_type, "q5_0");
  EXPECT_TRUE(t("blk.1.ffn_down.weight").fallback);
  EXPECT_NE(t("blk.1.ffn_down.weight").note.find("not a multiple of 256"), std::string::npos);
  EXPECT_EQ(t("blk.0.attn_q.weight").bytes, static_cast<uint64_t>(256 / 256 * 144 * 256));
  // q8_0 targets keep the output at q8_0; --quantize-embeddings / --quantize-output use the target type
  EXPECT_EQ(plan("q8_0").find("output.weight")->out_type, "q8_0");
  PlanOptions o;
  o.quantize_embeddings = o.quantize_output = true;
  const Plan q = plan("q4_0", o);
  EXPECT_EQ(q.find("token_embd.weight")->out_type, "q4_0");
  EXPECT_EQ(q.find("output.weight")->out_type, "q4_0");
}

TEST_F(PlanTest, FallbacksSkipsAndPlainTypes) {
  PlanOptions o;
  o.fallback = "q8_0";
  o.skip = {"attn_k"};
  const Plan p = plan("q3_k", o);
  EXPECT_EQ(p.find("blk.0.ffn_down.weight")->out_type, "q8_0");
  EXPECT_EQ(p.find("blk.0.attn_k.weight")->out_type, "F32");
  EXPECT_EQ(p.find("blk.0.attn_k.weight")->note, "--skip");
  o.fallback = "f16";
  o.skip.clear();
  EXPECT_EQ(plan("q4_k", o).find("blk.0.ffn_down.weight")->out_type, "F16");
  EXPECT_EQ(plan("bf16").find("blk.0.attn_q.weight")->out_type, "BF16");
  o.fallback = "int4";
  EXPECT_THROW(plan("q4_k", o), InvalidArgument);
  o.fallback = "auto";
  o.skip = {"("};
  EXPECT_THROW(plan("q4_k", o), InvalidArgument);
}

TEST_F(PlanTest, ContainersRefuseTypesTheyCannotHold) {
  PlanOptions o;
  o.container = Container::Safetensors;
  EXPECT_THROW(plan("q4_k", o), InvalidArgument);
  o.container = Container::Gguf;
  EXPECT_THROW(plan("int4-g32", o), InvalidArgument);
  EXPECT_THROW(plan("nf4", o), InvalidArgument);
  o.container = Container::GptqCheckpoint;
  const Plan g = plan("int4-g32", o);
  EXPECT_EQ(g.find("blk.0.attn_q.weight")->out_type, "int4-g32");
  EXPECT_EQ(g.find("output.weight")->action, Action::Convert);  // GPTQ checkpoints keep the output projection
  o.method = Method::Gptq;
  EXPECT_THROW(plan("f16", o), InvalidArgument);
}

TEST_F(PlanTest, MethodsFollowCoverage) {
  Coverage c;
  c.calibrated = [](const std::string& n) { return n.find("blk.0.") == 0; };
  c.missing_reason = "not reached";
  PlanOptions o;
  o.method = Method::Gptq;
  const Plan p = plan("q4_k", o, c);
  EXPECT_EQ(p.find("blk.0.attn_v.weight")->method, Method::Gptq);
  EXPECT_EQ(p.find("blk.1.attn_v.weight")->method, Method::Rtn);
  EXPECT_NE(p.find("blk.1.attn_v.weight")->note.find("not reached: rtn"), std::string::npos);
  EXPECT_EQ(p.find("output_norm.weight")->method, Method::None);
  // RTN with importance where it is at hand and the encoder uses it (q8_0's does not)
  c.importance = [](const std::string& n) { return n.find("attn_q") != std::string::npos || n == "output.weight"; };
  const PlanOptions rtn;
  const Plan r = plan("q4_k", rtn, c);
  EXPECT_EQ(r.find("blk.1.attn_q.weight")->method, Method::RtnImatrix);
  EXPECT_EQ(r.find("blk.1.attn_k.weight")->method, Method::Rtn);
  EXPECT_EQ(plan("q8_0", rtn, c).find("blk.1.attn_q.weight")->method, Method::Rtn);
}

TEST_F(PlanTest, JsonRoundTripsAndIsChecked) {
  PlanOptions o;
  o.fallback = "f16";
  Plan p = plan("q4_k", o);
  p.tensors[3].action = Action::Ggml;  // edit: one tensor to q8_0
  p.tensors[3].block = ggml::Type::Q8_0;
  p.tensors[3].method = Method::Rtn;
  finish(p.tensors[3], p.container);
  const std::string j = p.to_json();
  const Plan q = Plan::from_json(j, "plan.json");
  ASSERT_EQ(q.tensors.size(), p.tensors.size());
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    EXPECT_EQ(q.tensors[i].name, p.tensors[i].name);
    EXPECT_EQ(q.tensors[i].out_type, p.tensors[i].out_type) << p.tensors[i].name;
    EXPECT_EQ(q.tensors[i].bytes, p.tensors[i].bytes) << p.tensors[i].name;
    EXPECT_EQ(q.tensors[i].method, p.tensors[i].method);
    EXPECT_EQ(q.tensors[i].note, p.tensors[i].note);
  }
  EXPECT_EQ(q.to_json(), j);
  EXPECT_NO_THROW(check_plan(q, *input_));
  // malformed plans name the file and the tensor
  auto bad = [&](const std::string& from, const std::string& to, const std::string& needle) {
    std::string s = j;
    const size_t at = s.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    s.replace(at, from.size(), to);
    try {
      const Plan r = Plan::from_json(s, "plan.json");
      check_plan(r, *input_);
      ADD_FAILURE() << "accepted: " << to;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("plan"), std::string::npos) << e.what();
    }
  };
  bad("\"out_type\":\"q4_K\"", "\"out_type\":\"q9_K\"", "not a ggml weight type");
  bad("\"action\":\"ggml\"", "\"action\":\"zip\"", "unknown action");
  bad("[256,256]", "[256,255]", "blk.0.attn_q.weight");
  bad("\"qk_plan\":1", "\"qk_plan\":2", "version");
  bad("\"method\":\"rtn\"", "\"method\":\"-\"", "does not go with");
}

TEST_F(PlanTest, CheckRefusesAPlanForAnotherModel) {
  test::TinyLlama other;
  other.dim = 128;
  test::write_tiny_llama(dir_ / "o.gguf", other);
  const auto o = formats::QuantizedCheckpoint::open(dir_ / "o.gguf");
  const Plan p = plan("q4_0");
  EXPECT_THROW(check_plan(p, *o), FormatError);
}

}  // namespace
}  // namespace qk::pipeline
