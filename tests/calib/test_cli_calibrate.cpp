// qtool calibrate end to end: figures against the library and the reference, per-channel output, exit codes and
// one-line errors.
#include <unistd.h>

#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "calib_test_util.hpp"
#include "qk/calib/calib.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
using qk::test::calib::Json;
using qk::test::calib::JsonParser;

// A path in single quotes for the shell (fmt, not operator+: GCC 12 gives a false -Wrestrict on
// "'" + std::string + "'").
std::string quoted(const fs::path& p) { return fmt::format("'{}'", p.string()); }

using Result = qk::test::RunResult;

class CalibrateCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qk_calib_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result qtool(const std::string& args) { return qk::test::run_qtool("calibrate " + args, dir_); }
  static std::string data(const std::string& f) { return quoted(qk::test::calib::calib_data(f)); }
  static void one_line_error(const Result& r) {
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("qtool: ", 0), 0u) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  fs::path dir_;
};

TEST_F(CalibrateCli, MinMaxJsonMatchesPyTorchReference) {
  const Result r = qtool(data("D1_gaussian.npy") + " --method minmax --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = JsonParser(r.out).parse();
  const Json& t = j["tensors"][0];
  const Json& ref = qk::test::calib::reference().at("datasets/D1/minmax/qint8_per_tensor_symmetric");
  EXPECT_EQ(static_cast<float>(t["lo"].d()), static_cast<float>(ref["min_val"].d()));
  EXPECT_EQ(static_cast<float>(t["hi"].d()), static_cast<float>(ref["max_val"].d()));
  EXPECT_NEAR(t["scale"].d(), ref["scale"].d(), 1e-7 * ref["scale"].d());
  EXPECT_EQ(t["zero_point"].d(), 0.0);
  EXPECT_EQ(t["count"].d(), 1e6);
  EXPECT_NEAR(t["predicted_mse"].d(), ref["fq_mse"].d(), 0.01 * ref["fq_mse"].d());
  EXPECT_NEAR(t["predicted_sqnr_db"].d(), ref["fq_sqnr_db"].d(), 0.05);
  EXPECT_EQ(j["method"].str, "minmax");
}

TEST_F(CalibrateCli, HistogramMethodsAgreeWithTheLibrary) {
  const auto& d = qk::test::calib::dataset("D2");
  for (const char* m : {"percentile:99.99", "entropy", "mse"}) {
    SCOPED_TRACE(m);
    const Result r = qtool(data("D2_laplace.npy") + " --method " + m + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const Json t = JsonParser(r.out).parse()["tensors"][0];
    auto o = qk::calib::make_observer(m, qk::QuantScheme::per_tensor(8));
    o->observe(d.x.data(), static_cast<int64_t>(d.x.size()));
    const auto want = o->result();
    EXPECT_EQ(static_cast<float>(t["hi"].d()), want.hi);
    EXPECT_EQ(static_cast<float>(t["scale"].d()), want.scale);
    EXPECT_NEAR(t["predicted_mse"].d(), want.predicted_mse, 1e-8 * want.predicted_mse);
  }
  // the table form names the tensor and the method
  const Result r = qtool(data("D3_relu_gaussian.npy") + " --method entropy --bits 6 --scheme asym");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("entropy calibration, u6-bit asym"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("array"), std::string::npos);
  // an asymmetric range of two-sided data has no single entropy threshold: a usage error
  const Result bad = qtool(data("D2_laplace.npy") + " --method entropy --scheme asym");
  EXPECT_EQ(bad.code, 2);
  one_line_error(bad);
}

TEST_F(CalibrateCli, PerChannelRowsForEveryChannel) {
  const Result r = qtool(data("D5_perchannel_64x16384.npy") + " --method percentile:99.99 --per-channel 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Json t = JsonParser(r.out).parse()["tensors"][0];
  ASSERT_EQ(t["channels"].arr.size(), 64u);
  const auto ref = qk::test::calib::reference()
                       .at("datasets/D5/per_channel/nvidia_per_channel/methods/percentile_99.99/amax")
                       .vec();
  const auto mx = qk::test::calib::reference().at("datasets/D5/per_channel/nvidia_per_channel/methods/max/amax").vec();
  for (size_t c = 0; c < 64; ++c) EXPECT_NEAR(t["channels"][c]["hi"].d(), ref[c], mx[c] / 2048) << c;
  const Result table = qtool(data("D5_perchannel_64x16384.npy") + " --per-channel -2");
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("  [63]"), std::string::npos);
}

TEST_F(CalibrateCli, SafetensorsAllFloatTensorsAndNamedOnes) {
  const auto path = dir_ / "acts.safetensors";
  std::vector<float> a(600), b(40);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.1f * static_cast<float>(i));
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i);
  std::vector<int32_t> ids(8, 3);
  {
    qk::io::SafetensorsWriter w(path);
    w.add_tensor("layer0.act", qk::io::DType::F32, {6, 100});
    w.add_tensor("ids", qk::io::DType::I32, {8});
    w.add_tensor("layer1.act", qk::io::DType::F32, {4, 10});
    w.write_tensor(std::as_bytes(std::span(a)));
    w.write_tensor(std::as_bytes(std::span(ids)));
    w.write_tensor(std::as_bytes(std::span(b)));
    w.commit();
  }
  Result r = qtool(quoted(path) + " --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = JsonParser(r.out).parse();
  ASSERT_EQ(j["tensors"].arr.size(), 2u);  // the integer tensor is skipped
  EXPECT_EQ(j["tensors"][1]["name"].str, "layer1.act");
  EXPECT_EQ(j["tensors"][1]["hi"].d(), 39.0);
  // moving average over the 6 rows of layer0.act (one batch each)
  r = qtool(quoted(path) + " --tensor layer0.act --method moving_average:0.5 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  qk::calib::MovingAverageMinMaxObserver o(qk::QuantScheme::per_tensor(8), 0.5f);
  for (int row = 0; row < 6; ++row) o.observe(a.data() + row * 100, 100);
  EXPECT_EQ(static_cast<float>(JsonParser(r.out).parse()["tensors"][0]["hi"].d()), o.max());
  // naming a non-float tensor is a usage error; a missing one a format error
  r = qtool(quoted(path) + " --tensor ids");
  EXPECT_EQ(r.code, 2);
  one_line_error(r);
  r = qtool(quoted(path) + " --tensor nope");
  EXPECT_EQ(r.code, 1);
  one_line_error(r);
}

TEST_F(CalibrateCli, BadFilesAndOptions) {
  // usage errors: exit 2, one line
  for (const std::string& args : {data("D1_gaussian.npy") + " --method kmeans", data("D1_gaussian.npy") + " --bits 9",
                                 data("D1_gaussian.npy") + " --method percentile:x",
                                 data("D1_gaussian.npy") + " --scheme fancy", data("D1_gaussian.npy") + " --bins 3",
                                 data("D1_gaussian.npy") + " --per-channel 2", std::string("--method mse")}) {
    SCOPED_TRACE(args);
    const Result r = qtool(args);
    EXPECT_EQ(r.code, 2);
    one_line_error(r);
  }
  // missing, not a tensor file, truncated, NaN: exit 1, one line naming the file
  const auto trunc = dir_ / "trunc.npy";
  {
    const auto bytes = qk::test::read_bytes(qk::test::calib::calib_data("D5_channel_std.npy"));
    std::ofstream(trunc, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 100));
  }
  const auto nan = dir_ / "nan.npy";
  qk::RowMatrixXf m = qk::RowMatrixXf::Ones(3, 4);
  m(2, 1) = NAN;
  qk::io::write_npy(nan, m);
  for (const auto& p : {dir_ / "missing.npy", fs::path(qk::test::calib::calib_data("reference.json")), trunc, nan}) {
    SCOPED_TRACE(p.string());
    const Result r = qtool(quoted(p));
    EXPECT_EQ(r.code, 1);
    one_line_error(r);
    EXPECT_NE(r.err.find(p.filename().string()), std::string::npos) << r.err;
  }
}

}  // namespace
