// safetensors: round trips for every dtype with metadata, header layout, and every validation rule.
#include <gtest/gtest.h>

#include "io_util.hpp"
#include "qk/core/half.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {
namespace {

using test::Bytes;
using test::ScratchDir;

const DType kAll[] = {DType::Bool, DType::U8,  DType::I8,  DType::F8_E5M2, DType::F8_E4M3,
                      DType::I16,  DType::U16, DType::F16, DType::BF16,    DType::I32,
                      DType::U32,  DType::F32, DType::F64, DType::I64,     DType::U64};

std::vector<std::byte> random_bytes(size_t n, uint64_t seed) {
  auto g = test::rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(g() & 0xFF);
  return v;
}

TEST(Safetensors, RoundTripsEveryDtypeWithMetadata) {
  ScratchDir dir;
  const auto path = dir / "m.safetensors";
  std::vector<std::vector<std::byte>> data;
  {
    SafetensorsWriter w(path);
    w.set_metadata("format", "pt");
    w.set_metadata("note", "quote \" backslash \\ newline \n é");
    int i = 0;
    for (DType t : kAll) {
      const std::vector<int64_t> shape = {2, i + 1};
      w.add_tensor(fmt::format("t{}.{}", i, dtype_name(t)), t, shape);
      data.push_back(random_bytes(static_cast<size_t>(2 * (i + 1)) * dtype_size(t), static_cast<uint64_t>(i)));
      ++i;
    }
    w.add_tensor("scalar", DType::F32, {});
    w.add_tensor("empty", DType::F16, {0, 4});
    for (const auto& d : data) w.write_tensor(d);
    const float one = 1.0f;
    w.write_tensor("scalar", std::as_bytes(std::span<const float>(&one, 1)));
    w.write_tensor("empty", {});
    w.commit();
  }
  const auto raw = test::file_bytes(path);
  uint64_t n;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u) << "header padded to 8";

  auto f = TensorFile::open(path);
  EXPECT_EQ(f->format(), FileFormat::Safetensors);
  ASSERT_EQ(f->tensors().size(), std::size(kAll) + 2);
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(std::get<std::string>(f->metadata()[1].value), "quote \" backslash \\ newline \n é");
  for (size_t i = 0; i < std::size(kAll); ++i) {
    const TensorInfo& t = f->tensors()[i];
    EXPECT_EQ(t.dtype, kAll[i]);
    EXPECT_EQ(t.shape, (std::vector<int64_t>{2, static_cast<int64_t>(i) + 1}));
    auto b = f->bytes(t);
    ASSERT_EQ(b.size(), data[i].size());
    EXPECT_TRUE(std::equal(b.begin(), b.end(), data[i].begin())) << t.name;
  }
  EXPECT_EQ(f->read_matrix(f->tensor("scalar"))(0, 0), 1.0f);
  EXPECT_EQ(f->read_matrix(f->tensor("empty")).size(), 0);
  EXPECT_EQ(f->tensor("empty").shape, (std::vector<int64_t>{0, 4}));
  EXPECT_THROW(f->tensor("nope"), FormatError);
  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(Safetensors, ConvertsEveryDtypeToFloat) {
  ScratchDir dir;
  const auto path = dir / "c.safetensors";
  {
    SafetensorsWriter w(path);
    const std::vector<float> f32 = {1.5f, -2.0f, 0.25f};
    w.add_tensor("f32", DType::F32, {3});
    w.add_tensor("f16", DType::F16, {3});
    w.add_tensor("bf16", DType::BF16, {3});
    w.add_tensor("f64", DType::F64, {3});
    w.add_tensor("i8", DType::I8, {3});
    w.add_tensor("u64", DType::U64, {3});
    w.add_tensor("e4m3", DType::F8_E4M3, {4});
    w.add_tensor("e5m2", DType::F8_E5M2, {3});
    w.add_tensor("bool", DType::Bool, {3});
    w.write_tensor(test::as_bytes_of(f32));
    std::vector<uint16_t> h, b;
    for (float x : f32) h.push_back(fp32_to_fp16(x)), b.push_back(fp32_to_bf16(x));
    w.write_tensor(test::as_bytes_of(h));
    w.write_tensor(test::as_bytes_of(b));
    w.write_tensor(test::as_bytes_of(std::vector<double>{1.5, -2.0, 0.25}));
    w.write_tensor(test::as_bytes_of(std::vector<int8_t>{-128, 0, 127}));
    w.write_tensor(test::as_bytes_of(std::vector<uint64_t>{0, 7, 1000000}));
    // E4M3 (OCP "fn"): 0x38 = 1.0, 0xC0 = -2.0, 0x7E = 448 (largest), 0x01 = 2^-9 (smallest subnormal).
    w.write_tensor(test::as_bytes_of(std::vector<uint8_t>{0x38, 0xC0, 0x7E, 0x01}));
    // E5M2 is the top byte of an fp16: 0x3C = 1.0, 0xC0 = -2.0, 0x7C = +Inf.
    w.write_tensor(test::as_bytes_of(std::vector<uint8_t>{0x3C, 0xC0, 0x7C}));
    w.write_tensor(test::as_bytes_of(std::vector<uint8_t>{0, 1, 0}));
    w.commit();
  }
  auto f = TensorFile::open(path);
  auto row = [&](const char* n) { return f->read_matrix(f->tensor(n)); };
  for (const char* n : {"f32", "f16", "bf16", "f64"}) {
    const RowMatrixXf m = row(n);
    EXPECT_EQ(m(0, 0), 1.5f) << n;
    EXPECT_EQ(m(0, 1), -2.0f) << n;
    EXPECT_EQ(m(0, 2), 0.25f) << n;
  }
  EXPECT_EQ(row("i8")(0, 0), -128.0f);
  EXPECT_EQ(row("u64")(0, 2), 1e6f);
  const RowMatrixXf e4 = row("e4m3");
  EXPECT_EQ(e4(0, 0), 1.0f);
  EXPECT_EQ(e4(0, 1), -2.0f);
  EXPECT_EQ(e4(0, 2), 448.0f);
  EXPECT_EQ(e4(0, 3), std::ldexp(1.0f, -9));
  const RowMatrixXf e5 = row("e5m2");
  EXPECT_EQ(e5(0, 0), 1.0f);
  EXPECT_EQ(e5(0, 1), -2.0f);
  EXPECT_TRUE(std::isinf(e5(0, 2)));
  EXPECT_EQ(row("bool")(0, 1), 1.0f);
}

// A safetensors file from a literal header and a buffer size.
std::vector<std::byte> st(const std::string& header, size_t buffer) {
  Bytes b;
  b.put<uint64_t>(header.size()).str(header).zeros(buffer);
  return b.v;
}

void expect_format_error(const std::vector<std::byte>& file, const std::string& needle) {
  try {
    TensorFile::open_memory(file, "bad.safetensors");
    ADD_FAILURE() << "accepted; expected an error containing '" << needle << "'";
  } catch (const FormatError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find(needle), std::string::npos) << w;
    EXPECT_EQ(w.rfind("bad.safetensors", 0), 0u) << "names the file first: " << w;
  }
}

TEST(Safetensors, ValidHandWrittenHeader) {
  // Unsorted entries, spaces, escapes in names: all legal.
  const std::string hdr = R"({"b": {"data_offsets": [8, 12], "dtype": "F32", "shape": [1]},
             "a\u00e9": {"dtype": "I16", "shape": [2, 2], "data_offsets": [0, 8]}}   )";
  const auto file = st(hdr, 12);
  const auto f = TensorFile::open_memory(file);
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[1].name, "a\xc3\xa9");
  EXPECT_EQ(f->tensors()[1].offset, 8u + hdr.size());
  EXPECT_EQ(f->tensors()[0].offset, 8u + hdr.size() + 8u);
}

TEST(Safetensors, RejectsEveryViolation) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NO_THROW(TensorFile::open_memory(st(ok, 8)));
  expect_format_error(st(ok, 4), "run past the data buffer");
  expect_format_error(st(ok, 12), "cover 8 bytes of the 12-byte");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                            "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "overlaps");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                            "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12), "hole");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                            "a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16), "duplicate name");
  expect_format_error(st(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype Q4");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), "non-negative");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8),
                      "overflows");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", 0),
                      "overflows");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "end 0 < begin 8");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999]}})", 8),
                      "not non-negative integers");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "needs dtype, shape and data_offsets");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8), "unknown field");
  expect_format_error(st(R"({"__metadata__":{"k":1}})", 0), "not a string");
  expect_format_error(st(R"({"__metadata__":[]})", 0), "not an object");
  expect_format_error(st(R"({"__metadata__":{"k":"a","j":"b","k":"c"}})", 0), "duplicate __metadata__ key 'k'");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8), "bad safetensors header JSON");
  expect_format_error(st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x)", 8), "text after");
  expect_format_error(st("{\"a\x01\":1}", 0), "control character");
  expect_format_error(st(R"({"\ud800":1})", 0), "surrogate");
  expect_format_error(st(std::string(100, '['), 0), "unknown format");
  expect_format_error(st("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", 0), "nested");
  // Header length past the end of the file, and over the 100 MB limit.
  Bytes b;
  b.put<uint64_t>(1000).str("{}");
  expect_format_error(b.v, "runs past the end");
  Bytes big;
  big.put<uint64_t>(100'000'001ULL).str("{}");
  expect_format_error(big.v, "exceeds 100 MB");
}

TEST(Safetensors, EmptyFileHasNoTensors) {
  ScratchDir dir;
  SafetensorsWriter w(dir / "e.safetensors");
  w.commit();
  auto f = TensorFile::open(dir / "e.safetensors");
  EXPECT_TRUE(f->tensors().empty());
}

TEST(Safetensors, WriterRejectsMisuseAndLeavesNoFile) {
  ScratchDir dir;
  const auto path = dir / "w.safetensors";
  {
    SafetensorsWriter w(path);
    w.add_tensor("a", DType::F32, {2});
    EXPECT_THROW(w.add_tensor("a", DType::F32, {2}), InvalidArgument);
    EXPECT_THROW(w.add_tensor("q", DType::Ggml, {32}), InvalidArgument);
    EXPECT_THROW(w.add_tensor("n", DType::F32, {-1}), InvalidArgument);
    w.add_tensor("b", DType::F32, {1});
    const std::vector<float> two = {1, 2};
    EXPECT_THROW(w.write_tensor("b", test::as_bytes_of(two)), InvalidArgument);  // out of order
    EXPECT_THROW(w.write_tensor(std::span<const std::byte>{}), InvalidArgument); // wrong size
    w.write_tensor("a", test::as_bytes_of(two));
    EXPECT_THROW(w.add_tensor("c", DType::F32, {1}), InvalidArgument);  // after data
    EXPECT_THROW(w.commit(), InvalidArgument);                          // 'b' missing
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(dir.count(), 0u);
}

}  // namespace
}  // namespace qk::io
