// llama2.c checkpoints as TensorFile (qk/io/llama2c.hpp): offsets and shapes on a hand-made file whose floats are
// their own index, detection only at the exact size, errors naming the file, and the bundled checkpoints' tensors
// byte for byte equal to the GGUF files llama.cpp's converter made of them (so no permutation is needed).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "io_util.hpp"
#include "qk/core/error.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/llama2c.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {
namespace {

using ::testing::HasSubstr;

struct Header {
  int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 5, seq = 4;
};

// A checkpoint whose float k (counted from the first weight) has the value k.
std::vector<std::byte> checkpoint(const Header& h, int64_t extra_bytes = 0) {
  const int64_t kv = h.dim / h.heads * h.kv_heads, V = h.vocab < 0 ? -h.vocab : h.vocab;
  int64_t floats = V * h.dim + h.layers * (2 * h.dim + 2 * h.dim * h.dim + 2 * kv * h.dim + 3 * h.hidden * h.dim) +
                   h.dim + h.seq * (h.dim / h.heads);
  if (h.vocab < 0) floats += V * h.dim;
  std::vector<std::byte> b(static_cast<size_t>(28 + 4 * floats + extra_bytes));
  const int32_t hdr[7] = {h.dim, h.hidden, h.layers, h.heads, h.kv_heads, h.vocab, h.seq};
  std::memcpy(b.data(), hdr, 28);
  for (int64_t k = 0; k < floats; ++k) {
    const float f = static_cast<float>(k);
    std::memcpy(b.data() + 28 + 4 * k, &f, 4);
  }
  return b;
}

float first_value(const TensorFile& f, const std::string& name) { return f.read_matrix(f.tensor(name))(0, 0); }

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no FormatError)";
}

TEST(Llama2c, TensorsAreSpansOfTheFileInLlama2cOrder) {
  Header h;
  h.vocab = -5;  // separate classifier
  const auto bytes = checkpoint(h);
  const auto f = TensorFile::open_memory(bytes, "tiny.bin");  // detected by its exact size
  ASSERT_EQ(f->format(), FileFormat::Llama2c);
  ASSERT_EQ(f->tensors().size(), 3u + 9u * 2u);
  const int64_t d = 8, hd = 12, kv = 4, V = 5, L = 2;
  // Offsets in floats, as run.c's memory_map_weights walks the file.
  int64_t at = 0;
  auto next = [&](int64_t n) { return static_cast<float>(std::exchange(at, at + n)); };
  const float emb = next(V * d), rms_att = next(L * d), wq = next(L * d * d), wk = next(L * kv * d),
              wv = next(L * kv * d), wo = next(L * d * d), rms_ffn = next(L * d), w1 = next(L * hd * d),
              w2 = next(L * d * hd), w3 = next(L * hd * d), rms_final = next(d);
  next(4 * (d / 2));  // RoPE tables
  const float wcls = next(V * d);
  EXPECT_EQ(first_value(*f, "token_embd.weight"), emb);
  EXPECT_EQ(first_value(*f, "output_norm.weight"), rms_final);
  EXPECT_EQ(first_value(*f, "output.weight"), wcls);
  EXPECT_EQ(first_value(*f, "blk.0.attn_norm.weight"), rms_att);
  EXPECT_EQ(first_value(*f, "blk.1.attn_norm.weight"), rms_att + d);
  EXPECT_EQ(first_value(*f, "blk.1.attn_q.weight"), wq + d * d);
  EXPECT_EQ(first_value(*f, "blk.1.attn_k.weight"), wk + kv * d);
  EXPECT_EQ(first_value(*f, "blk.1.attn_v.weight"), wv + kv * d);
  EXPECT_EQ(first_value(*f, "blk.1.attn_output.weight"), wo + d * d);
  EXPECT_EQ(first_value(*f, "blk.1.ffn_norm.weight"), rms_ffn + d);
  EXPECT_EQ(first_value(*f, "blk.1.ffn_gate.weight"), w1 + hd * d);
  EXPECT_EQ(first_value(*f, "blk.1.ffn_down.weight"), w2 + d * hd);
  EXPECT_EQ(first_value(*f, "blk.1.ffn_up.weight"), w3 + hd * d);
  EXPECT_EQ(f->tensor("blk.0.attn_k.weight").shape, (std::vector<int64_t>{kv, d}));
  EXPECT_EQ(f->tensor("blk.0.ffn_down.weight").shape, (std::vector<int64_t>{d, hd}));
  EXPECT_EQ(f->tensor("blk.0.ffn_up.weight").shape, (std::vector<int64_t>{hd, d}));
  EXPECT_EQ(f->tensor("token_embd.weight").shape, (std::vector<int64_t>{V, d}));
  // A row is contiguous: element [r, c] of wq in layer 0 is float wq + r * d + c.
  EXPECT_EQ(f->read_matrix(f->tensor("blk.0.attn_q.weight"))(3, 5), wq + 3 * d + 5);
  // Zero-copy: the bytes are the file's own.
  EXPECT_EQ(f->bytes(f->tensor("token_embd.weight")).data(), bytes.data() + 28);
  EXPECT_EQ(f->data().size(), bytes.size());
}

TEST(Llama2c, SharedClassifierHasNoOutputTensorAndMetadataLikeTheConverter) {
  const auto bytes = checkpoint(Header{});
  const auto f = open_llama2c_memory(bytes, "/models/tiny.bin");
  EXPECT_EQ(f->find("output.weight"), nullptr);
  EXPECT_EQ(f->tensors().size(), 2u + 9u * 2u);
  auto u32 = [&](const char* k) { return std::get<uint32_t>(*find_meta(f->metadata(), k)); };
  EXPECT_EQ(std::get<std::string>(*find_meta(f->metadata(), "general.architecture")), "llama");
  EXPECT_EQ(std::get<std::string>(*find_meta(f->metadata(), "general.name")), "tiny");
  EXPECT_EQ(u32("llama.context_length"), 4u);
  EXPECT_EQ(u32("llama.embedding_length"), 8u);
  EXPECT_EQ(u32("llama.feed_forward_length"), 12u);
  EXPECT_EQ(u32("llama.attention.head_count"), 2u);
  EXPECT_EQ(u32("llama.attention.head_count_kv"), 1u);
  EXPECT_EQ(u32("llama.block_count"), 2u);
  EXPECT_EQ(u32("llama.rope.dimension_count"), 4u);
  EXPECT_EQ(std::get<float>(*find_meta(f->metadata(), "llama.attention.layer_norm_rms_epsilon")), 1e-5f);
}

TEST(Llama2c, DetectedOnlyAtTheExactSize) {
  for (int64_t extra : {-1, 1, 4}) {
    auto bytes = checkpoint(Header{}, extra < 0 ? 0 : extra);
    if (extra < 0) bytes.pop_back();
    EXPECT_THAT(error_of([&] { TensorFile::open_memory(bytes, "x.bin"); }), HasSubstr("x.bin: unknown format"));
    const std::string msg = error_of([&] { open_llama2c_memory(bytes, "x.bin"); });
    EXPECT_THAT(msg, HasSubstr("x.bin: llama2.c header"));
    EXPECT_THAT(msg, HasSubstr("implies"));
    if (extra < 0) {
      EXPECT_THAT(msg, HasSubstr("(truncated)"));
    }
  }
  // Random files of every small size are never taken for checkpoints.
  auto g = test::rng(3);
  for (size_t n = 0; n < 4096; n += 7) {
    std::vector<std::byte> r(n);
    for (auto& x : r) x = static_cast<std::byte>(g());
    EXPECT_FALSE(looks_like_llama2c(r)) << n;
  }
}

TEST(Llama2c, ImplausibleHeadersAreFormatErrorsSayingWhy) {
  auto with = [](auto edit) {
    Header h;
    edit(h);
    return h;
  };
  const std::vector<std::pair<Header, std::string>> cases = {
      {with([](Header& h) { h.heads = 3; }), "n_heads = 3 does not divide dim = 8"},
      {with([](Header& h) { h.heads = 4; h.kv_heads = 3; }), "n_kv_heads = 3 does not divide n_heads = 4"},
      {with([](Header& h) { h.dim = 0; }), "dim = 0 is outside"},
      {with([](Header& h) { h.vocab = 0; }), "vocab_size = 0"},
      {with([](Header& h) { h.seq = -2; }), "seq_len = -2"},
      {with([](Header& h) { h.heads = 8; h.kv_heads = 8; }), "head dimension 1 is odd"},
  };
  for (const auto& [h, want] : cases) {
    std::vector<std::byte> b(28 + 64);
    const int32_t hdr[7] = {h.dim, h.hidden, h.layers, h.heads, h.kv_heads, h.vocab, h.seq};
    std::memcpy(b.data(), hdr, 28);
    EXPECT_THAT(error_of([&] { open_llama2c_memory(b, "m.bin"); }), HasSubstr("m.bin: not a llama2.c checkpoint: "
                                                                              "header " + want));
    EXPECT_FALSE(looks_like_llama2c(b));
  }
  EXPECT_THAT(error_of([] { open_llama2c_memory(std::vector<std::byte>(27), "m.bin"); }),
              HasSubstr("m.bin: 27 bytes, shorter than a llama2.c header"));
  // export.py's newer versions start with "ak42" (little-endian) and a version number.
  std::vector<std::byte> v1(256);
  std::memcpy(v1.data(), "24ka\x01\x00\x00\x00", 8);
  EXPECT_THAT(error_of([&] { TensorFile::open_memory(v1, "v1.bin"); }), HasSubstr("v1.bin: a llama2.c checkpoint of "
                                                                                  "export version 1"));
}

TEST(Llama2c, OpenNamesTheFile) {
  test::ScratchDir dir;
  auto bytes = checkpoint(Header{});
  bytes.resize(bytes.size() - 8);
  {
    std::ofstream o(dir / "cut.bin", std::ios::binary);
    o.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  const std::string p = (dir / "cut.bin").string();
  EXPECT_THAT(error_of([&] { open_llama2c(dir / "cut.bin"); }), HasSubstr(p + ": llama2.c header"));
  EXPECT_THROW(open_llama2c(dir / "missing.bin"), IoError);
  const auto good = checkpoint(Header{});
  {
    std::ofstream o(dir / "ok.bin", std::ios::binary);
    o.write(reinterpret_cast<const char*>(good.data()), static_cast<std::streamsize>(good.size()));
  }
  EXPECT_EQ(TensorFile::open(dir / "ok.bin")->format(), FileFormat::Llama2c);
  EXPECT_EQ(open_llama2c(dir / "ok.bin")->tensors().size(), 20u);
}

// The bundled checkpoints against the GGUF files llama.cpp's converter made of them.
class Llama2cReference : public ::testing::TestWithParam<const char*> {};

TEST_P(Llama2cReference, EveryTensorEqualsTheConvertedGgufByteForByte) {
  const std::string model = GetParam();
  QK_REQUIRE_REFERENCE(bin, "models/" + model + ".bin");
  QK_REQUIRE_REFERENCE(gguf, "models/" + model + ".gguf");
  const auto a = TensorFile::open(bin);
  const auto b = TensorFile::open(gguf);
  ASSERT_EQ(a->format(), FileFormat::Llama2c);
  // The converter always writes output.weight; both bundled models share the classifier with the embedding.
  EXPECT_EQ(a->tensors().size() + 1, b->tensors().size());
  for (const auto& t : b->tensors()) {
    const std::string src = t.name == "output.weight" && !a->find(t.name) ? "token_embd.weight" : t.name;
    const TensorInfo& s = a->tensor(src);
    EXPECT_EQ(s.shape, t.shape) << t.name;
    const auto x = a->bytes(s), y = b->bytes(t);
    ASSERT_EQ(x.size(), y.size()) << t.name;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size()), 0) << t.name << " differs";
  }
  for (const char* k : {"llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
                        "llama.attention.head_count_kv", "llama.block_count", "llama.rope.dimension_count"})
    EXPECT_EQ(std::get<uint32_t>(*find_meta(a->metadata(), k)), std::get<uint32_t>(*find_meta(b->metadata(), k))) << k;
}

INSTANTIATE_TEST_SUITE_P(Models, Llama2cReference, ::testing::Values("stories260K", "babyllama"));

}  // namespace
}  // namespace qk::io
