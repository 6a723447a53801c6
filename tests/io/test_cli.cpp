// qtool inspect / eval end to end: output content, JSON keys and figures against the library, exit codes.
#include <regex>

#include <gtest/gtest.h>

#include "io_util.hpp"
#include "qk/core/half.hpp"
#include "qk/core/metrics.hpp"
#include "qk/formats/ggml.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {
namespace {

using test::ScratchDir;

using Result = test::RunResult;

Result qtool(const std::string& args, const ScratchDir& dir) { return test::run_qtool(args, dir.path()); }

std::string q(const std::filesystem::path& p) {
  std::string s(1, '\'');
  s.append(p.string()).push_back('\'');
  return s;
}

// The number after "key": in a JSON text (first occurrence from `from`).
double json_num(const std::string& s, const std::string& key, size_t from = 0) {
  const size_t at = s.find("\"" + key + "\":", from);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no key " << key << " in " << s;
    return NAN;
  }
  const std::string rest = s.substr(at + key.size() + 3);
  if (rest.rfind("null", 0) == 0) return INFINITY;
  return std::stod(rest);
}

TEST(CliInspect, SummarisesTheStoriesModel) {
  ScratchDir dir;
  const auto r = qtool("inspect " + q(test::stories_gguf()), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("format:  gguf"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("metadata (19 entries)"), std::string::npos);
  EXPECT_NE(r.out.find("[512 values]"), std::string::npos) << "long arrays summarised";
  EXPECT_NE(r.out.find("tensors (48)"), std::string::npos);
  EXPECT_NE(r.out.find("[64, 172]"), std::string::npos) << "row-major shape of ffn_down";
  EXPECT_NE(r.out.find("total: 48 tensors"), std::string::npos);
  EXPECT_TRUE(r.err.empty());
}

TEST(CliInspect, JsonHasTheDocumentedKeys) {
  ScratchDir dir;
  const auto r = qtool("inspect --json " + q(test::stories_gguf()), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* k : {"\"file\":", "\"format\":\"gguf\"", "\"file_size\":1185376", "\"metadata\":[",
                        "\"key\":\"tokenizer.ggml.tokens\",\"type\":\"array<string>\",\"length\":512}",
                        "\"key\":\"llama.block_count\",\"type\":\"u32\",\"value\":5}", "\"tensors\":[",
                        "\"name\":\"blk.0.ffn_down.weight\",\"dtype\":\"F32\",\"shape\":[64,172]", "\"offset\":",
                        "\"bytes\":44032", "\"bits_per_weight\":32", "\"totals\":{\"tensors\":48"})
    EXPECT_NE(r.out.find(k), std::string::npos) << k << "\n" << r.out.substr(0, 400);
  EXPECT_EQ(json_num(r.out, "bytes", r.out.find("\"totals\"")), 1171200.0);  // 292800 floats
}

TEST(CliInspect, QuantizedTensorsShowTheirTypeAndBitsPerWeight) {
  ScratchDir dir;
  GgufWriter gw(dir / "q.gguf");
  const RowMatrixXf w2 = test::gaussian(2, 256, 4);
  const auto q4k = ggml::quantize(ggml::Type::Q4_K, w2.data(), 2, 256);
  gw.add_tensor("w", 12, {2, 256});
  gw.write_tensor(std::as_bytes(std::span<const uint8_t>(q4k)));
  gw.commit();
  const auto r = qtool("inspect " + q(dir / "q.gguf"), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("Q4_K"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("4.50"), std::string::npos) << "144 bytes per 256 weights" << r.out;
}

TEST(CliInspect, ErrorsAndExitCodes) {
  ScratchDir dir;
  auto r = qtool("inspect " + q(dir / "missing.gguf"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("qtool: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("missing.gguf"), std::string::npos);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  r = qtool("inspect", dir);
  EXPECT_EQ(r.code, 2) << r.err;
  r = qtool("inspect a b", dir);
  EXPECT_EQ(r.code, 2) << r.err;
  // A truncated file: a format error naming it.
  auto bytes = test::file_bytes(test::stories_gguf());
  bytes.resize(5000);
  test::write_file(dir / "cut.gguf", bytes);
  r = qtool("inspect " + q(dir / "cut.gguf"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cut.gguf: truncated"), std::string::npos) << r.err;
}

TEST(CliEval, TwoNpyArraysAgreeWithTheLibraryMetrics) {
  ScratchDir dir;
  const RowMatrixXf a = test::gaussian(48, 40, 11);
  const RowMatrixXf b = a + 0.01f * test::gaussian(48, 40, 12);
  const RowMatrixXf x = test::gaussian(100, 40, 13);
  write_npy(dir / "a.npy", a);
  write_npy(dir / "b.npy", b);
  write_npy(dir / "x.npy", x);
  const auto r = qtool("eval " + q(dir / "a.npy") + " " + q(dir / "b.npy") + " --calib " + q(dir / "x.npy") +
                           " --json", dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NEAR(json_num(r.out, "mse"), qk::mse(a, b), 1e-9 * qk::mse(a, b) + 1e-15);
  EXPECT_NEAR(json_num(r.out, "sqnr_db"), qk::sqnr_db(a, b), 1e-6);
  EXPECT_NEAR(json_num(r.out, "cosine"), qk::cosine(a, b), 1e-9);
  EXPECT_NEAR(json_num(r.out, "max_abs_error"), qk::max_abs_error(a, b), 1e-7);
  const double e = qk::relative_output_error(x, a, b);
  EXPECT_NEAR(json_num(r.out, "rel_output_error"), e, 1e-6 * e);
  EXPECT_NEAR(json_num(r.out, "sqnr_db", r.out.find("\"totals\"")), qk::sqnr_db(a, b), 1e-6);
  for (const char* k : {"\"a\":", "\"b\":", "\"calib\":", "\"tensors\":[", "\"name\":\"array\"", "\"shape\":[48,40]",
                        "\"dtype_a\":\"F32\"", "\"dtype_b\":\"F32\"", "\"elements\":1920", "\"only_in_a\":[]",
                        "\"only_in_b\":[]", "\"totals\":{\"tensors\":1"})
    EXPECT_NE(r.out.find(k), std::string::npos) << k << "\n" << r.out;
  // Text form: a table with the E column.
  const auto t = qtool("eval " + q(dir / "a.npy") + " " + q(dir / "b.npy") + " --calib " + q(dir / "x.npy"), dir);
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("E (calib)"), std::string::npos) << t.out;
  // The same file against itself: SQNR infinite (null in JSON), MSE 0.
  const auto s = qtool("eval --json " + q(dir / "a.npy") + " " + q(dir / "a.npy"), dir);
  EXPECT_NE(s.out.find("\"mse\":0,\"sqnr_db\":null,\"cosine\":1"), std::string::npos) << s.out;
}

TEST(CliEval, ShapeMismatchAndCalibMismatchAreOneLineErrors) {
  ScratchDir dir;
  write_npy(dir / "a.npy", test::gaussian(8, 16, 1));
  write_npy(dir / "b.npy", test::gaussian(16, 8, 2));
  write_npy(dir / "x.npy", test::gaussian(4, 7, 3));
  auto r = qtool("eval " + q(dir / "a.npy") + " " + q(dir / "b.npy"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("shape mismatch"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("a.npy:'array' is [8, 16]"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("b.npy:'array' is [16, 8]"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = qtool("eval " + q(dir / "a.npy") + " " + q(dir / "a.npy") + " --calib " + q(dir / "x.npy"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("7 columns"), std::string::npos) << r.err;
  r = qtool("eval " + q(dir / "a.npy"), dir);
  EXPECT_EQ(r.code, 2);
  r = qtool("eval " + q(dir / "a.npy") + " " + q(dir / "nope.npy"), dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("nope.npy"), std::string::npos);
}

TEST(CliEval, MixedFormatsMatchByNameWorstFirst) {
  ScratchDir dir;
  auto in = TensorFile::open(test::stories_gguf());
  // B: the model as safetensors in F16 (BF16 for one tensor, worse), one tensor dropped, one extra.
  const auto st = dir / "b.safetensors";
  {
    SafetensorsWriter w(st);
    std::vector<const TensorInfo*> keep;
    for (const auto& t : in->tensors())
      if (t.name != "output.weight") keep.push_back(&t);
    for (auto* t : keep) w.add_tensor(t->name, t->name == "blk.3.attn_k.weight" ? DType::BF16 : DType::F16, t->shape);
    w.add_tensor("extra", DType::F32, {1});
    for (auto* t : keep) {
      const RowMatrixXf m = in->read_matrix(*t);
      std::vector<uint16_t> h(static_cast<size_t>(m.size()));
      for (size_t i = 0; i < h.size(); ++i)
        h[i] = t->name == "blk.3.attn_k.weight" ? fp32_to_bf16(m.data()[i]) : fp32_to_fp16(m.data()[i]);
      w.write_tensor(test::as_bytes_of(h));
    }
    const float z = 0;
    w.write_tensor(std::as_bytes(std::span<const float>(&z, 1)));
    w.commit();
  }
  const auto r = qtool("eval --json " + q(test::stories_gguf()) + " " + q(st), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const size_t first = r.out.find("\"name\":");
  EXPECT_EQ(r.out.find("\"name\":\"blk.3.attn_k.weight\""), first) << "BF16 tensor is the worst";
  EXPECT_NE(r.out.find("\"dtype_b\":\"BF16\""), std::string::npos);
  EXPECT_NE(r.out.find("\"only_in_a\":[\"output.weight\"]"), std::string::npos) << r.out.substr(r.out.size() - 300);
  EXPECT_NE(r.out.find("\"only_in_b\":[\"extra\"]"), std::string::npos);
  EXPECT_NE(r.out.find("\"totals\":{\"tensors\":47"), std::string::npos);
  // Sorted by SQNR ascending.
  double prev = -INFINITY;
  for (size_t at = r.out.find("\"sqnr_db\":"); at < r.out.find("\"totals\""); at = r.out.find("\"sqnr_db\":", at + 1)) {
    const double v = json_num(r.out, "sqnr_db", at);
    EXPECT_GE(v, prev);
    prev = v;
  }
  // --tensor picks one.
  const auto one = qtool("eval --json --tensor blk.0.attn_q.weight " + q(test::stories_gguf()) + " " + q(st), dir);
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_NE(one.out.find("\"totals\":{\"tensors\":1,"), std::string::npos) << one.out;
  const auto none = qtool("eval --tensor nope " + q(test::stories_gguf()) + " " + q(st), dir);
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.err.find("no tensor 'nope'"), std::string::npos) << none.err;
}

TEST(CliEval, DequantizesGgufBlockTypes) {
  ScratchDir dir;
  auto in = TensorFile::open(test::stories_gguf());
  const auto out = dir / "q8.gguf";
  {
    GgufWriter w(out);
    w.copy_metadata(in->metadata());
    auto type_for = [](const TensorInfo& t) { return t.shape.size() == 2 && t.shape.back() % 32 == 0 ? 8 : 0; };
    for (const auto& t : in->tensors()) w.add_tensor(t.name, type_for(t), t.shape);
    for (const auto& t : in->tensors()) {
      if (type_for(t) == 8) {
        const RowMatrixXf m = in->read_matrix(t);
        const auto b = ggml::quantize(ggml::Type::Q8_0, m.data(), m.rows(), m.cols());
        w.write_tensor(std::as_bytes(std::span<const uint8_t>(b)));
      } else {
        w.write_tensor(in->bytes(t));
      }
    }
    w.commit();
  }
  const auto r = qtool("eval --json " + q(test::stories_gguf()) + " " + q(out), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"dtype_b\":\"Q8_0\""), std::string::npos);
  // 8-bit blocks: SQNR of every quantized tensor well above 30 dB; the worst tensor comes first.
  const double worst = json_num(r.out, "sqnr_db");
  EXPECT_GT(worst, 30.0);
  EXPECT_LT(worst, 60.0);
  EXPECT_NE(r.out.find("\"totals\":{\"tensors\":48"), std::string::npos);
}

}  // namespace
}  // namespace qk::io
