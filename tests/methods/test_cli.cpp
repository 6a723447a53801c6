// `qtool quantize` in matrix mode: outputs, their contents, and bad input (one-line error, no output file).
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "methods_util.hpp"
#include "qk/core/pack.hpp"
#include "qk/core/params.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/tensor_file.hpp"
#include "qk/methods/hessian.hpp"

namespace qk {
namespace {

namespace fs = std::filesystem;

class QuantizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qk_methods_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Runs qtool with the arguments; returns the exit code, stderr in err_.
  int qtool(const std::string& args) {
    test::RunResult r = test::run_qtool(args, dir_);
    err_ = std::move(r.err);
    return r.code;
  }
  static std::string data(const std::string& f) { return test::test_data("methods/" + f).string(); }
  fs::path dir_;
  std::string err_;
};

TEST_F(QuantizeCli, GptqWritesCodesThatDequantizeToTheNpy) {
  const fs::path out = dir_ / "q.safetensors", deq = dir_ / "q.npy";
  const std::string W = data("P4a_stories260K_L2_wq_W.npy"), X = data("P4a_stories260K_L2_wq_X.npy");
  ASSERT_EQ(qtool("quantize " + W + " --method gptq --bits 4 --group 32 --asym --act-order --calib " + X + " -o " +
                  out.string() + " --dequantized " + deq.string()),
            0)
      << err_;
  auto f = io::TensorFile::open(out);
  const RowMatrixXf What = io::load_matrix(deq);
  const auto& codes = f->tensor("codes");
  const RowMatrixXf scales = f->read_matrix(f->tensor("scales"));
  const auto zp = f->bytes(f->tensor("zero_points"));
  const auto gi = f->bytes(f->tensor("g_idx"));
  ASSERT_EQ(codes.shape, (std::vector<int64_t>{64, 32}));
  ASSERT_EQ(scales.rows(), 64);
  ASSERT_EQ(scales.cols(), 2);
  const auto* z = reinterpret_cast<const int32_t*>(zp.data());
  const auto* g = reinterpret_cast<const int32_t*>(gi.data());
  const auto cb = f->bytes(codes);
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < 64; ++c) {
      const int u = packed_code(reinterpret_cast<const uint8_t*>(cb.data()) + r * 32, c, 4);
      const float v = scales(r, g[c]) * static_cast<float>(u - z[r * 2 + g[c]]);
      ASSERT_FLOAT_EQ(v, What(r, c)) << r << "," << c;
    }
  // The file's Ŵ reaches the reference figure.
  const test::Problem& p = test::p4a();
  EXPECT_LE(test::rel_output_error(p.X, p.W, What),
            1.02 * test::reference_figure(p.name, "gptq_w4_actorder", "E_calib"));
}

TEST_F(QuantizeCli, GptqFromASavedHessianMatchesGptqFromX) {
  const test::Problem& p = test::p4a();
  HessianAccumulator acc(p.X.cols());
  acc.add(p.X);
  acc.save(dir_ / "h.qkh");
  const std::string W = data("P4a_stories260K_L2_wq_W.npy"), X = data("P4a_stories260K_L2_wq_X.npy");
  ASSERT_EQ(qtool("quantize " + W + " --method gptq --bits 4 --group 32 --asym --calib " + (dir_ / "h.qkh").string() +
                  " -o " + (dir_ / "a.st").string() + " --dequantized " + (dir_ / "a.npy").string()),
            0)
      << err_;
  ASSERT_EQ(qtool("quantize " + W + " --method gptq --bits 4 --group 32 --asym --calib " + X + " -o " +
                  (dir_ / "b.st").string() + " --dequantized " + (dir_ / "b.npy").string()),
            0)
      << err_;
  EXPECT_TRUE(io::load_matrix(dir_ / "a.npy").isApprox(io::load_matrix(dir_ / "b.npy"), 1e-6f));
  EXPECT_EQ(qtool("quantize " + W + " --method awq --bits 4 --calib " + (dir_ / "h.qkh").string() + " -o " +
                  (dir_ / "c.st").string()),
            2);
}

TEST_F(QuantizeCli, EveryMethodRuns) {
  const std::string W = data("P4a_stories260K_L2_wq_W.npy"), X = data("P4a_stories260K_L2_wq_X.npy");
  for (const char* m : {"rtn", "awq", "smoothquant"}) {
    const fs::path out = dir_ / (std::string(m) + ".st"), deq = dir_ / (std::string(m) + ".npy");
    const std::string bits = std::string(m) == "smoothquant" ? "" : " --bits 4 --group 32";
    ASSERT_EQ(qtool("quantize " + W + " --method " + m + bits + " --calib " + X + " -o " + out.string() +
                    " --dequantized " + deq.string() + " --json"),
              0)
        << m << ": " << err_;
    EXPECT_TRUE(fs::exists(out));
    EXPECT_TRUE(fs::exists(deq));
  }
  EXPECT_TRUE(fs::exists(dir_ / "smoothquant.smooth.npy"));
  auto f = io::TensorFile::open(dir_ / "awq.st");
  EXPECT_NE(f->find("input_scale"), nullptr);
}

TEST_F(QuantizeCli, BadInputLeavesNoOutput) {
  const std::string W = data("P4a_stories260K_L2_wq_W.npy");
  const fs::path out = dir_ / "o.st", deq = dir_ / "o.npy";
  const std::string tail = " -o " + out.string() + " --dequantized " + deq.string();
  auto no_output = [&] { return !fs::exists(out) && !fs::exists(deq); };
  auto one_line = [&] { return !err_.empty() && err_.find('\n') == err_.size() - 1; };

  // X with the wrong number of features.
  io::write_npy(dir_ / "x_bad.npy", test::gaussian(10, 63, 1));
  EXPECT_NE(qtool("quantize " + W + " --method gptq --bits 4 --group 32 --calib " + (dir_ / "x_bad.npy").string() + tail), 0);
  EXPECT_TRUE(no_output());
  EXPECT_TRUE(one_line()) << err_;
  // NaN in X.
  RowMatrixXf Xn = test::gaussian(10, 64, 2);
  Xn(4, 9) = NAN;
  io::write_npy(dir_ / "x_nan.npy", Xn);
  for (const char* m : {"gptq", "awq", "smoothquant"}) {
    EXPECT_NE(qtool("quantize " + W + " --method " + m + " --bits 8 --calib " + (dir_ / "x_nan.npy").string() + tail), 0)
        << m;
    EXPECT_TRUE(no_output()) << m;
    EXPECT_TRUE(one_line()) << err_;
    EXPECT_NE(err_.find("non-finite"), std::string::npos) << err_;
  }
  // Activations so large the Hessian overflows: not positive definite whatever the damping.
  io::write_npy(dir_ / "x_huge.npy", RowMatrixXf(test::gaussian(10, 64, 3) * 1e25f));
  EXPECT_NE(qtool("quantize " + W + " --method gptq --bits 4 --calib " + (dir_ / "x_huge.npy").string() + tail), 0);
  EXPECT_TRUE(no_output());
  EXPECT_TRUE(one_line()) << err_;
  // Usage errors: exit 2.
  EXPECT_EQ(qtool("quantize " + W + " --method gptq --bits 4" + tail), 2);  // no --calib
  EXPECT_EQ(qtool("quantize " + W + " --method rtn" + tail), 2);            // no --bits
  EXPECT_EQ(qtool("quantize " + W + " --method rtn --bits 4 --group 48" + tail), 2);
  EXPECT_TRUE(no_output());
  // An existing output is kept unless --force.
  ASSERT_EQ(qtool("quantize " + W + " --method rtn --bits 4 --group 32 -o " + out.string()), 0) << err_;
  const auto size = fs::file_size(out);
  EXPECT_NE(qtool("quantize " + W + " --method rtn --bits 8 -o " + out.string()), 0);
  EXPECT_EQ(fs::file_size(out), size);
  EXPECT_EQ(qtool("quantize " + W + " --method rtn --bits 8 -f -o " + out.string()), 0) << err_;
}

}  // namespace
}  // namespace qk
