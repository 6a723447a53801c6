// Hugging Face GPTQ checkpoint layout: round trips from QuantizedTensor, an independent decoder written from the
// format's description (AutoGPTQ's pack(): codes packed along the input dimension, v1 zeros stored minus one),
// quantize_config.json, and refusal of what the layout cannot hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "qk/formats/gptq_hf.hpp"
#include "test_util.hpp"

namespace {

using qk::QuantizedTensor;
using qk::QuantScheme;
namespace gh = qk::gptq_hf;

// Random codes and parameters for an unsigned scheme, optionally with an act-order g_idx.
QuantizedTensor random_tensor(int bits, int64_t N, int64_t K, int64_t group, bool sym, bool act_order, uint64_t seed) {
  auto g = qk::test::rng(seed);
  QuantizedTensor q;
  q.rows = N;
  q.cols = K;
  q.scheme = group > 0 ? QuantScheme::per_group(bits, group, sym, false) : QuantScheme::per_channel(bits, sym, false);
  const int64_t G = group > 0 ? K / group : 1;
  q.params = qk::QuantParams(N, G);
  std::uniform_real_distribution<float> sd(0.001f, 0.1f);
  std::uniform_int_distribution<int> zd(1, (1 << bits) - 1);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < G; ++j) {
      q.params.scale(n, j) = qk::fp16_to_fp32(qk::fp32_to_fp16(sd(g)));
      q.params.zero_point(n, j) = sym ? 1 << (bits - 1) : zd(g);
    }
  std::vector<uint8_t> codes(static_cast<size_t>(K));
  std::uniform_int_distribution<int> cd(0, (1 << bits) - 1);
  q.packed.assign(static_cast<size_t>(q.row_bytes() * N), 0);
  for (int64_t n = 0; n < N; ++n) {
    for (auto& c : codes) c = static_cast<uint8_t>(cd(g));
    qk::pack_bits(codes, bits, std::span<uint8_t>(q.row_data(n), static_cast<size_t>(q.row_bytes())));
  }
  if (act_order) {
    // GPTQ act-order: columns visited in a permuted order, group i·g .. of that order -> g_idx[perm[i]] = i / g.
    std::vector<int32_t> perm(static_cast<size_t>(K));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), g);
    q.g_idx.resize(static_cast<size_t>(K));
    for (int64_t i = 0; i < K; ++i) q.g_idx[static_cast<size_t>(perm[static_cast<size_t>(i)])] =
        static_cast<int32_t>(group > 0 ? i / group : 0);
  }
  return q;
}

// Written from the format description only: bit position k·b of column n's stream, word (k·b)/32 of qweight.
// Uses 64-bit reads of two consecutive words, which covers 3-bit codes that straddle a word boundary.
uint32_t ref_field(const std::vector<int32_t>& words, int64_t row_len, int64_t major, int64_t minor, int bits,
                   bool along_rows) {
  // along_rows: element `minor` of column `major` in a [rows, row_len] array packed down the rows (qweight);
  // otherwise element `minor` of row `major` packed along the row (qzeros).
  const int64_t bit = minor * bits;
  const int64_t w = bit / 32, sh = bit % 32;
  uint64_t lo, hi = 0;
  if (along_rows) {
    lo = static_cast<uint32_t>(words[static_cast<size_t>(w * row_len + major)]);
    if (sh + bits > 32) hi = static_cast<uint32_t>(words[static_cast<size_t>((w + 1) * row_len + major)]);
  } else {
    lo = static_cast<uint32_t>(words[static_cast<size_t>(major * row_len + w)]);
    if (sh + bits > 32) hi = static_cast<uint32_t>(words[static_cast<size_t>(major * row_len + w + 1)]);
  }
  return static_cast<uint32_t>(((lo | (hi << 32)) >> sh) & ((1u << bits) - 1));
}

qk::RowMatrixXf reference_decode(const gh::PackedLinear& p, bool v1) {
  const int64_t K = p.in_features, N = p.out_features;
  const int64_t zcols = N * p.bits / 32;
  qk::RowMatrixXf W(N, K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = p.g_idx[static_cast<size_t>(k)];
      const int q = static_cast<int>(ref_field(p.qweight, N, n, k, p.bits, true));
      const int z = static_cast<int>(ref_field(p.qzeros, zcols, g, n, p.bits, false)) + (v1 ? 1 : 0);
      const float s = qk::fp16_to_fp32(p.scales[static_cast<size_t>(g * N + n)]);
      W(n, k) = static_cast<float>(q - z) * s;
    }
  return W;
}

struct Case {
  int bits;
  int64_t group;
  bool sym;
  bool act_order;
};

class GptqHfRoundTrip : public ::testing::TestWithParam<Case> {};

TEST_P(GptqHfRoundTrip, PackUnpackKeepsCodesScalesZeros) {
  const Case c = GetParam();
  const int64_t N = 64, K = 256;
  QuantizedTensor q = random_tensor(c.bits, N, K, c.group, c.sym, c.act_order, 11 + c.bits);
  gh::PackedLinear p = gh::pack(q, gh::ZeroFormat::V1);
  p.validate();
  EXPECT_EQ(p.qweight.size(), static_cast<size_t>(K * c.bits / 32 * N));
  const int64_t G = c.group > 0 ? K / c.group : 1;
  EXPECT_EQ(p.groups(), G);
  EXPECT_EQ(p.scales.size(), static_cast<size_t>(G * N));
  QuantizedTensor r = gh::unpack(p, gh::ZeroFormat::V1);
  ASSERT_EQ(r.rows, N);
  ASSERT_EQ(r.cols, K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      ASSERT_EQ(r.code(n, k), q.code(n, k)) << "n=" << n << " k=" << k;
      ASSERT_EQ(r.scale(n, k), q.scale(n, k)) << "n=" << n << " k=" << k;
      ASSERT_EQ(r.zero_point(n, k), q.zero_point(n, k)) << "n=" << n << " k=" << k;
    }
  EXPECT_EQ(r.g_idx.empty(), !c.act_order);
  // the same floats through the library's dequantizer, the direct one and an independent decoder
  const qk::RowMatrixXf want = q.dequantize();
  EXPECT_EQ((r.dequantize() - want).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_EQ((gh::dequantize(p) - want).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_EQ((reference_decode(p, true) - want).cwiseAbs().maxCoeff(), 0.0f);
}

TEST_P(GptqHfRoundTrip, V2StoresZerosAsIs) {
  const Case c = GetParam();
  QuantizedTensor q = random_tensor(c.bits, 32, 128, c.group > 64 ? 64 : c.group, c.sym, c.act_order, 5);
  gh::PackedLinear p = gh::pack(q, gh::ZeroFormat::V2);
  EXPECT_EQ((reference_decode(p, false) - q.dequantize()).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_EQ((gh::unpack(p, gh::ZeroFormat::V2).dequantize() - q.dequantize()).cwiseAbs().maxCoeff(), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Layouts, GptqHfRoundTrip,
                         ::testing::Values(Case{4, 128, true, false}, Case{4, 128, false, false},
                                           Case{4, 32, true, true}, Case{4, -1, true, false},
                                           Case{2, 64, false, false}, Case{2, 128, true, true},
                                           Case{3, 128, true, false}, Case{3, 32, false, true},
                                           Case{8, 128, true, false}, Case{8, 64, false, true}),
                         [](const auto& info) {
                           const Case& c = info.param;
                           return fmt::format("b{}_g{}_{}{}", c.bits, c.group < 0 ? 0 : c.group,
                                              c.sym ? "sym" : "asym", c.act_order ? "_actorder" : "");
                         });

// Exact words for a hand-made layer: codes k (mod 16) per column, symmetric zero 8 stored as 7 in v1.
TEST(GptqHf, FourBitWordsFollowAutoGptqOrder) {
  const int64_t N = 8, K = 16;
  QuantizedTensor q;
  q.rows = N;
  q.cols = K;
  q.scheme = QuantScheme::per_channel(4, true, false);
  q.params = qk::QuantParams(N, 1);
  q.params.scale.setConstant(0.5f);
  q.params.zero_point.setConstant(8);
  std::vector<uint8_t> codes(K);
  for (int64_t k = 0; k < K; ++k) codes[static_cast<size_t>(k)] = static_cast<uint8_t>(k);
  q.packed.assign(static_cast<size_t>(q.row_bytes() * N), 0);
  for (int64_t n = 0; n < N; ++n)
    qk::pack_bits(codes, 4, std::span<uint8_t>(q.row_data(n), static_cast<size_t>(q.row_bytes())));
  auto p = gh::pack(q);
  ASSERT_EQ(p.qweight.size(), static_cast<size_t>(2 * N));
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_EQ(static_cast<uint32_t>(p.qweight[static_cast<size_t>(n)]), 0x76543210u);      // inputs 0..7
    EXPECT_EQ(static_cast<uint32_t>(p.qweight[static_cast<size_t>(N + n)]), 0xFEDCBA98u);  // inputs 8..15
  }
  ASSERT_EQ(p.qzeros.size(), 1u);
  EXPECT_EQ(static_cast<uint32_t>(p.qzeros[0]), 0x77777777u);
  EXPECT_EQ(p.scales[0], 0x3800);  // 0.5 in fp16
  EXPECT_EQ(p.group_size, -1);
  for (int32_t gi : p.g_idx) EXPECT_EQ(gi, 0);
}

// 3-bit: 32 codes in 3 words, code 10 split across words 0 and 1 (bits 30-31 and bit 0).
TEST(GptqHf, ThreeBitCodesCrossWords) {
  const int64_t N = 32, K = 32;
  QuantizedTensor q = random_tensor(3, N, K, -1, true, false, 3);
  auto p = gh::pack(q);
  ASSERT_EQ(p.qweight.size(), static_cast<size_t>(3 * N));
  for (int64_t n = 0; n < N; ++n) {
    const uint32_t w0 = static_cast<uint32_t>(p.qweight[static_cast<size_t>(n)]);
    const uint32_t w1 = static_cast<uint32_t>(p.qweight[static_cast<size_t>(N + n)]);
    const uint32_t w2 = static_cast<uint32_t>(p.qweight[static_cast<size_t>(2 * N + n)]);
    for (int i = 0; i < 10; ++i) EXPECT_EQ((w0 >> (3 * i)) & 7u, static_cast<uint32_t>(q.code(n, i)));
    EXPECT_EQ((w0 >> 30) | ((w1 & 1u) << 2), static_cast<uint32_t>(q.code(n, 10)));
    for (int i = 0; i < 10; ++i) EXPECT_EQ((w1 >> (3 * i + 1)) & 7u, static_cast<uint32_t>(q.code(n, 11 + i)));
    EXPECT_EQ((w1 >> 31) | ((w2 & 3u) << 1), static_cast<uint32_t>(q.code(n, 21)));
    for (int i = 0; i < 10; ++i) EXPECT_EQ((w2 >> (3 * i + 2)) & 7u, static_cast<uint32_t>(q.code(n, 22 + i)));
  }
}

// A signed scheme exports through u = q - qmin: signed symmetric zero 0 is the unsigned zero 2^(b-1).
TEST(GptqHf, SignedSchemeFromQuantize) {
  const auto W = qk::test::gaussian(48, 256, 21, 0.02f);
  for (bool is_signed : {true, false}) {
    QuantScheme s = QuantScheme::per_group(4, 128, true, is_signed);
    QuantizedTensor q = qk::quantize(W, s);
    auto p = gh::pack(q);
    for (int32_t z : p.qzeros) EXPECT_EQ(static_cast<uint32_t>(z), 0x77777777u);
    // scales are rounded to fp16; codes unchanged
    const qk::RowMatrixXf d = reference_decode(p, true);
    for (int64_t n = 0; n < q.rows; ++n)
      for (int64_t k = 0; k < q.cols; ++k) {
        const float s16 = qk::fp16_to_fp32(qk::fp32_to_fp16(q.scale(n, k)));
        ASSERT_EQ(d(n, k), static_cast<float>(q.code(n, k) - q.zero_point(n, k)) * s16);
      }
    // close to the weights: within half a step (plus fp16 scale rounding)
    const qk::RowMatrixXf r = gh::dequantize(p);
    for (int64_t n = 0; n < q.rows; ++n)
      for (int64_t k = 0; k < q.cols; ++k) ASSERT_NEAR(r(n, k), W(n, k), 0.51f * q.scale(n, k) + 1e-3f);
  }
}

TEST(GptqHf, V1RefusesZeroPointZero) {
  QuantizedTensor q = random_tensor(4, 32, 64, 32, false, false, 9);
  q.params.zero_point(3, 1) = 0;
  try {
    gh::pack(q, gh::ZeroFormat::V1, "blk.0.attn_q.weight");
    FAIL() << "expected FormatError";
  } catch (const qk::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("gptq_v2"), std::string::npos) << e.what();
  }
  auto p = gh::pack(q, gh::ZeroFormat::V2);
  EXPECT_EQ(gh::unpack(p, gh::ZeroFormat::V2).zero_point(3, 32), 0);
}

TEST(GptqHf, RefusesShapesAndValuesTheLayoutCannotHold) {
  // 100 inputs of 4 bits = 400 bits: not whole words
  QuantizedTensor q = random_tensor(4, 32, 100, -1, true, false, 1);
  EXPECT_THROW(gh::pack(q), qk::FormatError);
  // 12 outputs of 4 bits: qzeros rows are not whole words
  q = random_tensor(4, 12, 64, -1, true, false, 1);
  EXPECT_THROW(gh::pack(q), qk::FormatError);
  // 5-bit codes have no GPTQ layout
  q = random_tensor(5, 32, 64, -1, true, false, 1);
  EXPECT_THROW(gh::pack(q), qk::FormatError);
  // a scale beyond fp16
  q = random_tensor(4, 32, 64, -1, true, false, 1);
  q.params.scale(0, 0) = 1e6f;
  EXPECT_THROW(gh::pack(q), qk::FormatError);
  // corrupted layers on import
  q = random_tensor(4, 32, 64, 32, true, false, 1);
  auto p = gh::pack(q);
  auto bad = p;
  bad.g_idx[5] = 2;
  EXPECT_THROW(gh::unpack(bad), qk::FormatError);
  bad = p;
  bad.qweight.pop_back();
  EXPECT_THROW(gh::unpack(bad), qk::FormatError);
  bad = p;
  bad.scales.resize(bad.scales.size() + 1);
  EXPECT_THROW(gh::dequantize(bad), qk::FormatError);
}

// A group size that does not divide K: G = ceil(K / g), the import keeps g_idx.
TEST(GptqHf, PartialLastGroup) {
  gh::PackedLinear p;
  p.bits = 4;
  p.in_features = 96;
  p.out_features = 8;
  p.group_size = 64;
  p.qweight.assign(static_cast<size_t>(p.qweight_rows() * 8), 0x12345678);
  p.qzeros.assign(2, 0x77777777);
  p.scales.assign(16, qk::fp32_to_fp16(0.25f));
  for (int64_t k = 0; k < 96; ++k) p.g_idx.push_back(static_cast<int32_t>(k / 64));
  EXPECT_EQ(p.groups(), 2);
  QuantizedTensor q = gh::unpack(p);
  EXPECT_EQ(q.g_idx.size(), 96u);
  EXPECT_EQ((q.dequantize() - reference_decode(p, true)).cwiseAbs().maxCoeff(), 0.0f);
}

TEST(GptqHfConfig, JsonRoundTrip) {
  gh::QuantizeConfig c;
  c.bits = 3;
  c.group_size = -1;
  c.desc_act = true;
  c.sym = false;
  c.damp_percent = 0.05;
  const std::string j = gh::to_json(c);
  EXPECT_NE(j.find("\"quant_method\": \"gptq\""), std::string::npos);
  auto r = gh::config_from_json(j);
  EXPECT_EQ(r.bits, 3);
  EXPECT_EQ(r.group_size, -1);
  EXPECT_TRUE(r.desc_act);
  EXPECT_FALSE(r.sym);
  EXPECT_DOUBLE_EQ(r.damp_percent, 0.05);
  EXPECT_EQ(r.zero_format(), gh::ZeroFormat::V1);
}

TEST(GptqHfConfig, ReadsTransformersConfigAndIgnoresUnknownKeys) {
  const char* cfg = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
    "quantization_config": {"bits": 8, "group_size": 32, "desc_act": false, "sym": true,
      "meta": {"quantizer": ["gptqmodel:1.0"], "damp_auto_increment": 0.0025}, "pack_dtype": "int32",
      "checkpoint_format": "gptq_v2", "quant_method": "gptq", "model_name_or_path": null},
    "torch_dtype": "float16"})";
  auto c = gh::config_from_json(cfg, "config.json");
  EXPECT_EQ(c.bits, 8);
  EXPECT_EQ(c.group_size, 32);
  EXPECT_EQ(c.zero_format(), gh::ZeroFormat::V2);
}

TEST(GptqHfConfig, BadConfigsNameTheProblem) {
  auto msg = [](const char* j) {
    try {
      gh::config_from_json(j, "q.json");
    } catch (const qk::FormatError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg(R"({"group_size": 128})").find("bits"), std::string::npos);
  EXPECT_NE(msg(R"({"bits": 5, "group_size": 128})").find("5"), std::string::npos);
  EXPECT_NE(msg(R"({"bits": 4, "group_size": 0})").find("group_size"), std::string::npos);
  EXPECT_NE(msg(R"({"bits": "4", "group_size": 128})").find("not a number"), std::string::npos);
  EXPECT_NE(msg(R"({"bits": 4, "group_size": 128, "quant_method": "awq"})").find("awq"), std::string::npos);
  EXPECT_NE(msg(R"({"bits": 4, "group_size": 128)").find("bad JSON"), std::string::npos);
  EXPECT_NE(msg("").find("q.json"), std::string::npos);
}

}  // namespace
