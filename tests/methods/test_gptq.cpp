// GPTQ, RTN/IntGrid and HessianAccumulator: defining properties and the reference figures of the problems.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <Eigen/LU>

#include "methods_util.hpp"
#include "qk/core/quantize.hpp"
#include "qk/methods/gptq.hpp"
#include "qk/methods/hessian.hpp"
#include "qk/methods/rtn.hpp"

namespace qk {
namespace {

using test::RowMat;

QuantScheme asym(int bits, int64_t group) { return QuantScheme::per_group(bits, group, false, false); }

TEST(IntGrid, RtnMatchesCoreQuantize) {
  for (bool sym : {false, true})
    for (int bits : {2, 3, 4, 8}) {
      const RowMat W = test::gaussian(37, 96, 11 + bits);
      const QuantScheme s = QuantScheme::per_group(bits, 32, sym, false);
      const QuantizedTensor a = rtn_quantize(W, s);
      const QuantizedTensor b = quantize(W, s);
      EXPECT_EQ(a.packed, b.packed) << s.describe();
      EXPECT_TRUE(a.params.scale.isApprox(b.params.scale)) << s.describe();
      EXPECT_EQ(a.params.zero_point, b.params.zero_point) << s.describe();
      IntGrid g(s);
      const RowMatrixXf Q = rtn(W, g);
      EXPECT_TRUE(Q.isApprox(b.dequantize(), 1e-6f)) << s.describe();
    }
}

TEST(IntGrid, PerChannelBlockIsRow) {
  IntGrid g(QuantScheme::per_channel(4, false, false));
  g.reset(3, 40);
  EXPECT_EQ(g.block_size(), 40);
  EXPECT_THROW(IntGrid(QuantScheme::per_tensor(8)), InvalidArgument);
}

TEST(Hessian, BatchesMergeAndScaling) {
  const RowMat X = test::gaussian(300, 48, 5);
  HessianAccumulator a(48), b(48), all(48);
  a.add(X.topRows(100), 1);
  b.add(X.middleRows(100, 77), 2);
  b.add(X.bottomRows(123), 2);
  a.merge(b);
  all.add(X, 2);
  const Eigen::MatrixXf ref = (2.0 / 300.0) * (X.transpose().cast<double>() * X.cast<double>()).cast<float>();
  EXPECT_EQ(a.samples(), 300);
  EXPECT_TRUE(a.hessian().isApprox(ref, 1e-5f));
  EXPECT_TRUE(all.hessian().isApprox(ref, 1e-5f));
  EXPECT_THROW(a.add(test::gaussian(4, 47, 1)), ShapeError);
  RowMat bad = X.topRows(3);
  bad(2, 7) = std::nanf("");
  EXPECT_THROW(a.add(bad), NumericError);
  HessianAccumulator c(47);
  EXPECT_THROW(a.merge(c), ShapeError);
}

TEST(Hessian, LargeDimensionTiles) {
  const RowMat X = test::gaussian(64, 600, 9);  // several 256-column tiles, a partial one
  HessianAccumulator h(600);
  h.add(X, 2);
  const Eigen::MatrixXf ref = (2.0 / 64.0) * (X.transpose().cast<double>() * X.cast<double>()).cast<float>();
  EXPECT_LT((h.hessian() - ref).cwiseAbs().maxCoeff(), 1e-4f);
}

TEST(Hessian, SaveLoadAndCorruption) {
  const auto dir = std::filesystem::temp_directory_path() / "qk_test_hessian";
  std::filesystem::create_directories(dir);
  const auto path = dir / "h.qkh";
  HessianAccumulator h(20);
  h.add(test::gaussian(50, 20, 3));
  h.save(path);
  const HessianAccumulator back = HessianAccumulator::load(path);
  EXPECT_EQ(back.samples(), 50);
  EXPECT_EQ(back.dim(), 20);
  EXPECT_TRUE(back.hessian() == h.hessian());
  auto bytes = test::read_bytes(path);
  auto write = [&](const std::vector<char>& b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  auto expect_format_error = [&](const char* what) {
    try {
      HessianAccumulator::load(path);
      ADD_FAILURE() << what << ": no error";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  };
  write(std::vector<char>(bytes.begin(), bytes.begin() + 100));
  expect_format_error("truncated");
  write(std::vector<char>(bytes.begin(), bytes.begin() + 10));
  expect_format_error("truncated header");
  auto flipped = bytes;
  flipped[200] ^= 0x10;
  write(flipped);
  expect_format_error("corrupt");
  auto badmagic = bytes;
  badmagic[0] = 'X';
  write(badmagic);
  expect_format_error("magic");
  EXPECT_THROW(HessianAccumulator::load(dir / "missing.qkh"), IoError);
  std::filesystem::remove_all(dir);
}

// The blocked Cholesky and triangular inverse against a double-precision inverse, on sizes that exercise the
// blocking (odd, not multiples of the block).
TEST(Linalg, InverseCholeskyUpper) {
  for (int n : {7, 133, 401}) {
    const RowMat B = test::gaussian(n, n, 60 + n);
    const Eigen::MatrixXf A = B * B.transpose() + static_cast<float>(n) * Eigen::MatrixXf::Identity(n, n);
    for (int threads : {1, 2}) {
      Eigen::MatrixXf U;
      ASSERT_TRUE(linalg::inverse_cholesky_upper(A, U, threads));
      EXPECT_TRUE(U.isUpperTriangular());
      const Eigen::MatrixXd Ad = A.cast<double>();
      const Eigen::MatrixXd inv = Ad.inverse();
      const Eigen::MatrixXd got = (U.transpose() * U).cast<double>();
      EXPECT_LT((got - inv).cwiseAbs().maxCoeff(), 1e-4 * inv.cwiseAbs().maxCoeff()) << n << " " << threads;
      Eigen::MatrixXf L = A;
      ASSERT_TRUE(linalg::cholesky_lower_inplace(L, threads));
      const Eigen::MatrixXf Lt = L.triangularView<Eigen::Lower>();
      EXPECT_TRUE((Lt * Lt.transpose()).isApprox(A, 1e-5f));
    }
    Eigen::MatrixXf U;
    EXPECT_FALSE(linalg::inverse_cholesky_upper(Eigen::MatrixXf(-A), U, 2));
  }
}

// With H = c·I no error propagates: GPTQ is RTN.
TEST(Gptq, IdentityHessianIsRtn) {
  const RowMat W = test::gaussian(40, 64, 21);
  const QuantScheme s = asym(4, 16);
  for (bool ao : {false, true}) {
    GptqOptions o;
    o.block_size = 24;  // blocks and groups out of step
    o.act_order = ao;
    o.threads = 2;
    IntGrid g(s);
    const GptqResult r = gptq(W, Eigen::MatrixXf::Identity(64, 64) * 3.0f, g, o);
    EXPECT_TRUE(r.dequantized.isApprox(fake_quant(W, s), 1e-6f)) << ao;
  }
}

// The error feedback must lower the Hessian-weighted error tr(D H Dᵀ) below RTN's.
TEST(Gptq, BeatsRtnOnProxyLossAndEncodes) {
  // Correlated features (a random mixing), where error feedback has something to exploit.
  const RowMat X = test::gaussian(256, 96, 31) * test::gaussian(96, 96, 33);
  const RowMat W = test::gaussian(48, 96, 32, 0.05f);
  HessianAccumulator acc(96);
  acc.add(X);
  for (bool ao : {false, true})
    for (bool st : {false, true}) {
      const QuantScheme s = asym(3, 32);
      GptqOptions o;
      o.act_order = ao;
      o.static_groups = st;
      o.block_size = 40;
      o.threads = 2;
      GptqResult info;
      const QuantizedTensor q = gptq_quantize(W, acc.hessian(), s, o, &info);
      EXPECT_TRUE(q.dequantize().isApprox(info.dequantized, 1e-6f)) << ao << st;
      EXPECT_EQ(!q.g_idx.empty(), ao && !st);
      const double eg = test::rel_output_error(X, W, info.dequantized);
      const double er = test::rel_output_error(X, W, fake_quant(W, s));
      EXPECT_LT(eg, 0.8 * er) << "act_order " << ao << " static " << st;
      // One thread gives the same result.
      o.threads = 1;
      GptqResult one;
      gptq_quantize(W, acc.hessian(), s, o, &one);
      EXPECT_TRUE(one.dequantized.isApprox(info.dequantized, 1e-5f));
    }
}

TEST(Gptq, DeadColumnsAndBadInput) {
  RowMat X = test::gaussian(128, 32, 41);
  X.col(5).setZero();
  const RowMat W = test::gaussian(16, 32, 42);
  HessianAccumulator acc(32);
  acc.add(X);
  IntGrid g(asym(4, 16));
  const GptqResult r = gptq(W, acc, g);
  EXPECT_EQ(r.dead_columns, 1);
  EXPECT_TRUE(r.dequantized.col(5).isZero());
  EXPECT_THROW(gptq(W, Eigen::MatrixXf::Identity(31, 31), g), ShapeError);
  EXPECT_THROW(gptq(W, Eigen::MatrixXf(-Eigen::MatrixXf::Identity(32, 32)), g), NumericError);
  RowMat Wn = W;
  Wn(3, 3) = INFINITY;
  EXPECT_THROW(gptq(Wn, acc, g), NumericError);
  IntGrid g3(asym(4, 12));  // 12 does not divide 32
  EXPECT_THROW(gptq(W, acc, g3), InvalidArgument);
}

TEST(Gptq, IndefiniteHessianRaisesDamping) {
  // Rank-deficient (fewer tokens than features): damp 0 fails, the automatic retry succeeds with a warning.
  const RowMat X = test::gaussian(8, 32, 51);
  const RowMat W = test::gaussian(16, 32, 52);
  HessianAccumulator acc(32);
  acc.add(X);
  Eigen::MatrixXf H = acc.hessian();
  H(0, 1) = H(1, 0) = H(0, 0) * 4;  // make it indefinite
  IntGrid g(asym(4, 16));
  GptqOptions o;
  o.damp = 0.0;
  const GptqResult r = gptq(W, H, g, o);
  EXPECT_FALSE(r.warnings.empty());
  EXPECT_GT(r.damp, 0.0);
}

// ---------------------------------------------------------------- reference figures
struct GptqCase {
  const char* method;  // reference.json key
  int bits;
  bool act_order, static_groups;
};

class GptqReference : public ::testing::TestWithParam<std::tuple<int, GptqCase>> {};

TEST_P(GptqReference, WithinTwoPercentOfReference) {
  const auto& [which, c] = GetParam();
  const test::Problem& p = which == 0 ? test::p3_small() : test::p4a();
  HessianAccumulator acc(p.X.cols());
  acc.add(p.X);
  GptqOptions o;
  o.act_order = c.act_order;
  o.static_groups = c.static_groups;
  const QuantScheme s = asym(c.bits, p.group);
  GptqResult r;
  const QuantizedTensor q = gptq_quantize(p.W, acc.hessian(), s, o, &r);
  const double ec = test::rel_output_error(p.X, p.W, r.dequantized);
  const double eh = test::rel_output_error(p.Xheld, p.W, r.dequantized);
  const double rc = test::reference_figure(p.name, c.method, "E_calib");
  const double rh = test::reference_figure(p.name, c.method, "E_held");
  RecordProperty("E_calib", std::to_string(ec));
  RecordProperty("E_held", std::to_string(eh));
  std::printf("%s %s: E_calib %.6g (ref %.6g, x%.4f)  E_held %.6g (ref %.6g, x%.4f)\n", p.name.c_str(), c.method,
              ec, rc, ec / rc, eh, rh, eh / rh);
  EXPECT_LE(ec, 1.02 * rc);
  EXPECT_LE(eh, 1.02 * rh);
  // Beats RTN with the same scheme on the calibration set.
  const double e_rtn = test::rel_output_error(p.X, p.W, fake_quant(p.W, s));
  EXPECT_LT(ec, e_rtn);
  EXPECT_TRUE(q.dequantize().isApprox(r.dequantized, 1e-6f));
}

const GptqCase kCases[] = {{"gptq_w4", 4, false, false},
                           {"gptq_w4_actorder", 4, true, false},
                           {"gptq_w4_actorder_static", 4, true, true},
                           {"gptq_w3", 3, false, false}};

INSTANTIATE_TEST_SUITE_P(Problems, GptqReference, ::testing::Combine(::testing::Values(0, 1), ::testing::ValuesIn(kCases)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == 0 ? "P3_small_" : "P4a_") +
                                  std::get<1>(info.param).method;
                         });

// The RTN figures of the reference quantizer are reproduced too (same conventions).
TEST(RtnReference, MatchesReferenceQuantizer) {
  for (const test::Problem* p : {&test::p3_small(), &test::p4a()}) {
    for (bool sym : {false, true}) {
      const QuantScheme s = QuantScheme::per_group(4, p->group, sym, false);
      const double e = test::rel_output_error(p->X, p->W, fake_quant(p->W, s));
      const double ref =
          test::reference_figure(p->name, sym ? "rtn_w4_sym_gptqquantizer" : "rtn_w4_asym_gptqquantizer", "E_calib");
      EXPECT_NEAR(e / ref, 1.0, 1e-3) << p->name << " sym " << sym;
    }
  }
}

}  // namespace
}  // namespace qk
