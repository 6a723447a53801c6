// `qtool quantize` in model mode, run as a user would: the bundled stories260K model to Q4_0, Q8_0 and Q4_K
// (fallbacks, metadata, file type, closeness), small synthetic models for exact encodings, imatrix, GPTQ
// checkpoints and safetensors input, and the error paths (existing output, bad type, input == output, truncated
// input) with their exit codes and no partial output.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>

#include "qk/core/codebook.hpp"
#include "qk/core/half.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/formats/gptq_hf.hpp"
#include "qk/formats/tensor_values.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"
#include "qk/methods/gptq.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
using qk::io::DType;
using qk::io::TensorFile;
using qk::io::TensorInfo;

#ifndef QK_QTOOL
#define QK_QTOOL ""
#endif

const fs::path kStories = qk::test::bundled_model("stories260K");

using Result = qk::test::RunResult;

using qk::test::slurp;

class QuantizeModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string(QK_QTOOL).empty()) GTEST_SKIP() << "qtool is not built in this configuration";
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("qk-quantize-model-{}-{:08x}", ::getpid(), rd());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  Result qtool(const std::string& args) { return qk::test::run_program(QK_QTOOL, args, dir_); }
  std::string q(const fs::path& p) { return "\"" + p.string() + "\""; }
  // Entries of the work directory other than the given ones (temporaries left behind).
  std::vector<std::string> leftovers(std::initializer_list<std::string> expected) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      const std::string n = e.path().filename().string();
      if (std::find(expected.begin(), expected.end(), n) == expected.end()) out.push_back(n);
    }
    return out;
  }

  fs::path dir_;
};

// ---------------------------------------------------------------- helpers on files
bool meta_equal(const qk::io::MetaValue& a, const qk::io::MetaValue& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<std::shared_ptr<qk::io::MetaArray>>(&a)) {
    const auto& y = std::get<std::shared_ptr<qk::io::MetaArray>>(b);
    if ((*x)->element_type != y->element_type || (*x)->values.size() != y->values.size()) return false;
    for (size_t i = 0; i < (*x)->values.size(); ++i)
      if (!meta_equal((*x)->values[i], y->values[i])) return false;
    return true;
  }
  return a == b;
}

double rel_error(const qk::RowMatrixXf& a, const qk::RowMatrixXf& b) {
  const double n = a.norm();
  return n > 0 ? (a - b).norm() / n : (a - b).norm();
}

uint32_t meta_u32(const TensorFile& f, const char* key) {
  const auto* v = qk::io::find_meta(f.metadata(), key);
  if (!v) ADD_FAILURE() << "no " << key;
  if (!v) return 0xFFFFFFFFu;
  if (const auto* u = std::get_if<uint32_t>(v)) return *u;
  if (const auto* i = std::get_if<int32_t>(v)) return static_cast<uint32_t>(*i);
  ADD_FAILURE() << key << " is not a 32-bit integer";
  return 0xFFFFFFFFu;
}

// A small llama-like GGUF model: widths that K-quants hold (256) and one they do not (96).
struct Synthetic {
  std::map<std::string, qk::RowMatrixXf> w;
};

Synthetic write_synthetic_gguf(const fs::path& p) {
  Synthetic s;
  s.w["token_embd.weight"] = qk::test::gaussian(64, 256, 1, 0.02f);
  s.w["blk.0.attn_norm.weight"] = qk::test::uniform(1, 256, 2, 0.5f, 1.5f);
  s.w["blk.0.attn_q.weight"] = qk::test::gaussian(256, 256, 3, 0.05f);
  s.w["blk.0.ffn_down.weight"] = qk::test::gaussian(256, 96, 4, 0.05f);
  s.w["output.weight"] = qk::test::gaussian(64, 256, 5, 0.02f);
  qk::io::GgufWriter g(p);
  g.set("general.architecture", std::string("llama"));
  g.set("general.name", std::string("synthetic"));
  g.set("llama.block_count", uint32_t{1});
  const std::vector<std::string> order = {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight",
                                          "blk.0.ffn_down.weight", "output.weight"};
  for (const auto& n : order) {
    const auto& m = s.w[n];
    std::vector<int64_t> shape = m.rows() == 1 ? std::vector<int64_t>{m.cols()} : std::vector<int64_t>{m.rows(), m.cols()};
    g.add_tensor(n, 0, shape);
  }
  for (const auto& n : order) {
    const auto& m = s.w[n];
    g.write_tensor(n, {reinterpret_cast<const std::byte*>(m.data()), static_cast<size_t>(m.size()) * 4});
  }
  g.commit();
  return s;
}

// ---------------------------------------------------------------- stories260K
struct StoriesCase {
  const char* type;
  uint32_t ftype;
  const char* attn_type;  // what the 64-wide attention and FFN gate/up weights become
};

class QuantizeStories : public QuantizeModel, public ::testing::WithParamInterface<StoriesCase> {};

TEST_P(QuantizeStories, AllTensorsMetadataFallbackAndCloseness) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "bundled model missing: " << kStories;
  const StoriesCase c = GetParam();
  const fs::path out = dir_ / "out.gguf";
  const Result r = qtool(fmt::format("quantize {} -o {} --type {}", q(kStories), q(out), c.type));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("fell back"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blk.0.ffn_down.weight"), std::string::npos) << r.out;

  auto in = TensorFile::open(kStories);
  auto o = TensorFile::open(out);
  ASSERT_EQ(o->format(), qk::io::FileFormat::Gguf);
  ASSERT_EQ(o->tensors().size(), in->tensors().size());
  int fallbacks = 0;
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    const TensorInfo& a = in->tensors()[i];
    const TensorInfo& b = o->tensors()[i];
    ASSERT_EQ(a.name, b.name);
    ASSERT_EQ(a.shape, b.shape) << a.name;
    const std::string t = b.type_name();
    double bound = 0.0;
    if (a.shape.size() == 1) {
      EXPECT_EQ(t, "F32") << a.name;
    } else if (a.name.find("ffn_down") != std::string::npos) {
      EXPECT_EQ(t, "F16") << a.name << ": 172-wide rows fit no 32-element block";
      ++fallbacks;
    } else if (a.name == "token_embd.weight" || a.name == "output.weight") {
      // output: llama.cpp's rule, rows of 64 are not a multiple of 256 -> Q8_0; embedding kept at Q8_0
      EXPECT_EQ(t, "Q8_0") << a.name;
    } else {
      EXPECT_EQ(t, c.attn_type) << a.name;
    }
    if (t == "F32") bound = 0.0;
    else if (t == "F16") bound = 1e-3;
    else if (t == "Q8_0") bound = 0.01;
    else if (t == "Q5_0") bound = 0.06;
    else if (t == "Q4_0") bound = 0.13;
    else ADD_FAILURE() << a.name << " has unexpected type " << t;
    const auto wa = qk::formats::read_matrix(*in, a);
    const auto wb = qk::formats::read_matrix(*o, b);
    EXPECT_LE(rel_error(wa, wb), bound) << a.name << " as " << t;
    if (t != "F32") {
      EXPECT_GT(rel_error(wa, wb), 0.0) << a.name << " was not converted";
    }
  }
  EXPECT_EQ(fallbacks, 5);
  // metadata kept, file type set
  for (const auto& e : in->metadata()) {
    if (e.key == "general.file_type" || e.key == "general.quantization_version" || e.key == "general.alignment")
      continue;
    const auto* v = qk::io::find_meta(o->metadata(), e.key);
    ASSERT_NE(v, nullptr) << "metadata '" << e.key << "' dropped";
    EXPECT_TRUE(meta_equal(*v, e.value)) << "metadata '" << e.key << "' changed";
  }
  EXPECT_EQ(meta_u32(*o, "general.file_type"), c.ftype);
  EXPECT_EQ(meta_u32(*o, "general.quantization_version"), 2u);
  EXPECT_LT(fs::file_size(out), fs::file_size(kStories));
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizeStories,
                         ::testing::Values(StoriesCase{"q4_0", 2, "Q4_0"}, StoriesCase{"q8_0", 7, "Q8_0"},
                                           StoriesCase{"q4_k", 14, "Q5_0"}),
                         [](const auto& i) { return std::string(i.param.type); });

// ---------------------------------------------------------------- synthetic models: exact encodings
TEST_F(QuantizeModel, Q4KEncodesLikeTheLibraryAndFollowsLlamaCppRoles) {
  const fs::path in = dir_ / "syn.gguf", out = dir_ / "syn-q4k.gguf";
  const Synthetic s = write_synthetic_gguf(in);
  const Result r = qtool(fmt::format("quantize {} -o {} --type q4_K --quiet", q(in), q(out)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out.empty()) << "--quiet printed: " << r.out;
  auto o = TensorFile::open(out);
  std::map<std::string, std::string> types;
  for (const auto& t : o->tensors()) types[t.name] = t.type_name();
  EXPECT_EQ(types["blk.0.attn_q.weight"], "Q4_K");
  EXPECT_EQ(types["blk.0.ffn_down.weight"], "Q5_0");  // 96 % 256 != 0: llama.cpp's demotion of Q4_K
  EXPECT_EQ(types["output.weight"], "Q6_K");          // llama.cpp's output rule
  EXPECT_EQ(types["token_embd.weight"], "Q8_0");      // separate embedding kept at Q8_0
  EXPECT_EQ(types["blk.0.attn_norm.weight"], "F32");
  // RTN through the streaming path gives exactly the library's encoder bytes
  const auto& W = s.w.at("blk.0.attn_q.weight");
  const auto want = qk::ggml::quantize_rows(qk::ggml::Type::Q4_K, W.data(), W.rows(), W.cols());
  const auto got = o->bytes(o->tensor("blk.0.attn_q.weight"));
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  const auto& Wo = s.w.at("output.weight");
  const auto want_o = qk::ggml::quantize_rows(qk::ggml::Type::Q6_K, Wo.data(), Wo.rows(), Wo.cols());
  const auto got_o = o->bytes(o->tensor("output.weight"));
  ASSERT_EQ(got_o.size(), want_o.size());
  EXPECT_EQ(std::memcmp(got_o.data(), want_o.data(), want_o.size()), 0);
}

TEST_F(QuantizeModel, OptionsChangeRolesAndFallback) {
  const fs::path in = dir_ / "syn.gguf", out = dir_ / "o.gguf";
  write_synthetic_gguf(in);
  const Result r = qtool(fmt::format(
      "quantize {} -o {} --type q4_k --quantize-embeddings --quantize-output --fallback q8_0 --skip attn_q --quiet",
      q(in), q(out)));
  ASSERT_EQ(r.code, 0) << r.err;
  auto o = TensorFile::open(out);
  EXPECT_EQ(o->tensor("token_embd.weight").type_name(), "Q4_K");
  EXPECT_EQ(o->tensor("output.weight").type_name(), "Q4_K");
  EXPECT_EQ(o->tensor("blk.0.ffn_down.weight").type_name(), "Q8_0");
  EXPECT_EQ(o->tensor("blk.0.attn_q.weight").type_name(), "F32");
}

TEST_F(QuantizeModel, LegacyImatrixReachesTheEncoder) {
  const fs::path in = dir_ / "syn.gguf", out = dir_ / "o.gguf", im = dir_ / "imatrix.dat";
  const Synthetic s = write_synthetic_gguf(in);
  // llama.cpp's legacy imatrix: i32 entries; per entry i32 len, name, i32 ncall, i32 nval, f32 values (sum / ncall)
  std::vector<float> imp(256);
  auto g = qk::test::rng(7);
  std::uniform_real_distribution<float> d(0.1f, 4.0f);
  for (auto& v : imp) v = d(g);
  {
    std::ofstream f(im, std::ios::binary);
    const int32_t n = 1, ncall = 4, nval = 256;
    const std::string name = "blk.0.attn_q.weight";
    const int32_t len = static_cast<int32_t>(name.size());
    f.write(reinterpret_cast<const char*>(&n), 4);
    f.write(reinterpret_cast<const char*>(&len), 4);
    f.write(name.data(), len);
    f.write(reinterpret_cast<const char*>(&ncall), 4);
    f.write(reinterpret_cast<const char*>(&nval), 4);
    for (float v : imp) {
      const float stored = v * ncall;
      f.write(reinterpret_cast<const char*>(&stored), 4);
    }
  }
  const Result r = qtool(fmt::format("quantize {} -o {} --type q4_k --imatrix {} --json", q(in), q(out), q(im)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("rtn+imatrix"), std::string::npos) << r.out;
  auto o = TensorFile::open(out);
  const auto& W = s.w.at("blk.0.attn_q.weight");
  const auto want = qk::ggml::quantize_rows(qk::ggml::Type::Q4_K, W.data(), W.rows(), W.cols(), imp.data());
  const auto plain = qk::ggml::quantize_rows(qk::ggml::Type::Q4_K, W.data(), W.rows(), W.cols());
  const auto got = o->bytes(o->tensor("blk.0.attn_q.weight"));
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0);
  EXPECT_NE(std::memcmp(got.data(), plain.data(), plain.size()), 0) << "importance made no difference";
  // a wrong-length vector is an error naming the tensor, with no output left behind
  const fs::path out2 = dir_ / "o2.gguf";
  {
    std::ofstream f(im, std::ios::binary);
    const int32_t n = 1, ncall = 1, nval = 3;
    const std::string name = "blk.0.attn_q.weight";
    const int32_t len = static_cast<int32_t>(name.size());
    f.write(reinterpret_cast<const char*>(&n), 4);
    f.write(reinterpret_cast<const char*>(&len), 4);
    f.write(name.data(), len);
    f.write(reinterpret_cast<const char*>(&ncall), 4);
    f.write(reinterpret_cast<const char*>(&nval), 4);
    const float v[3] = {1, 2, 3};
    f.write(reinterpret_cast<const char*>(v), 12);
  }
  const Result r2 = qtool(fmt::format("quantize {} -o {} --type q4_k --imatrix {} --quiet", q(in), q(out2), q(im)));
  EXPECT_EQ(r2.code, 1) << r2.err;
  EXPECT_NE(r2.err.find("blk.0.attn_q.weight"), std::string::npos) << r2.err;
  EXPECT_FALSE(fs::exists(out2));
}

// safetensors in (F16 and F32), GGUF and safetensors out
TEST_F(QuantizeModel, SafetensorsInput) {
  const fs::path in = dir_ / "m.safetensors";
  const auto A = qk::test::gaussian(64, 128, 11, 0.05f);
  const auto B = qk::test::gaussian(32, 64, 12, 0.05f);
  std::vector<uint16_t> b16(static_cast<size_t>(B.size()));
  for (Eigen::Index i = 0; i < B.size(); ++i) b16[static_cast<size_t>(i)] = qk::fp32_to_fp16(B.data()[i]);
  const auto nrm = qk::test::uniform(1, 64, 13, 0.5f, 1.5f);
  {
    qk::io::SafetensorsWriter w(in);
    w.add_tensor("model.layers.0.mlp.up_proj.weight", DType::F32, {64, 128});
    w.add_tensor("model.layers.0.mlp.down_proj.weight", DType::F16, {32, 64});
    w.add_tensor("model.norm.weight", DType::F32, {64});
    w.write_tensor({reinterpret_cast<const std::byte*>(A.data()), static_cast<size_t>(A.size()) * 4});
    w.write_tensor({reinterpret_cast<const std::byte*>(b16.data()), b16.size() * 2});
    w.write_tensor({reinterpret_cast<const std::byte*>(nrm.data()), static_cast<size_t>(nrm.size()) * 4});
    w.commit();
  }
  const fs::path out = dir_ / "m.gguf";
  Result r = qtool(fmt::format("quantize {} -o {} --type q8_0 --quiet", q(in), q(out)));
  ASSERT_EQ(r.code, 0) << r.err;
  auto o = TensorFile::open(out);
  EXPECT_EQ(o->tensor("model.layers.0.mlp.up_proj.weight").type_name(), "Q8_0");
  EXPECT_EQ(o->tensor("model.layers.0.mlp.down_proj.weight").type_name(), "Q8_0");
  EXPECT_EQ(o->tensor("model.norm.weight").type_name(), "F32");
  EXPECT_LT(rel_error(A, qk::formats::read_matrix(*o, o->tensor("model.layers.0.mlp.up_proj.weight"))), 0.01);
  const auto wa = qk::ggml::quantize_rows(qk::ggml::Type::Q8_0, A.data(), A.rows(), A.cols());
  const auto ga = o->bytes(o->tensor("model.layers.0.mlp.up_proj.weight"));
  EXPECT_EQ(std::memcmp(ga.data(), wa.data(), wa.size()), 0);
  // plain conversion to a safetensors file
  const fs::path out16 = dir_ / "m16.safetensors";
  r = qtool(fmt::format("quantize {} -o {} --type f16 --quiet", q(in), q(out16)));
  ASSERT_EQ(r.code, 0) << r.err;
  auto s16 = TensorFile::open(out16);
  EXPECT_EQ(s16->tensor("model.layers.0.mlp.up_proj.weight").dtype, DType::F16);
  EXPECT_LT(rel_error(A, qk::formats::read_matrix(*s16, s16->tensor("model.layers.0.mlp.up_proj.weight"))), 1e-3);
}

// GPTQ checkpoint directory: model.safetensors with qweight/qzeros/scales/g_idx + quantize_config.json
TEST_F(QuantizeModel, GptqCheckpointDirectory) {
  const fs::path in = dir_ / "m.safetensors", out = dir_ / "ckpt";
  const auto Q = qk::test::gaussian(64, 256, 21, 0.05f);
  const auto E = qk::test::gaussian(100, 64, 22, 0.05f);
  {
    qk::io::SafetensorsWriter w(in);
    w.add_tensor("model.embed_tokens.weight", DType::F32, {100, 64});
    w.add_tensor("model.layers.0.self_attn.q_proj.weight", DType::F32, {64, 256});
    w.write_tensor({reinterpret_cast<const std::byte*>(E.data()), static_cast<size_t>(E.size()) * 4});
    w.write_tensor({reinterpret_cast<const std::byte*>(Q.data()), static_cast<size_t>(Q.size()) * 4});
    w.commit();
  }
  const Result r = qtool(fmt::format("quantize {} -o {} --type int4-g128 --quiet", q(in), q(out)));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(fs::is_directory(out));
  const auto cfg = qk::gptq_hf::config_from_json(slurp(out / "quantize_config.json"));
  EXPECT_EQ(cfg.bits, 4);
  EXPECT_EQ(cfg.group_size, 128);
  EXPECT_TRUE(cfg.sym);
  EXPECT_EQ(cfg.checkpoint_format, "gptq");
  auto m = TensorFile::open(out / "model.safetensors");
  EXPECT_EQ(m->tensor("model.embed_tokens.weight").dtype, DType::F32);
  const std::string p = "model.layers.0.self_attn.q_proj";
  const auto& qw = m->tensor(p + ".qweight");
  EXPECT_EQ(qw.dtype, DType::I32);
  EXPECT_EQ(qw.shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(m->tensor(p + ".qzeros").shape, (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(m->tensor(p + ".scales").dtype, DType::F16);
  EXPECT_EQ(m->tensor(p + ".scales").shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(m->tensor(p + ".g_idx").shape, (std::vector<int64_t>{256}));
  qk::gptq_hf::PackedLinear pl;
  pl.bits = 4;
  pl.in_features = 256;
  pl.out_features = 64;
  pl.group_size = 128;
  auto copy = [&](const std::string& n, auto& v) {
    const auto b = m->bytes(m->tensor(n));
    v.resize(b.size() / sizeof(v[0]));
    std::memcpy(v.data(), b.data(), b.size());
  };
  copy(p + ".qweight", pl.qweight);
  copy(p + ".qzeros", pl.qzeros);
  copy(p + ".scales", pl.scales);
  copy(p + ".g_idx", pl.g_idx);
  for (int32_t z : pl.qzeros) EXPECT_EQ(static_cast<uint32_t>(z), 0x77777777u);
  const auto Wq = qk::gptq_hf::dequantize(pl);
  EXPECT_LT(rel_error(Q, Wq), 0.15);
  // codes and fp16 scales reproduce the library's int4 g128 quantizer on the fp16-rounded parameters
  qk::QuantScheme sc = qk::QuantScheme::per_group(4, 128, true, false);
  qk::QuantParams params = qk::compute_params(Q, sc);
  for (Eigen::Index i = 0; i < params.scale.size(); ++i)
    params.scale.data()[i] = qk::fp16_to_fp32(qk::fp32_to_fp16(params.scale.data()[i]));
  EXPECT_EQ((qk::quantize(Q, sc, &params).dequantize() - Wq).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_TRUE(leftovers({"m.safetensors", "ckpt"}).empty());
}

// GPTQ with calibration activations named after the weight: lower output error than RTN on those activations.
TEST_F(QuantizeModel, GptqWithCalibrationBeatsRtn) {
  const fs::path in = dir_ / "syn.gguf", calib = dir_ / "calib.safetensors";
  const Synthetic s = write_synthetic_gguf(in);
  // correlated activations (a few strong directions), as real layer inputs are
  const auto Z = qk::test::gaussian(512, 16, 31);
  const auto M = qk::test::gaussian(16, 256, 32);
  qk::RowMatrixXf X = Z * M + 0.1f * qk::test::gaussian(512, 256, 33);
  {
    qk::io::SafetensorsWriter w(calib);
    w.add_tensor("blk.0.attn_q.weight", DType::F32, {512, 256});
    w.write_tensor({reinterpret_cast<const std::byte*>(X.data()), static_cast<size_t>(X.size()) * 4});
    w.commit();
  }
  const fs::path rtn = dir_ / "rtn.gguf", gq = dir_ / "gptq.gguf";
  Result r = qtool(fmt::format("quantize {} -o {} --type q4_k --quiet", q(in), q(rtn)));
  ASSERT_EQ(r.code, 0) << r.err;
  r = qtool(fmt::format("quantize {} -o {} --type q4_k --method gptq --calib {} --json", q(in), q(gq), q(calib)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"method\":\"gptq\""), std::string::npos) << r.out;
  const auto& W = s.w.at("blk.0.attn_q.weight");
  auto a = TensorFile::open(rtn), b = TensorFile::open(gq);
  const auto Wr = qk::formats::read_matrix(*a, a->tensor("blk.0.attn_q.weight"));
  const auto Wg = qk::formats::read_matrix(*b, b->tensor("blk.0.attn_q.weight"));
  const double er = (X * (W - Wr).transpose()).norm(), eg = (X * (W - Wg).transpose()).norm();
  EXPECT_LT(eg, 0.9 * er) << "GPTQ output error " << eg << " vs RTN " << er;
}

// ---------------------------------------------------------------- NF4 (bitsandbytes layout)
// Decodes the safetensors NF4 layout with a decoder written from its description in docs/formats.md (high nibble
// first, absmax = nested_quant_map[code] * nested_absmax[block / 256] + nested_offset) and compares with the
// library's NF4 of the same weight.
TEST_F(QuantizeModel, Nf4SafetensorsInTheBitsandbytesLayout) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "bundled model missing";
  const fs::path out = dir_ / "nf4.safetensors";
  Result r = qtool(fmt::format("quantize {} -o {} --type nf4 --json", q(kStories), q(out)));
  ASSERT_EQ(r.code, 0) << r.err;
  auto in = TensorFile::open(kStories);
  auto f = TensorFile::open(out);
  auto raw = [&](const std::string& n) {
    const auto b = f->bytes(f->tensor(n));
    return std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), reinterpret_cast<const uint8_t*>(b.data()) + b.size());
  };
  auto floats = [&](const std::string& n) {
    const auto m = qk::formats::read_matrix(*f, f->tensor(n));
    return std::vector<float>(m.data(), m.data() + m.size());
  };
  int quantized = 0;
  for (const auto& t : in->tensors()) {
    if (t.shape.size() != 2) {
      EXPECT_EQ(f->tensor(t.name).dtype, DType::F32) << t.name;
      continue;
    }
    if (t.name == "token_embd.weight" || t.name == "output.weight") {
      EXPECT_EQ(f->tensor(t.name).dtype, DType::F32) << t.name << " is kept, as bitsandbytes does";
      continue;
    }
    ++quantized;
    const TensorInfo& w = f->tensor(t.name);
    const int64_t n = t.numel();
    ASSERT_EQ(w.dtype, DType::U8) << t.name;
    ASSERT_EQ(w.shape, (std::vector<int64_t>{(n + 1) / 2, 1})) << t.name;
    const auto codes = raw(t.name), am_codes = raw(t.name + ".absmax");
    const auto qmap = floats(t.name + ".quant_map"), nam = floats(t.name + ".nested_absmax"),
               nqmap = floats(t.name + ".nested_quant_map");
    ASSERT_EQ(qmap.size(), 16u);
    ASSERT_EQ(nqmap.size(), 256u);
    ASSERT_EQ(am_codes.size(), static_cast<size_t>((n + 63) / 64));
    const auto js = raw(t.name + ".quant_state.bitsandbytes__nf4");
    const std::string json(js.begin(), js.end());
    EXPECT_NE(json.find("\"quant_type\": \"nf4\""), std::string::npos) << json;
    EXPECT_NE(json.find(fmt::format("\"shape\": [{}, {}]", t.shape[0], t.shape[1])), std::string::npos) << json;
    EXPECT_NE(json.find("\"blocksize\": 64"), std::string::npos) << json;
    const size_t at = json.find("\"nested_offset\": ");
    ASSERT_NE(at, std::string::npos) << json;
    const float offset = std::strtof(json.c_str() + at + 17, nullptr);
    std::vector<float> decoded(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int code = i % 2 == 0 ? codes[static_cast<size_t>(i / 2)] >> 4 : codes[static_cast<size_t>(i / 2)] & 15;
      const int64_t blk = i / 64;
      const float absmax = nqmap[am_codes[static_cast<size_t>(blk)]] * nam[static_cast<size_t>(blk / 256)] + offset;
      decoded[static_cast<size_t>(i)] = qmap[static_cast<size_t>(code)] * absmax;
    }
    const auto W = qk::formats::read_matrix(*in, t);
    const auto want = qk::nf4_quantize(std::span<const float>(W.data(), static_cast<size_t>(W.size()))).dequantize();
    ASSERT_EQ(decoded.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(decoded[i], want[i]) << t.name << " element " << i;
    const qk::RowMatrixXf D = Eigen::Map<const qk::RowMatrixXf>(decoded.data(), W.rows(), W.cols());
    EXPECT_LE(rel_error(W, D), 0.15) << t.name;
  }
  EXPECT_EQ(quantized, 35);
  // GGUF cannot hold it, and it has no GPTQ grid
  r = qtool(fmt::format("quantize {} -o {} --type nf4", q(kStories), q(dir_ / "x.gguf")));
  EXPECT_EQ(r.code, 2) << r.err;
  r = qtool(fmt::format("quantize {} -o {} --type nf4 --method gptq --calib-generate", q(kStories),
                        q(dir_ / "y.safetensors")));
  EXPECT_EQ(r.code, 2) << r.err;
}

// ---------------------------------------------------------------- errors
TEST_F(QuantizeModel, ExistingOutputNeedsForce) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "bundled model missing";
  const fs::path out = dir_ / "out.gguf";
  { std::ofstream(out) << "precious"; }
  Result r = qtool(fmt::format("quantize {} -o {} --type q8_0 --quiet", q(kStories), q(out)));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(out), "precious");
  r = qtool(fmt::format("quantize {} -o {} --type q8_0 --quiet --force", q(kStories), q(out)));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NO_THROW(TensorFile::open(out));
  EXPECT_TRUE(leftovers({"out.gguf"}).empty());
}

TEST_F(QuantizeModel, BadTypeIsAUsageError) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "bundled model missing";
  const fs::path out = dir_ / "out.gguf";
  Result r = qtool(fmt::format("quantize {} -o {} --type q4_9", q(kStories), q(out)));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("q4_9"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // a ggml type into safetensors, int types into GGUF, GPTQ without calibration data
  r = qtool(fmt::format("quantize {} -o {} --type q4_0", q(kStories), q(dir_ / "x.safetensors")));
  EXPECT_EQ(r.code, 2) << r.err;
  r = qtool(fmt::format("quantize {} -o {} --type int4-g128", q(kStories), q(out)));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(leftovers({}).empty());
}

// GPTQ on a GGUF model with no calibration option calibrates on sequences sampled from the model and says so.
TEST_F(QuantizeModel, GptqWithoutCalibrationSamplesTheModel) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "bundled model missing";
  const fs::path out = dir_ / "g.gguf";
  Result r = qtool(fmt::format("quantize {} -o {} --type q4_0 --method gptq --calib-samples 8 --calib-ctx 32",
                               q(kStories), q(out)));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("--calib-generate"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(out));
}

TEST_F(QuantizeModel, InputIsNeverTheOutput) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "bundled model missing";
  const fs::path copy = dir_ / "model.gguf";
  fs::copy_file(kStories, copy);
  const std::string before = slurp(copy);
  for (const char* extra : {"", " --force"}) {
    Result r = qtool(fmt::format("quantize {} -o {} --type q8_0{}", q(copy), q(copy), extra));
    EXPECT_NE(r.code, 0) << extra;
    EXPECT_NE(r.err.find("input"), std::string::npos) << r.err;
  }
  // the same file under another spelling
  Result r = qtool(fmt::format("quantize {} -o {} --type q8_0 --force", q(copy), q(dir_ / "." / "model.gguf")));
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(slurp(copy), before);
  EXPECT_TRUE(leftovers({"model.gguf"}).empty());
}

TEST_F(QuantizeModel, TruncatedInputFailsWithoutOutput) {
  if (!fs::exists(kStories)) GTEST_SKIP() << "bundled model missing";
  const std::string all = slurp(kStories);
  const fs::path cut = dir_ / "cut.gguf", out = dir_ / "out.gguf";
  for (size_t keep : {all.size() / 2, all.size() - 100, size_t{64}}) {
    {
      std::ofstream f(cut, std::ios::binary | std::ios::trunc);
      f.write(all.data(), static_cast<std::streamsize>(keep));
    }
    Result r = qtool(fmt::format("quantize {} -o {} --type q4_0", q(cut), q(out)));
    EXPECT_EQ(r.code, 1) << "kept " << keep << ": " << r.err;
    EXPECT_NE(r.err.find("cut.gguf"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_TRUE(leftovers({"cut.gguf"}).empty());
  }
}

TEST_F(QuantizeModel, NonFiniteWeightsFailWithoutOutput) {
  const fs::path in = dir_ / "nan.safetensors", out = dir_ / "out.gguf";
  auto W = qk::test::gaussian(8, 64, 41, 0.05f);
  W(5, 17) = std::numeric_limits<float>::quiet_NaN();
  {
    qk::io::SafetensorsWriter w(in);
    w.add_tensor("model.layers.0.mlp.up_proj.weight", DType::F32, {8, 64});
    w.write_tensor({reinterpret_cast<const std::byte*>(W.data()), static_cast<size_t>(W.size()) * 4});
    w.commit();
  }
  for (const char* type : {"q8_0", "q4_k"}) {
    const Result r = qtool(fmt::format("quantize {} -o {} --type {} --quiet", q(in), q(out), type));
    EXPECT_EQ(r.code, 1) << type << ": " << r.err;
    EXPECT_NE(r.err.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  EXPECT_TRUE(leftovers({"nan.safetensors"}).empty());
}

}  // namespace
