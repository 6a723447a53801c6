// GPTQ, AWQ and RTN onto the ggml block grids (GgmlGrid): one algorithm, any encoding.
#include <gtest/gtest.h>

#include "methods_util.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/methods/awq.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/methods/rtn.hpp"

namespace qk {
namespace {

class GgmlGridMethods : public ::testing::TestWithParam<ggml::Type> {};

TEST_P(GgmlGridMethods, GptqAndAwqBeatRtnAndEncode) {
  const test::Problem& p = test::p4a();  // 64 x 64; the K-quants' super-blocks need 256 columns
  const ggml::Type t = GetParam();
  const int64_t be = ggml::info(t).block_elems;
  // Widen the problem for the 256-element super-blocks: tile W and X four times along the input dimension.
  const int64_t reps = be > p.W.cols() ? be / p.W.cols() : 1;
  test::RowMat W(p.W.rows(), p.W.cols() * reps), X(p.X.rows(), p.X.cols() * reps);
  for (int64_t r = 0; r < reps; ++r) {
    W.middleCols(r * p.W.cols(), p.W.cols()) = p.W;
    X.middleCols(r * p.X.cols(), p.X.cols()) = p.X * (1.0f + 0.25f * static_cast<float>(r));
  }
  ggml::GgmlGrid g_rtn(t), g_gptq(t), g_awq(t);
  const RowMatrixXf q_rtn = rtn(W, g_rtn);
  // RTN through the grid is ggml's own quantizer.
  EXPECT_EQ(g_rtn.encode(), ggml::quantize(t, W.data(), W.rows(), W.cols()));
  HessianAccumulator acc(W.cols());
  acc.add(X);
  const GptqResult r = gptq(W, acc, g_gptq);
  AwqResult a = awq(W, X, g_awq);
  const double e_rtn = test::rel_output_error(X, W, q_rtn);
  const double e_gptq = test::rel_output_error(X, W, r.dequantized);
  const double e_awq = test::rel_output_error(X, W, a.dequantized);
  std::printf("%s: E calib RTN %.5g GPTQ %.5g AWQ %.5g\n", g_rtn.name(), e_rtn, e_gptq, e_awq);
  EXPECT_LT(e_gptq, e_rtn);
  EXPECT_LE(e_awq, e_rtn);
  // The encodings decode to what the methods returned.
  for (auto* gp : {&g_gptq, &g_awq}) {
    const std::vector<uint8_t> bytes = gp->encode();
    RowMatrixXf dec(W.rows(), W.cols());
    ggml::dequantize_rows(t, bytes.data(), W.rows(), W.cols(), dec.data());
    const RowMatrixXf& want = gp == &g_gptq ? r.dequantized : a.scaled_quantized;
    EXPECT_TRUE(dec.isApprox(want, 1e-5f)) << g_rtn.name();
  }
  // Act-order needs static groups on a grid of several blocks per row.
  ggml::GgmlGrid g2(t);
  GptqOptions o;
  o.act_order = true;
  if (be < W.cols()) {
    EXPECT_THROW(gptq(W, acc, g2, o), InvalidArgument);
  }
  o.static_groups = true;
  const GptqResult rs = gptq(W, acc, g2, o);
  EXPECT_LT(test::rel_output_error(X, W, rs.dequantized), e_rtn);
}

INSTANTIATE_TEST_SUITE_P(Types, GgmlGridMethods,
                         ::testing::Values(ggml::Type::Q4_0, ggml::Type::Q4_1, ggml::Type::Q8_0, ggml::Type::Q4_K,
                                           ggml::Type::Q6_K),
                         [](const auto& info) { return std::string(ggml::info(info.param).name); });

}  // namespace
}  // namespace qk
