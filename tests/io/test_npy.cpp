// .npy: round trips for every dtype and rank, headers of versions 1-3, the reference problems, bad headers.
#include <gtest/gtest.h>

#include "io_util.hpp"
#include "qk/core/half.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {
namespace {

using test::Bytes;
using test::ScratchDir;

// Encodes small integers (exact in every dtype) as `dtype` bytes.
std::vector<std::byte> encode(DType t, const std::vector<int>& vals) {
  Bytes b;
  for (int v : vals) {
    switch (t) {
      case DType::F32: b.put<float>(static_cast<float>(v)); break;
      case DType::F64: b.put<double>(v); break;
      case DType::F16: b.put<uint16_t>(fp32_to_fp16(static_cast<float>(v))); break;
      case DType::BF16: b.put<uint16_t>(fp32_to_bf16(static_cast<float>(v))); break;
      case DType::I8: b.put<int8_t>(static_cast<int8_t>(v)); break;
      case DType::U8: b.put<uint8_t>(static_cast<uint8_t>(v)); break;
      case DType::I16: b.put<int16_t>(static_cast<int16_t>(v)); break;
      case DType::U16: b.put<uint16_t>(static_cast<uint16_t>(v)); break;
      case DType::I32: b.put<int32_t>(v); break;
      case DType::U32: b.put<uint32_t>(static_cast<uint32_t>(v)); break;
      case DType::I64: b.put<int64_t>(v); break;
      case DType::U64: b.put<uint64_t>(static_cast<uint64_t>(v)); break;
      case DType::Bool: b.put<uint8_t>(v != 0); break;
      case DType::F8_E4M3: case DType::F8_E5M2: case DType::Ggml: ADD_FAILURE() << "not an npy dtype"; break;
    }
  }
  return b.v;
}

bool is_signed(DType t) {
  return t == DType::F32 || t == DType::F64 || t == DType::F16 || t == DType::BF16 || t == DType::I8 ||
         t == DType::I16 || t == DType::I32 || t == DType::I64;
}

std::vector<int> values_for(DType t, size_t n) {
  std::vector<int> v(n);
  for (size_t i = 0; i < n; ++i) {
    const int x = static_cast<int>(i % 7);
    v[i] = t == DType::Bool ? (x & 1) : (is_signed(t) ? x - 3 : x);
  }
  return v;
}

class NpyDtype : public ::testing::TestWithParam<DType> {};

TEST_P(NpyDtype, RoundTripsEveryRank) {
  const DType t = GetParam();
  ScratchDir dir;
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {3, 4}, {2, 3, 5}, {0, 3}, {1, 1, 1, 7}};
  for (const auto& shape : shapes) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    const auto vals = values_for(t, static_cast<size_t>(n));
    const auto bytes = encode(t, vals);
    const auto path = dir / "a.npy";
    write_npy(path, t, shape, bytes);
    auto f = TensorFile::open(path);
    EXPECT_EQ(f->format(), FileFormat::Npy);
    ASSERT_EQ(f->tensors().size(), 1u);
    const TensorInfo& ti = f->tensors()[0];
    EXPECT_EQ(ti.dtype, t);
    EXPECT_EQ(ti.shape, shape);
    EXPECT_EQ(ti.offset % 64, 0u) << "data starts at a multiple of 64";
    auto got = f->bytes(ti);
    ASSERT_EQ(got.size(), bytes.size());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), bytes.begin()));
    const RowMatrixXf m = f->read_matrix(ti);
    EXPECT_EQ(m.size(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(m.data()[i], static_cast<float>(vals[static_cast<size_t>(i)]));
  }
  EXPECT_EQ(dir.count(), 1u) << "no temporary left behind";
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, NpyDtype,
                         ::testing::Values(DType::F32, DType::F16, DType::F64, DType::I8, DType::U8, DType::I16,
                                           DType::U16, DType::I32, DType::U32, DType::I64, DType::U64, DType::Bool),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Npy, FloatMatrixRoundTripIsExact) {
  ScratchDir dir;
  const RowMatrixXf m = test::gaussian(17, 33, 7);
  write_npy(dir / "m.npy", m);
  EXPECT_EQ(load_matrix(dir / "m.npy"), m);
}

TEST(Npy, DescrSpelling) {
  EXPECT_EQ(npy_descr(DType::F32), "<f4");
  EXPECT_EQ(npy_descr(DType::F16), "<f2");
  EXPECT_EQ(npy_descr(DType::I8), "|i1");
  EXPECT_EQ(npy_descr(DType::U8), "|u1");
  EXPECT_EQ(npy_descr(DType::Bool), "|b1");
  EXPECT_THROW(npy_descr(DType::BF16), InvalidArgument);
}

// A header of any version, written by hand as numpy does.
std::vector<std::byte> make_npy(int major, const std::string& dict, std::span<const std::byte> data) {
  Bytes b;
  b.str("\x93NUMPY").put<uint8_t>(static_cast<uint8_t>(major)).put<uint8_t>(0);
  std::string h = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  if (major == 1) b.put<uint16_t>(static_cast<uint16_t>(h.size()));
  else b.put<uint32_t>(static_cast<uint32_t>(h.size()));
  b.str(h);
  b.v.insert(b.v.end(), data.begin(), data.end());
  return b.v;
}

TEST(Npy, ReadsVersions1To3) {
  const auto data = encode(DType::F32, {1, 2, 3, 4, 5, 6});
  for (int major : {1, 2, 3}) {
    const auto file = make_npy(major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data);
    auto f = TensorFile::open_memory(file, "v.npy");
    const RowMatrixXf m = f->read_matrix(f->tensors()[0]);
    ASSERT_EQ(m.rows(), 2);
    ASSERT_EQ(m.cols(), 3);
    EXPECT_EQ(m(1, 2), 6.0f) << "version " << major;
  }
  // Key order, double quotes and no trailing comma are all legal Python.
  const auto file = make_npy(1, "{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<f4\"}", data);
  EXPECT_EQ(TensorFile::open_memory(file)->tensors()[0].shape, std::vector<int64_t>{6});
}

TEST(Npy, RejectsFortranOrderBigEndianAndStructured) {
  const auto data = encode(DType::F32, {1, 2, 3, 4, 5, 6});
  auto expect_error = [&](const std::string& dict, const std::string& needle) {
    const auto file = make_npy(1, dict, data);
    try {
      TensorFile::open_memory(file, "bad.npy");
      ADD_FAILURE() << "accepted: " << dict;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.npy"), std::string::npos) << e.what();
    }
  };
  expect_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "Fortran");
  expect_error("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", "big-endian");
  expect_error("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", "unsupported .npy dtype");
  expect_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }", "structured");
  expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", "needs 32");
  expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", "needs 16");
  expect_error("{'descr': '<f4', 'fortran_order': False}", "lacks");
  expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (9999999999999, 9999999999999, 99999999), }",
               "overflows");
  expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", "non-negative");
  // Version 4 does not exist.
  auto v4 = make_npy(3, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", data);
  v4[6] = std::byte{4};
  EXPECT_THROW(TensorFile::open_memory(v4), FormatError);
}

TEST(Npy, ReadsTheBundledProblemMatrix) {
  // P4a_stories260K_L2_wq_W.npy: 64 x 64 float32 (copied from shared/data/problems).
  auto f = TensorFile::open(test::test_data("io/P4a_stories260K_L2_wq_W.npy"));
  ASSERT_EQ(f->tensors().size(), 1u);
  EXPECT_EQ(f->tensors()[0].dtype, DType::F32);
  EXPECT_EQ(f->tensors()[0].shape, (std::vector<int64_t>{64, 64}));
  const RowMatrixXf w = load_matrix(f->path());
  EXPECT_TRUE(w.allFinite());
  EXPECT_GT(w.cwiseAbs().maxCoeff(), 0.0f);
}

TEST(Npy, ReadsTheReferenceProblems) {
  QK_REQUIRE_REFERENCE(w, "problems/P3_small_W.npy");
  const RowMatrixXf W = load_matrix(w);
  EXPECT_EQ(W.rows(), 512);
  EXPECT_EQ(W.cols(), 512);
  const RowMatrixXf X = load_matrix(w.parent_path() / "P3_small_X.npy");
  EXPECT_EQ(X.rows(), 1024);
  EXPECT_EQ(X.cols(), 512);
  // The recipe: W ~ N(0, 0.02²) with 0.1% outliers x10, so the standard deviation is close to 0.02.
  const double sd = std::sqrt(W.cast<double>().squaredNorm() / static_cast<double>(W.size()));
  EXPECT_NEAR(sd, 0.02 * std::sqrt(1 + 0.001 * 99), 0.002);
  auto ch = TensorFile::open(w.parent_path() / "P3_small_outlier_channels.npy");
  EXPECT_EQ(ch->tensors()[0].shape.size(), 1u);
}

TEST(Npy, StreamingWriterChecksTheByteCount) {
  ScratchDir dir;
  {
    NpyWriter w(dir / "s.npy", DType::I32, {4});
    const auto part = encode(DType::I32, {1, 2});
    w.append(part);
    EXPECT_THROW(w.commit(), InvalidArgument);
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "s.npy"));
  EXPECT_EQ(dir.count(), 0u) << "the temporary is removed";
  {
    NpyWriter w(dir / "s.npy", DType::I32, {4});
    const auto part = encode(DType::I32, {1, 2});
    w.append(part);
    w.append(part);
    EXPECT_THROW(w.append(part), InvalidArgument);
    w.commit();
  }
  EXPECT_EQ(load_matrix(dir / "s.npy")(0, 3), 2.0f);
}

}  // namespace
}  // namespace qk::io
