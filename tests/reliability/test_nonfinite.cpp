// No silent Inf/NaN: every tensor path either writes finite values or stops with exit 1 naming the file, the tensor
// and the row. Finite weights too large for a block type's fp16 scale, NaN in norms and embeddings, f16/bf16
// overflow, FLT_MAX in matrix mode, calibration that carries nothing (all zero, empty, NaN), and a model whose
// forward pass cannot be finite (negative norm epsilon).
#include <cfloat>
#include <cmath>
#include <limits>

#include "qk/formats/ggml.hpp"
#include "qk/formats/tensor_values.hpp"
#include "qk/io/npy.hpp"
#include "tiny_model.hpp"

namespace qk::test {
namespace {

// Every value of every tensor of a file, decoded, is finite.
bool all_finite(const fs::path& p) {
  const auto f = io::TensorFile::open(p);
  for (const auto& t : f->tensors()) {
    if (t.dtype == io::DType::I32 || t.dtype == io::DType::U8) continue;
    const auto m = formats::read_matrix(*f, t);
    if (!m.allFinite()) return false;
  }
  return true;
}

using NonFinite = ScratchTest;

TEST_F(NonFinite, BlockScalesThatOverflowFp16AreRefusedNamingTensorAndRow) {
  struct Case {
    const char* type;
    float value;
  };
  const Case cases[] = {{"q4_0", 1e6f},  {"q4_1", 1e38f}, {"q5_0", 1e38f},  {"q8_0", 1e38f}, {"q2_k", 1e38f},
                        {"q3_k", 1e38f}, {"q4_k", 1e38f}, {"q5_k", 1e38f}, {"q6_k", 1e38f}, {"iq4_nl", 1e38f}};
  for (const auto& c : cases) {
    const fs::path in = dir_ / fmt::format("in-{}.gguf", c.type), out = dir_ / fmt::format("out-{}.gguf", c.type);
    TinyModel o;
    o.dim = o.hidden = 256;
    o.edit = [&](const std::string& n, io::RowMatrixXf& m) {
      if (n == "blk.0.attn_q.weight") m(3, 5) = c.value;
    };
    write_tiny_model(in, o);
    const auto r = qtool(fmt::format("quantize {} -o {} --type {} -q", q(in), q(out), c.type));
    EXPECT_EQ(r.code, 1) << c.type << ": " << r.err;
    EXPECT_NE(r.err.find("blk.0.attn_q.weight"), std::string::npos) << c.type << ": " << r.err;
    EXPECT_NE(r.err.find("row 3"), std::string::npos) << c.type << ": " << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  // the same directly: ggml::quantize refuses instead of writing an Inf scale
  std::vector<float> row(256, 0.5f);
  row[7] = 1e38f;
  EXPECT_THROW(ggml::quantize(ggml::Type::Q8_0, row.data(), 1, 256, nullptr, 1), NumericError);
  EXPECT_THROW(ggml::quantize(ggml::Type::Q4_K, row.data(), 1, 256, nullptr, 1), NumericError);
  row[7] = 6e4f;  // within fp16: encoded
  EXPECT_NO_THROW(ggml::quantize(ggml::Type::Q8_0, row.data(), 1, 256, nullptr, 1));
}

TEST_F(NonFinite, EveryTensorPathRefusesNaNAndOverflow) {
  struct Case {
    const char* tensor;
    float value;
    const char* type;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const Case cases[] = {
      {"blk.0.attn_norm.weight", nan, "q8_0"}, {"blk.0.attn_norm.weight", nan, "int4-g32"},
      {"blk.0.attn_norm.weight", nan, "nf4"},  {"blk.0.attn_norm.weight", nan, "f32"},
      {"output_norm.weight", inf, "f16"},      {"token_embd.weight", nan, "int4-g32"},
      {"token_embd.weight", nan, "nf4"},       {"token_embd.weight", nan, "q4_0"},
      {"blk.0.attn_k.weight", nan, "f16"},     {"blk.0.attn_k.weight", 1e38f, "f16"},
      {"blk.0.attn_k.weight", nan, "bf16"},    {"blk.0.attn_k.weight", inf, "bf16"},
      {"blk.0.ffn_down.weight", 1e38f, "q4_k"},  // rows of 128: the F16 fallback
      {"output.weight", nan, "q4_0"},
  };
  int i = 0;
  for (const auto& c : cases) {
    const fs::path in = dir_ / fmt::format("in{}.gguf", i);
    const std::string ext = std::string(c.type).rfind("int", 0) == 0 ? "" : (std::string(c.type) == "nf4" ? ".safetensors" : ".gguf");
    const fs::path out = dir_ / fmt::format("out{}{}", i++, ext);
    TinyModel o;
    o.edit = [&](const std::string& n, io::RowMatrixXf& m) {
      if (n == c.tensor) m(0, 1) = c.value;
    };
    write_tiny_model(in, o);
    const auto r = qtool(fmt::format("quantize {} -o {} --type {} -q", q(in), q(out), c.type));
    const std::string what = fmt::format("{} = {} with --type {}", c.tensor, c.value, c.type);
    EXPECT_EQ(r.code, 1) << what << ": " << r.err;
    EXPECT_NE(r.err.find(c.tensor), std::string::npos) << what << ": " << r.err;
    EXPECT_FALSE(fs::exists(out)) << what;
  }
}

TEST_F(NonFinite, MatrixModeNeverWritesNonFiniteCodesOrValues) {
  const fs::path x = dir_ / "x.npy";
  io::write_npy(x, io::RowMatrixXf(gaussian(64, 32, 2)));
  for (const float v : {FLT_MAX, 3e38f, -3e38f}) {
    for (const char* method : {"rtn", "gptq"}) {
      io::RowMatrixXf W = gaussian(16, 32, 1);
      W(2, 3) = v;
      const fs::path w = dir_ / "w.npy", out = dir_ / "o.safetensors", deq = dir_ / "d.npy";
      io::write_npy(w, W);
      const auto r = qtool(fmt::format("quantize {} --method {} --bits 4 --group 16 --calib {} -o {} --dequantized {} -q -f",
                                       q(w), method, q(x), q(out), q(deq)));
      const std::string what = fmt::format("{} with W[2,3] = {}", method, v);
      if (r.code == 0) {
        EXPECT_TRUE(all_finite(out)) << what;
        EXPECT_TRUE(all_finite(deq)) << what;
      } else {
        EXPECT_EQ(r.code, 1) << what << ": " << r.err;
        EXPECT_NE(r.err.find("w.npy"), std::string::npos) << what << ": names the file: " << r.err;
        EXPECT_FALSE(fs::exists(out)) << what;
      }
      fs::remove(out);
      fs::remove(deq);
    }
  }
}

TEST_F(NonFinite, CalibrationThatCarriesNothingIsRefused) {
  const fs::path w = dir_ / "w.npy", out = dir_ / "o.safetensors";
  io::write_npy(w, io::RowMatrixXf(gaussian(16, 32, 1)));
  const fs::path zero = dir_ / "zero.npy", empty = dir_ / "empty.npy", nan = dir_ / "nan.npy";
  io::write_npy(zero, io::RowMatrixXf(io::RowMatrixXf::Zero(64, 32)));
  io::write_npy(empty, io::RowMatrixXf(0, 32));
  io::RowMatrixXf X = gaussian(64, 32, 3);
  X(5, 6) = std::numeric_limits<float>::quiet_NaN();
  io::write_npy(nan, X);
  for (const char* method : {"gptq", "awq", "rtn"}) {
    for (const auto& c : {zero, empty, nan}) {
      if (std::string(method) == "rtn" && c != nan) continue;  // rtn only reports E: zero or empty X is no error
      const auto r = qtool(fmt::format("quantize {} --method {} --bits 4 --calib {} -o {} -q", q(w), method, q(c), q(out)));
      EXPECT_EQ(r.code, 1) << method << " " << c.filename() << ": " << r.err;
      EXPECT_NE(r.err.find(c.filename().string()), std::string::npos) << method << ": names the file: " << r.err;
      EXPECT_FALSE(fs::exists(out));
      fs::remove(out);
    }
  }
}

TEST_F(NonFinite, EvalOfAModelThatCannotBeFiniteIsAnError) {
  const fs::path a = dir_ / "a.gguf", b = dir_ / "b.gguf", ids = dir_ / "ids.i32";
  write_tiny_model(a);
  TinyModel o;
  o.eps = -1.0f;
  write_tiny_model(b, o);
  write_token_file(ids, 128);
  const auto r = qtool(fmt::format("eval {} {} --tokens {} --ctx 32", q(a), q(b), q(ids)));
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("b.gguf"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("nan"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace qk::test
