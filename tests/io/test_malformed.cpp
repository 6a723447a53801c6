// Hostile input: every prefix of small valid files, random byte corruption, and the real model's header cut at
// every length. Each must give qk::FormatError (or, where the cut leaves a valid file, a file whose tensors all
// lie inside it) — never a crash or an out-of-bounds read (the sanitizer run checks the latter).
#include <gtest/gtest.h>

#include "io_util.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/npy.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {
namespace {

using test::ScratchDir;

std::vector<std::byte> small_npy(const ScratchDir& dir) {
  write_npy(dir / "s.npy", test::gaussian(3, 5, 1));
  return test::file_bytes(dir / "s.npy");
}

std::vector<std::byte> small_safetensors(const ScratchDir& dir) {
  SafetensorsWriter w(dir / "s.safetensors");
  w.set_metadata("format", "pt");
  w.add_tensor("w", DType::F16, {2, 3});
  w.add_tensor("b", DType::F32, {3});
  w.write_tensor(std::vector<std::byte>(12, std::byte{0x3c}));
  w.write_tensor(std::vector<std::byte>(12));
  w.commit();
  return test::file_bytes(dir / "s.safetensors");
}

std::vector<std::byte> small_gguf(const ScratchDir& dir) {
  GgufWriter w(dir / "s.gguf");
  w.set("general.architecture", std::string("llama"));
  auto a = std::make_shared<MetaArray>();
  a->element_type = static_cast<int>(GgufType::String);
  a->values = {std::string("x"), std::string("yz")};
  w.set("tok", a);
  w.set("eps", 1e-5f);
  w.add_tensor("q", 8, {2, 32});
  w.add_tensor("n", 0, {3});
  w.write_tensor(std::vector<std::byte>(68));
  w.write_tensor(std::vector<std::byte>(12));
  w.commit();
  return test::file_bytes(dir / "s.gguf");
}

// Opens `bytes` from an exact-size heap copy (so any over-read hits the allocation's end) and reads every tensor.
// Returns true when the file was accepted; only qk::Error may escape the library.
bool try_open(std::span<const std::byte> bytes, uint64_t* max_end = nullptr) {
  std::unique_ptr<std::byte[]> copy(new std::byte[bytes.size() + 1]);
  if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
  try {
    auto f = TensorFile::open_memory({copy.get(), bytes.size()}, "fuzz");
    uint64_t end = 0;
    for (const auto& t : f->tensors()) {
      EXPECT_LE(t.offset + t.nbytes, bytes.size()) << t.name;
      end = std::max(end, t.offset + t.nbytes);
      try {
        (void)f->read_matrix(t);
      } catch (const qk::Error&) {
      }
    }
    if (max_end) *max_end = end;
    return true;
  } catch (const qk::FormatError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("fuzz: ", 0), 0u) << "message names the file: " << e.what();
    return false;
  }
}

enum class Kind { Npy, Safetensors, Gguf };

class Malformed : public ::testing::TestWithParam<Kind> {
 protected:
  std::vector<std::byte> valid() {
    switch (GetParam()) {
      case Kind::Npy: return small_npy(dir_);
      case Kind::Safetensors: return small_safetensors(dir_);
      case Kind::Gguf: return small_gguf(dir_);
    }
    return {};
  }
  ScratchDir dir_;
};

TEST_P(Malformed, EveryTruncationIsAFormatError) {
  const auto file = valid();
  uint64_t data_end = 0;
  ASSERT_TRUE(try_open(file, &data_end));
  for (size_t n = 0; n < file.size(); ++n) {
    const bool ok = try_open(std::span<const std::byte>(file).first(n));
    if (GetParam() == Kind::Gguf && n >= data_end) continue;  // cutting only the last tensor's padding is legal
    EXPECT_FALSE(ok) << "prefix of " << n << " of " << file.size() << " bytes accepted";
  }
}

TEST_P(Malformed, RandomCorruptionNeverCrashes) {
  const auto file = valid();
  auto g = test::rng(42 + static_cast<uint64_t>(GetParam()));
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto m = file;
    const int edits = 1 + static_cast<int>(g() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = g() % m.size();
      switch (g() % 4) {
        case 0: m[at] ^= static_cast<std::byte>(1u << (g() % 8)); break;
        case 1: m[at] = static_cast<std::byte>(g() & 0xFF); break;
        case 2: m[at] = std::byte{0xFF}; break;
        case 3:  // a large little-endian integer field
          for (size_t k = at; k < std::min(m.size(), at + 8); ++k) m[k] = static_cast<std::byte>(g() & 0xFF);
          break;
      }
    }
    if (g() % 8 == 0) m.resize(g() % m.size());
    accepted += try_open(m);
  }
  RecordProperty("accepted", accepted);
}

INSTANTIATE_TEST_SUITE_P(Formats, Malformed, ::testing::Values(Kind::Npy, Kind::Safetensors, Kind::Gguf),
                         [](const auto& info) {
                           return info.param == Kind::Npy ? "npy" : info.param == Kind::Gguf ? "gguf" : "safetensors";
                         });

TEST(MalformedModel, StoriesHeaderCutAtEveryLength) {
  const auto file = test::file_bytes(test::stories_gguf());
  ASSERT_GT(file.size(), 20000u);
  // The header (metadata + tensor infos) ends at byte 13430: cut at every length up to a little past it.
  for (size_t n = 0; n < 13500; ++n) EXPECT_FALSE(try_open(std::span<const std::byte>(file).first(n))) << n;
  EXPECT_FALSE(try_open(std::span<const std::byte>(file).first(file.size() - 1)));
  EXPECT_TRUE(try_open(file));
}

TEST(MalformedModel, MissingAndEmptyFiles) {
  ScratchDir dir;
  EXPECT_THROW(TensorFile::open(dir / "absent.gguf"), IoError);
  EXPECT_THROW(TensorFile::open(dir.path()), IoError);
  test::write_file(dir / "empty.npy", {});
  try {
    TensorFile::open(dir / "empty.npy");
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("empty.npy: empty file"), std::string::npos) << e.what();
  }
  const std::string junk = "hello, not a tensor file";
  test::write_file(dir / "junk.bin", std::as_bytes(std::span<const char>(junk.data(), junk.size())));
  EXPECT_THROW(TensorFile::open(dir / "junk.bin"), FormatError);
}

TEST(MalformedModel, CallerMadeTensorInfoCannotReadOutOfBounds) {
  auto f = TensorFile::open(test::stories_gguf());
  TensorInfo t = f->tensors().back();
  t.offset = f->file_size() - 4;
  EXPECT_THROW(f->bytes(t), FormatError);
  t.offset = UINT64_MAX - 2;
  EXPECT_THROW(f->read_matrix(t), FormatError);
}

}  // namespace
}  // namespace qk::io
