// Quantized checkpoints as logical weights (qk/formats/checkpoint.hpp) and the qtool commands that read them:
// GPTQ checkpoints and bitsandbytes NF4 files written by `qtool quantize`, read back by `qtool eval`, `qtool inspect`
// and `qtool quantize` (dequantized first), with errors consistent with quantizing the same weights in-library;
// malformed checkpoints give one-line errors naming the file and tensor.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "qk/core/codebook.hpp"
#include "qk/core/half.hpp"
#include "qk/core/metrics.hpp"
#include "qk/formats/checkpoint.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/formats/gptq_hf.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
using qk::formats::Encoding;
using qk::formats::QuantizedCheckpoint;
using qk::io::DType;
using qk::io::TensorFile;

#ifndef QK_QTOOL
#define QK_QTOOL ""
#endif

using qk::test::slurp;

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

template <class T>
std::span<const std::byte> as_bytes(const std::vector<T>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(T)};
}

// The library's int4 quantizer with fp16-representable scales (what a GPTQ checkpoint can hold).
qk::QuantizedTensor quantize_fp16_scales(const qk::RowMatrixXf& W, int bits, int64_t group) {
  const qk::QuantScheme s = qk::QuantScheme::per_group(bits, group, true, false);
  qk::QuantParams p = qk::compute_params(W, s);
  for (Eigen::Index i = 0; i < p.scale.size(); ++i)
    p.scale.data()[i] = qk::fp16_to_fp32(qk::fp32_to_fp16(p.scale.data()[i]));
  return qk::quantize(W, s, &p);
}

using Result = qk::test::RunResult;

// The number after "key": in the JSON object that follows "name":"NAME" (qtool's compact JSON).
double json_field(const std::string& js, const std::string& name, const std::string& key) {
  const size_t at = js.find("\"name\":\"" + name + "\"");
  if (at == std::string::npos) return std::nan("");
  const size_t k = js.find("\"" + key + "\":", at);
  if (k == std::string::npos) return std::nan("");
  return std::strtod(js.c_str() + k + key.size() + 3, nullptr);
}
std::string json_string(const std::string& js, const std::string& name, const std::string& key) {
  const size_t at = js.find("\"name\":\"" + name + "\"");
  if (at == std::string::npos) return {};
  const size_t k = js.find("\"" + key + "\":\"", at);
  if (k == std::string::npos) return {};
  const size_t b = k + key.size() + 4;
  return js.substr(b, js.find('"', b) - b);
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("qk-ckpt-{}-{:08x}", ::getpid(), rd());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // A GPTQ checkpoint directory with one layer (from p) and a norm; parts can be dropped or reshaped.
  fs::path write_gptq(const std::string& name, const qk::gptq_hf::PackedLinear& p, const std::string& config,
                      bool drop_scales = false, bool bad_scales_shape = false, bool with_g_idx = true) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    const int64_t G = p.groups(), N = p.out_features;
    const std::vector<float> norm(static_cast<size_t>(p.in_features), 1.0f);
    qk::io::SafetensorsWriter w(d / "model.safetensors");
    w.add_tensor("model.norm.weight", DType::F32, {p.in_features});
    w.add_tensor(kP + ".qweight", DType::I32, {p.qweight_rows(), N});
    w.add_tensor(kP + ".qzeros", DType::I32, {G, p.qzeros_cols()});
    if (!drop_scales) {
      if (bad_scales_shape) w.add_tensor(kP + ".scales", DType::F16, {N, G});
      else w.add_tensor(kP + ".scales", DType::F16, {G, N});
    }
    if (with_g_idx) w.add_tensor(kP + ".g_idx", DType::I32, {p.in_features});
    w.write_tensor(as_bytes(norm));
    w.write_tensor(as_bytes(p.qweight));
    w.write_tensor(as_bytes(p.qzeros));
    if (!drop_scales) w.write_tensor(as_bytes(p.scales));
    if (with_g_idx) w.write_tensor(as_bytes(p.g_idx));
    w.commit();
    if (!config.empty()) write_text(d / "quantize_config.json", config);
    return d;
  }

  Result qtool(const std::string& args) { return qk::test::run_program(QK_QTOOL, args, dir_); }
  bool have_qtool() const { return !std::string(QK_QTOOL).empty(); }
  // A float model: two linear weights (one F16), an embedding and a norm.
  fs::path write_float_model() {
    const fs::path in = dir_ / "float.safetensors";
    W_ = qk::test::gaussian(64, 256, 41, 0.05f);
    const auto D = qk::test::gaussian(256, 128, 42, 0.05f);
    D16_.resize(static_cast<size_t>(D.size()));
    for (Eigen::Index i = 0; i < D.size(); ++i) D16_[static_cast<size_t>(i)] = qk::fp32_to_fp16(D.data()[i]);
    Dr_ = qk::RowMatrixXf(D.rows(), D.cols());
    for (Eigen::Index i = 0; i < D.size(); ++i) Dr_.data()[i] = qk::fp16_to_fp32(D16_[static_cast<size_t>(i)]);
    E_ = qk::test::gaussian(100, 64, 43, 0.05f);
    const std::vector<float> norm(64, 1.0f);
    qk::io::SafetensorsWriter w(in);
    w.add_tensor("model.embed_tokens.weight", DType::F32, {100, 64});
    w.add_tensor(kP + ".weight", DType::F32, {64, 256});
    w.add_tensor("model.layers.0.mlp.down_proj.weight", DType::F16, {256, 128});
    w.add_tensor("model.norm.weight", DType::F32, {64});
    w.write_tensor({reinterpret_cast<const std::byte*>(E_.data()), static_cast<size_t>(E_.size()) * 4});
    w.write_tensor({reinterpret_cast<const std::byte*>(W_.data()), static_cast<size_t>(W_.size()) * 4});
    w.write_tensor(as_bytes(D16_));
    w.write_tensor(as_bytes(norm));
    w.commit();
    return in;
  }
  qk::RowMatrixXf W_, Dr_, E_;
  std::vector<uint16_t> D16_;
  std::string q(const fs::path& p) { return "\"" + p.string() + "\""; }

  const std::string kP = "model.layers.0.mlp.up_proj";
  fs::path dir_;
};


// ---------------------------------------------------------------- library
TEST_F(CheckpointTest, GptqLayerIsOneLogicalWeightDequantizedExactly) {
  const auto W = qk::test::gaussian(64, 256, 1, 0.05f);
  const auto q = quantize_fp16_scales(W, 4, 128);
  const auto p = qk::gptq_hf::pack(q);
  qk::gptq_hf::QuantizeConfig cfg;
  const fs::path d = write_gptq("ckpt", p, qk::gptq_hf::to_json(cfg));
  const auto c = QuantizedCheckpoint::open(d);
  EXPECT_TRUE(c->quantized());
  ASSERT_TRUE(c->gptq_config().has_value());
  ASSERT_EQ(c->tensors().size(), 2u);
  EXPECT_EQ(c->tensors()[0].name(), "model.norm.weight");
  EXPECT_EQ(c->tensors()[0].encoding, Encoding::Plain);
  const auto& l = c->tensor(kP + ".weight");
  EXPECT_EQ(l.encoding, Encoding::Gptq);
  EXPECT_EQ(l.type, "gptq-int4-g128");
  EXPECT_EQ(l.info.shape, (std::vector<int64_t>{64, 256}));
  EXPECT_FALSE(l.act_order);
  // bytes: codes 64·256/2, scales and zeros of 2 groups, g_idx
  EXPECT_EQ(l.info.nbytes, 64u * 256 / 2 + 2 * 64 * 2 + 2 * 64 / 2 + 256 * 4);
  EXPECT_NEAR(l.bits_per_weight(), 8.0 * static_cast<double>(l.info.nbytes) / (64 * 256), 1e-12);
  EXPECT_EQ(c->find(kP + ".qweight"), nullptr);
  const auto got = c->read_matrix(l);
  EXPECT_EQ((got - q.dequantize()).cwiseAbs().maxCoeff(), 0.0f);
}

TEST_F(CheckpointTest, ActOrderV2AndInferredConfig) {
  const auto W = qk::test::gaussian(32, 256, 2, 0.05f);
  auto p = qk::gptq_hf::pack(quantize_fp16_scales(W, 4, 64));
  // act-order: columns assigned to groups in a permuted order
  std::vector<int32_t> perm(256);
  for (int k = 0; k < 256; ++k) perm[static_cast<size_t>(k)] = (k * 37) % 256;
  for (int k = 0; k < 256; ++k) p.g_idx[static_cast<size_t>(k)] = perm[static_cast<size_t>(k)] / 64;
  qk::gptq_hf::QuantizeConfig cfg;
  cfg.group_size = 64;
  cfg.desc_act = true;
  cfg.checkpoint_format = "gptq_v2";
  const auto c = QuantizedCheckpoint::open(write_gptq("v2", p, qk::gptq_hf::to_json(cfg)));
  const auto& l = c->tensor(kP + ".weight");
  EXPECT_TRUE(l.act_order);
  EXPECT_EQ(l.type, "gptq-int4-g64-act");
  EXPECT_EQ((c->read_matrix(l) - qk::gptq_hf::dequantize(p, qk::gptq_hf::ZeroFormat::V2)).cwiseAbs().maxCoeff(), 0.0f);
  // no quantize_config.json: 4 bits from qzeros' width, group 64 from the group count, v1 zeros
  const auto n = QuantizedCheckpoint::open(write_gptq("noconfig", p, ""));
  EXPECT_FALSE(n->gptq_config().has_value());
  const auto& m = n->tensor(kP + ".weight");
  EXPECT_EQ(m.bits, 4);
  EXPECT_EQ(m.group_size, 64);
  EXPECT_EQ((n->read_matrix(m) - qk::gptq_hf::dequantize(p)).cwiseAbs().maxCoeff(), 0.0f);
  // no g_idx: columns in order
  const auto s = QuantizedCheckpoint::open(write_gptq("nogidx", qk::gptq_hf::pack(quantize_fp16_scales(W, 4, 64)), "",
                                                      false, false, false));
  EXPECT_EQ((s->read_matrix(s->tensor(kP + ".weight")) - quantize_fp16_scales(W, 4, 64).dequantize()).cwiseAbs().maxCoeff(),
            0.0f);
}

TEST_F(CheckpointTest, PlainFilesPassThrough) {
  const fs::path f = dir_ / "plain.safetensors";
  const auto A = qk::test::gaussian(8, 16, 3);
  {
    qk::io::SafetensorsWriter w(f);
    w.add_tensor("a.weight", DType::F32, {8, 16});
    w.write_tensor({reinterpret_cast<const std::byte*>(A.data()), static_cast<size_t>(A.size()) * 4});
    w.commit();
  }
  const auto c = QuantizedCheckpoint::open(f);
  EXPECT_FALSE(c->quantized());
  ASSERT_EQ(c->tensors().size(), 1u);
  EXPECT_EQ(c->tensors()[0].type, "F32");
  EXPECT_EQ((c->read_matrix(c->tensors()[0]) - A).cwiseAbs().maxCoeff(), 0.0f);
}

// One line naming the file and the tensor (or the config file).
void expect_format_error(const fs::path& path, const std::string& needle) {
  try {
    const auto c = QuantizedCheckpoint::open(path);
    for (const auto& t : c->tensors()) (void)c->read_matrix(t);
    ADD_FAILURE() << "no error for " << path << " (" << needle << ")";
  } catch (const qk::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(needle), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST_F(CheckpointTest, MalformedCheckpointsNameTheFileAndTensor) {
  const auto p = qk::gptq_hf::pack(quantize_fp16_scales(qk::test::gaussian(64, 256, 4, 0.05f), 4, 128));
  const std::string good = qk::gptq_hf::to_json(qk::gptq_hf::QuantizeConfig{});
  expect_format_error(write_gptq("noscales", p, good, true), kP + ".scales' is missing");
  expect_format_error(write_gptq("badshape", p, good, false, true), kP + ".scales'");
  expect_format_error(write_gptq("badbits", p, "{\"bits\": 5, \"group_size\": 128}"), "quantize_config.json");
  expect_format_error(write_gptq("badjson", p, "{\"bits\": 4, \"group_size\": "), "quantize_config.json");
  expect_format_error(write_gptq("badgroup", p, "{\"bits\": 4, \"group_size\": 64}"), kP + ".scales'");
  expect_format_error(write_gptq("wrongbits", p, "{\"bits\": 8, \"group_size\": 128}"), kP + ".qzeros'");
  // a group index out of range is found when the layer is read
  auto bad = p;
  bad.g_idx[3] = 7;
  expect_format_error(write_gptq("badgidx", bad, good), "g_idx[3]");
  expect_format_error(dir_ / "badgidx", "model.safetensors");
}

// ---------------------------------------------------------------- qtool
TEST_F(CheckpointTest, EvalOfAGptqCheckpointMatchesTheLibrary) {
  if (!have_qtool()) GTEST_SKIP() << "qtool is not built in this configuration";
  const fs::path in = write_float_model(), ck = dir_ / "ckpt";
  Result r = qtool(fmt::format("quantize {} -o {} --type int4-g128 --quiet", q(in), q(ck)));
  ASSERT_EQ(r.code, 0) << r.err;
  r = qtool(fmt::format("eval {} {} --json", q(in), q(ck)));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string down = "model.layers.0.mlp.down_proj.weight";
  for (const auto& [name, ref] : {std::pair<std::string, const qk::RowMatrixXf*>{kP + ".weight", &W_},
                                  std::pair<std::string, const qk::RowMatrixXf*>{down, &Dr_}}) {
    const auto deq = quantize_fp16_scales(*ref, 4, 128).dequantize();
    const double mse = qk::mse(*ref, deq), sqnr = qk::sqnr_db(*ref, deq);
    EXPECT_NEAR(json_field(r.out, name, "mse"), mse, 1e-6 * mse) << name << "\n" << r.out;
    EXPECT_NEAR(json_field(r.out, name, "sqnr_db"), sqnr, 1e-6) << name;
    EXPECT_NEAR(json_field(r.out, name, "max_abs_error"), qk::max_abs_error(*ref, deq), 1e-7) << name;
    EXPECT_EQ(json_string(r.out, name, "dtype_b"), "gptq-int4-g128") << r.out;
  }
  EXPECT_EQ(json_string(r.out, "model.embed_tokens.weight", "dtype_b"), "F32");
  EXPECT_EQ(r.out.find("qweight"), std::string::npos) << r.out;
  // the .safetensors inside the directory (config beside it) reads the same
  const Result r2 = qtool(fmt::format("eval {} {} --json --tensor {}", q(in), q(ck / "model.safetensors"), kP + ".weight"));
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_EQ(json_field(r2.out, kP + ".weight", "mse"), json_field(r.out, kP + ".weight", "mse"));
  // text output names the logical type
  const Result t = qtool(fmt::format("eval {} {}", q(in), q(ck)));
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("gptq-int4-g128"), std::string::npos) << t.out;

  // inspect: logical weights with their true bits/weight; --raw the stored tensors
  r = qtool(fmt::format("inspect {} --json", q(ck)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_string(r.out, kP + ".weight", "dtype"), "gptq-int4-g128") << r.out;
  const double bytes = json_field(r.out, kP + ".weight", "bytes");
  EXPECT_EQ(bytes, 64.0 * 256 / 2 + 2 * 64 * 2 + 2 * 64 / 2 + 256 * 4);
  EXPECT_NEAR(json_field(r.out, kP + ".weight", "bits_per_weight"), 8.0 * bytes / (64 * 256), 1e-6);
  EXPECT_EQ(r.out.find("\"name\":\"" + kP + ".qweight\""), std::string::npos);
  EXPECT_NE(r.out.find("\"gptq_config\""), std::string::npos);
  r = qtool(fmt::format("inspect {} --raw", q(ck)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(kP + ".qweight"), std::string::npos) << r.out;

  // quantize: the checkpoint is dequantized, then encoded like any float model (RTN)
  const fs::path g = dir_ / "re.gguf";
  r = qtool(fmt::format("quantize {} -o {} --type q8_0 --quiet", q(ck), q(g)));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = TensorFile::open(g);
  const auto& t8 = out->tensor(kP + ".weight");
  EXPECT_EQ(t8.type_name(), "Q8_0");
  const auto deq = quantize_fp16_scales(W_, 4, 128).dequantize();
  const auto want = qk::ggml::quantize_rows(qk::ggml::Type::Q8_0, deq.data(), deq.rows(), deq.cols());
  const auto got = out->bytes(t8);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  EXPECT_EQ(out->tensor("model.norm.weight").type_name(), "F32");
  r = qtool(fmt::format("quantize {} -o {} --type q4_k --method gptq --calib-generate", q(ck), q(dir_ / "x.gguf")));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "x.gguf"));
}

TEST_F(CheckpointTest, EvalOfActOrderGptqMatchesAnIndependentDecode) {
  if (!have_qtool()) GTEST_SKIP() << "qtool is not built in this configuration";
  const fs::path in = write_float_model(), ck = dir_ / "ao", calib = dir_ / "calib.safetensors";
  // correlated activations for the up projection (256 inputs)
  const qk::RowMatrixXf X = qk::test::gaussian(256, 8, 51) * qk::test::gaussian(8, 256, 52) +
                            0.1f * qk::test::gaussian(256, 256, 53);
  {
    qk::io::SafetensorsWriter w(calib);
    w.add_tensor(kP + ".weight", DType::F32, {256, 256});
    w.write_tensor({reinterpret_cast<const std::byte*>(X.data()), static_cast<size_t>(X.size()) * 4});
    w.commit();
  }
  Result r = qtool(fmt::format("quantize {} -o {} --type int4-g128 --method gptq --act-order --calib {} --quiet",
                               q(in), q(ck), q(calib)));
  ASSERT_EQ(r.code, 0) << r.err;
  // decode with gptq_hf straight from the stored tensors
  auto m = TensorFile::open(ck / "model.safetensors");
  qk::gptq_hf::PackedLinear pl;
  pl.in_features = 256;
  pl.out_features = 64;
  auto copy = [&](const std::string& n, auto& v) {
    const auto b = m->bytes(m->tensor(n));
    v.resize(b.size() / sizeof(v[0]));
    std::memcpy(v.data(), b.data(), b.size());
  };
  copy(kP + ".qweight", pl.qweight);
  copy(kP + ".qzeros", pl.qzeros);
  copy(kP + ".scales", pl.scales);
  copy(kP + ".g_idx", pl.g_idx);
  const auto deq = qk::gptq_hf::dequantize(pl);
  r = qtool(fmt::format("eval {} {} --json", q(in), q(ck)));
  ASSERT_EQ(r.code, 0) << r.err;
  const double mse = qk::mse(W_, deq);
  EXPECT_NEAR(json_field(r.out, kP + ".weight", "mse"), mse, 1e-6 * mse) << r.out;
  EXPECT_EQ(json_string(r.out, kP + ".weight", "dtype_b").rfind("gptq-int4-g128", 0), 0u) << r.out;
}

TEST_F(CheckpointTest, EvalAndInspectOfAnNf4File) {
  if (!have_qtool()) GTEST_SKIP() << "qtool is not built in this configuration";
  const fs::path in = write_float_model(), nf = dir_ / "nf4.safetensors";
  Result r = qtool(fmt::format("quantize {} -o {} --type nf4 --quiet", q(in), q(nf)));
  ASSERT_EQ(r.code, 0) << r.err;
  r = qtool(fmt::format("eval {} {} --json", q(in), q(nf)));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto want = qk::nf4_quantize(std::span<const float>(W_.data(), static_cast<size_t>(W_.size()))).dequantize();
  const qk::RowMatrixXf D = Eigen::Map<const qk::RowMatrixXf>(want.data(), W_.rows(), W_.cols());
  const double mse = qk::mse(W_, D);
  EXPECT_NEAR(json_field(r.out, kP + ".weight", "mse"), mse, 1e-6 * mse) << r.out;
  EXPECT_EQ(json_string(r.out, kP + ".weight", "dtype_b"), "nf4");
  const auto c = QuantizedCheckpoint::open(nf);
  EXPECT_EQ((c->read_matrix(c->tensor(kP + ".weight")) - D).cwiseAbs().maxCoeff(), 0.0f);
  r = qtool(fmt::format("inspect {} --json", q(nf)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_string(r.out, kP + ".weight", "dtype"), "nf4") << r.out;
  const double bpw = json_field(r.out, kP + ".weight", "bits_per_weight");
  EXPECT_GT(bpw, 4.1);
  EXPECT_LT(bpw, 5.0);
  EXPECT_EQ(r.out.find("\"name\":\"" + kP + ".weight.absmax\""), std::string::npos) << r.out;
}

TEST_F(CheckpointTest, MalformedCheckpointsFailInOneLineWithExit1) {
  if (!have_qtool()) GTEST_SKIP() << "qtool is not built in this configuration";
  const fs::path in = write_float_model();
  const auto p = qk::gptq_hf::pack(quantize_fp16_scales(W_, 4, 128));
  const std::string good = qk::gptq_hf::to_json(qk::gptq_hf::QuantizeConfig{});
  const struct {
    fs::path ck;
    std::string needle;
  } cases[] = {{write_gptq("noscales", p, good, true), kP + ".scales' is missing"},
               {write_gptq("badshape", p, good, false, true), kP + ".scales'"},
               {write_gptq("badcfg", p, "{\"bits\": 5, \"group_size\": 128}"), "quantize_config.json"}};
  for (const auto& c : cases) {
    for (const std::string& cmd : {"eval " + q(in) + " " + q(c.ck), "inspect " + q(c.ck),
                                  "quantize " + q(c.ck) + " -o " + q(dir_ / "o.gguf") + " --type q8_0"}) {
      const Result r = qtool(cmd);
      EXPECT_EQ(r.code, 1) << cmd << "\n" << r.err;
      EXPECT_NE(r.err.find(c.needle), std::string::npos) << cmd << "\n" << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_TRUE(r.out.empty()) << r.out;
      EXPECT_FALSE(fs::exists(dir_ / "o.gguf"));
    }
  }
}

}  // namespace
