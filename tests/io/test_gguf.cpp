// GGUF: the bundled stories260K model, writer round trips (every metadata type, nested arrays, alignment,
// block types), conversion keeping metadata, and validation of every header field.
#include <gtest/gtest.h>

#include "io_util.hpp"
#include "qk/core/half.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/safetensors.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {
namespace {

using test::Bytes;
using test::ScratchDir;

TEST(Gguf, TypeTable) {
  // Sizes from ggml-common.h block structs.
  EXPECT_EQ(ggml_type_info(8)->type_size, 34);   // Q8_0: fp16 d + 32 x i8
  EXPECT_EQ(ggml_type_info(2)->type_size, 18);   // Q4_0
  EXPECT_EQ(ggml_type_info(12)->type_size, 144); // Q4_K
  EXPECT_EQ(ggml_type_info(14)->type_size, 210); // Q6_K
  EXPECT_EQ(ggml_type_info(15)->type_size, 292); // Q8_K
  EXPECT_EQ(ggml_type_info(12)->block_size, 256);
  EXPECT_EQ(ggml_type_info(4), nullptr);         // removed Q4_2
  EXPECT_EQ(ggml_type_from_name("q4_k"), 12);
  EXPECT_EQ(ggml_type_from_name("BF16"), 30);
  EXPECT_EQ(ggml_type_from_name("Q9"), -1);
  EXPECT_EQ(ggml_nbytes(8, {3, 64}), 3u * 2u * 34u);
  EXPECT_THROW(ggml_nbytes(8, {3, 48}), InvalidArgument);
}

TEST(Gguf, ReadsTheBundledStoriesModel) {
  auto f = TensorFile::open(test::stories_gguf());
  EXPECT_EQ(f->format(), FileFormat::Gguf);
  EXPECT_EQ(f->tensors().size(), 48u);  // 3 + 5 layers x 9
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(std::get<std::string>(*find_meta(f->metadata(), "general.architecture")), "llama");
  EXPECT_EQ(std::get<uint32_t>(*find_meta(f->metadata(), "llama.feed_forward_length")), 172u);
  // llama.cpp's converter writes no add_space_prefix: its default (true) applies.
  EXPECT_EQ(find_meta(f->metadata(), "tokenizer.ggml.add_space_prefix"), nullptr);
  EXPECT_EQ(std::get<std::string>(*find_meta(f->metadata(), "tokenizer.ggml.model")), "llama");
  const auto& toks = std::get<std::shared_ptr<MetaArray>>(*find_meta(f->metadata(), "tokenizer.ggml.tokens"));
  EXPECT_EQ(toks->element_type, 8);
  ASSERT_EQ(toks->values.size(), 512u);
  EXPECT_EQ(std::get<std::string>(toks->values[1]), "<s>");
  // Row-major shapes: GGUF's ne = [64, 512] for the embedding becomes [512, 64].
  const TensorInfo& emb = f->tensor("token_embd.weight");
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(emb.dtype, DType::F32);
  EXPECT_EQ(emb.ggml_type, 0);
  EXPECT_EQ(f->tensor("blk.0.ffn_down.weight").shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(f->tensor("blk.0.ffn_up.weight").shape, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(f->tensor("output_norm.weight").shape, (std::vector<int64_t>{64}));
  uint64_t total = 0;
  for (const auto& t : f->tensors()) {
    EXPECT_EQ(t.offset % 32, 0u) << t.name;
    EXPECT_EQ(t.nbytes, static_cast<uint64_t>(t.numel()) * 4) << t.name;
    total += t.nbytes;
  }
  EXPECT_LE(total, f->file_size());
  const RowMatrixXf norm = f->read_matrix(f->tensor("output_norm.weight"));
  EXPECT_EQ(norm.rows(), 1);
  EXPECT_EQ(norm.cols(), 64);
  EXPECT_TRUE(norm.allFinite());
  const RowMatrixXf down = f->read_matrix(f->tensor("blk.0.ffn_down.weight"));
  EXPECT_EQ(down.rows(), 64);
  EXPECT_EQ(down.cols(), 172);
}

TEST(Gguf, LayerTwoQueryMatchesTheProblemMatrix) {
  // P4a's W is the same layer's query weight; llama.cpp's converter permutes q rows for its RoPE layout, so
  // compare the multiset of values.
  auto f = TensorFile::open(test::stories_gguf());
  RowMatrixXf q = f->read_matrix(f->tensor("blk.2.attn_q.weight"));
  RowMatrixXf w = load_matrix(test::test_data("io/P4a_stories260K_L2_wq_W.npy"));
  ASSERT_EQ(q.size(), w.size());
  std::sort(q.data(), q.data() + q.size());
  std::sort(w.data(), w.data() + w.size());
  EXPECT_EQ(q, w);
}

std::shared_ptr<MetaArray> arr(GgufType t, std::vector<MetaValue> v) {
  auto a = std::make_shared<MetaArray>();
  a->element_type = static_cast<int>(t);
  a->values = std::move(v);
  return a;
}

// Deep equality of metadata values.
bool same(const MetaValue& a, const MetaValue& b) {
  if (a.index() != b.index()) return false;
  if (auto* x = std::get_if<std::shared_ptr<MetaArray>>(&a)) {
    const auto& y = std::get<std::shared_ptr<MetaArray>>(b);
    if ((*x)->element_type != y->element_type || (*x)->values.size() != y->values.size()) return false;
    for (size_t i = 0; i < y->values.size(); ++i)
      if (!same((*x)->values[i], y->values[i])) return false;
    return true;
  }
  return a == b;
}

std::vector<MetaEntry> every_type() {
  return {
      {"general.architecture", std::string("llama")},
      {"k.u8", uint8_t{200}},
      {"k.i8", int8_t{-100}},
      {"k.u16", uint16_t{60000}},
      {"k.i16", int16_t{-30000}},
      {"k.u32", uint32_t{4000000000u}},
      {"k.i32", int32_t{-2000000000}},
      {"k.f32", 3.25f},
      {"k.bool", true},
      {"k.string", std::string("héllo\0world", 12)},
      {"k.u64", uint64_t{1} << 60},
      {"k.i64", -(int64_t{1} << 60)},
      {"k.f64", 2.5e300},
      {"k.arr.f32", arr(GgufType::F32, {1.0f, 2.0f})},
      {"k.arr.str", arr(GgufType::String, {std::string("a"), std::string("")})},
      {"k.arr.empty", arr(GgufType::U64, {})},
      {"k.arr.nested", arr(GgufType::Array, {arr(GgufType::I8, {int8_t{1}, int8_t{-1}}),
                                            arr(GgufType::Array, {arr(GgufType::Bool, {false})})})},
  };
}

TEST(Gguf, WriterRoundTripsEveryMetadataTypeAndTensorType) {
  for (uint32_t alignment : {32u, 64u, 1u}) {
    ScratchDir dir;
    const auto path = dir / "rt.gguf";
    const auto meta = every_type();
    const std::vector<float> f32 = {1, -2, 3, 4.5f, 5, 6};
    std::vector<uint16_t> f16;
    for (float x : f32) f16.push_back(fp32_to_fp16(x));
    std::vector<std::byte> q8(2 * 34);  // two Q8_0 blocks: [2, 32]
    for (size_t i = 0; i < q8.size(); ++i) q8[i] = static_cast<std::byte>(i * 7);
    const std::vector<int32_t> i32 = {7, -8, 9};
    {
      GgufWriter w(path, {}, alignment);
      w.copy_metadata(meta);
      w.set_file_type(7);
      w.set_quantization_version();
      w.add_tensor("a.f32", 0, {2, 3});
      w.add_tensor("b.f16", 1, {6});
      w.add_tensor("c.q8_0", 8, {2, 32});
      w.add_tensor("d.i32", 26, {3, 1});
      w.write_tensor(test::as_bytes_of(f32));
      w.write_tensor(test::as_bytes_of(f16));
      w.write_tensor(q8);
      w.write_tensor("d.i32", test::as_bytes_of(i32));
      w.commit();
    }
    auto f = TensorFile::open(path);
    ASSERT_EQ(f->metadata().size(), meta.size() + 3);
    for (size_t i = 0; i < meta.size(); ++i) {
      EXPECT_EQ(f->metadata()[i].key, meta[i].key);
      EXPECT_TRUE(same(f->metadata()[i].value, meta[i].value)) << meta[i].key;
    }
    EXPECT_EQ(std::get<uint32_t>(*find_meta(f->metadata(), "general.file_type")), 7u);
    EXPECT_EQ(std::get<uint32_t>(*find_meta(f->metadata(), "general.quantization_version")), 2u);
    EXPECT_EQ(std::get<uint32_t>(*find_meta(f->metadata(), "general.alignment")), alignment);
    ASSERT_EQ(f->tensors().size(), 4u);
    const auto data = f->data();
    uint64_t prev_end = 0;
    for (const auto& t : f->tensors()) {
      EXPECT_EQ(t.offset % alignment, 0u) << t.name;
      // zero padding between tensors
      for (uint64_t k = prev_end; k < t.offset && prev_end; ++k) EXPECT_EQ(data[k], std::byte{0});
      prev_end = t.offset + t.nbytes;
    }
    EXPECT_EQ(f->file_size() % alignment, 0u) << "the last tensor is padded too";
    EXPECT_EQ(f->tensor("a.f32").shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(f->read_matrix(f->tensor("a.f32"))(1, 2), 6.0f);
    EXPECT_EQ(f->read_matrix(f->tensor("b.f16"))(0, 3), 4.5f);
    EXPECT_EQ(f->read_matrix(f->tensor("d.i32"))(1, 0), -8.0f);
    const TensorInfo& q = f->tensor("c.q8_0");
    EXPECT_EQ(q.dtype, DType::Ggml);
    EXPECT_EQ(q.ggml_type, 8);
    EXPECT_EQ(q.type_name(), "Q8_0");
    auto qb = f->bytes(q);
    EXPECT_TRUE(std::equal(qb.begin(), qb.end(), q8.begin(), q8.end()));
  }
}

TEST(Gguf, ConvertingKeepsMetadataAndTensors) {
  ScratchDir dir;
  auto in = TensorFile::open(test::stories_gguf());
  const auto out = dir / "copy.gguf";
  {
    GgufWriter w(out);
    w.copy_metadata(in->metadata());
    for (const auto& t : in->tensors()) w.add_tensor(t.name, t.ggml_type, t.shape);
    for (const auto& t : in->tensors()) w.write_tensor(t.name, in->bytes(t));
    w.commit();
  }
  auto f = TensorFile::open(out);
  ASSERT_EQ(f->metadata().size(), in->metadata().size() + 1);  // + general.alignment
  for (size_t i = 0; i < in->metadata().size(); ++i)
    EXPECT_TRUE(same(f->metadata()[i].value, in->metadata()[i].value)) << in->metadata()[i].key;
  ASSERT_EQ(f->tensors().size(), in->tensors().size());
  for (size_t i = 0; i < in->tensors().size(); ++i) {
    EXPECT_EQ(f->tensors()[i].shape, in->tensors()[i].shape);
    auto a = in->bytes(in->tensors()[i]), b = f->bytes(f->tensors()[i]);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << in->tensors()[i].name;
  }
  // The same tensors through safetensors and back agree as floats.
  const auto st = dir / "copy.safetensors";
  {
    SafetensorsWriter w(st);
    for (const auto& t : in->tensors()) w.add_tensor(t.name, t.dtype, t.shape);
    for (const auto& t : in->tensors()) w.write_tensor(in->bytes(t));
    w.commit();
  }
  auto s = TensorFile::open(st);
  for (const auto& t : in->tensors()) EXPECT_EQ(s->read_matrix(s->tensor(t.name)), in->read_matrix(t)) << t.name;
}

TEST(Gguf, WriterRejectsBadDeclarations) {
  ScratchDir dir;
  GgufWriter w(dir / "x.gguf");
  EXPECT_THROW(w.add_tensor(std::string(64, 'n'), 0, {4}), InvalidArgument);
  EXPECT_THROW(w.add_tensor("five", 0, {1, 1, 1, 1, 1}), InvalidArgument);
  EXPECT_THROW(w.add_tensor("rows", 8, {4, 48}), InvalidArgument);  // 48 not a multiple of 32
  EXPECT_THROW(w.add_tensor("type", 4, {4}), InvalidArgument);
  w.set("bad", arr(GgufType::U8, {int8_t{1}}));
  w.add_tensor("ok", 0, {1});
  const float one = 1;
  EXPECT_THROW(w.write_tensor(std::as_bytes(std::span<const float>(&one, 1))), InvalidArgument);  // bad array
  EXPECT_THROW(GgufWriter(dir / "y.gguf", {}, 24), InvalidArgument);
}

TEST(Gguf, BlockTypesAreNotPlainValues) {
  ScratchDir dir;
  {
    GgufWriter w(dir / "q.gguf");
    w.add_tensor("q", 8, {1, 32});
    w.write_tensor(std::vector<std::byte>(34));
    w.commit();
  }
  auto f = TensorFile::open(dir / "q.gguf");
  // io reads bytes and plain types; decoding ggml blocks is qk::formats' (tests/formats/test_tensor_values.cpp)
  try {
    f->read_matrix(f->tensor("q"));
    ADD_FAILURE() << "Q8_0 read as plain values";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("qk::formats::read_matrix"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tensor 'q'"), std::string::npos) << e.what();
  }
}

// ----------------------------------------------------------------------------------- malformed headers

struct GgufSpec {
  uint32_t version = 3;
  std::vector<std::function<void(Bytes&)>> kv;  // each writes key, type, value
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
  };
  std::vector<T> tensors;
  uint64_t n_tensors_override = UINT64_MAX, n_kv_override = UINT64_MAX;
  uint64_t alignment = 32;
  size_t data_bytes = 0;
  std::vector<std::byte> build() const {
    Bytes b;
    b.str("GGUF").put<uint32_t>(version);
    b.put<uint64_t>(n_tensors_override != UINT64_MAX ? n_tensors_override : tensors.size());
    b.put<uint64_t>(n_kv_override != UINT64_MAX ? n_kv_override : kv.size());
    for (const auto& k : kv) k(b);
    for (const auto& t : tensors) {
      b.gguf_str(t.name).put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
      for (auto x : t.ne) b.put<uint64_t>(x);
      b.put<uint32_t>(t.type).put<uint64_t>(t.offset);
    }
    b.pad_to(alignment);
    b.zeros(data_bytes);
    return b.v;
  }
};

void expect_gguf_error(const GgufSpec& s, const std::string& needle) {
  const auto file = s.build();
  try {
    TensorFile::open_memory(file, "bad.gguf");
    ADD_FAILURE() << "accepted; expected '" << needle << "'";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("bad.gguf: ", 0), 0u) << e.what();
  }
}

TEST(Gguf, RejectsEveryViolation) {
  GgufSpec ok;
  ok.tensors = {{"a", {32, 2}, 0, 0}, {"b", {4}, 0, 256}};
  ok.data_bytes = 256 + 16;
  {
    const auto file = ok.build();
    EXPECT_NO_THROW(TensorFile::open_memory(file));
  }
  auto with = [&](auto change) {
    GgufSpec s = ok;
    change(s);
    return s;
  };
  expect_gguf_error(with([](GgufSpec& s) { s.version = 1; }), "unsupported GGUF version 1");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[0].ne = {1, 1, 1, 1, 1}; }), "5 dimensions");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[0].type = 99; }), "unknown ggml type 99");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[0].type = 8; s.tensors[0].ne = {16, 2}; }),
                    "not a multiple of Q8_0's block of 32");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[1].offset = 260; }), "not a multiple of the alignment");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[1].offset = 512; }), "runs past the end");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[1].offset = 224; }), "overlaps");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[1].name = "a"; }), "duplicate name");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[1].name = std::string(64, 'x'); }), "the limit is 63");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[0].ne = {1ull << 40, 1ull << 40}; }), "overflows");
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[0].ne = {0x8000000000000000ull}; }), "overflows");
  // A zero dimension must not hide an overflowing product of the others (found by fuzz_gguf).
  expect_gguf_error(with([](GgufSpec& s) { s.tensors[0].ne = {0, 1ull << 45, 1ull << 50}; }), "overflows");
  expect_gguf_error(with([](GgufSpec& s) { s.n_tensors_override = 1ull << 60; }), "cannot fit");
  expect_gguf_error(with([](GgufSpec& s) { s.n_kv_override = 1ull << 60; }), "cannot fit");
  auto kv = [](std::string key, uint32_t type, auto writer) {
    return [=](Bytes& b) {
      b.gguf_str(key).put<uint32_t>(type);
      writer(b);
    };
  };
  expect_gguf_error(with([&](GgufSpec& s) { s.kv = {kv("general.alignment", 4, [](Bytes& b) { b.put<uint32_t>(48); })}; }),
                    "not a power of two");
  expect_gguf_error(with([&](GgufSpec& s) { s.kv = {kv("general.alignment", 10, [](Bytes& b) { b.put<uint64_t>(32); })}; }),
                    "not a u32");
  expect_gguf_error(with([&](GgufSpec& s) { s.kv = {kv("b", 7, [](Bytes& b) { b.put<uint8_t>(2); })}; }),
                    "neither 0 nor 1");
  expect_gguf_error(with([&](GgufSpec& s) { s.kv = {kv("t", 13, [](Bytes&) {})}; }), "unknown value type 13");
  expect_gguf_error(with([&](GgufSpec& s) { s.kv = {kv("s", 8, [](Bytes& b) { b.put<uint64_t>(1ull << 62); })}; }),
                    "string length");
  expect_gguf_error(with([&](GgufSpec& s) {
                      s.kv = {kv("a", 9, [](Bytes& b) { b.put<uint32_t>(4).put<uint64_t>(1ull << 40); })};
                    }),
                    "cannot fit");
  expect_gguf_error(with([&](GgufSpec& s) { s.kv = {kv("a", 9, [](Bytes& b) { b.put<uint32_t>(77).put<uint64_t>(1); })}; }),
                    "unknown array element type 77");
  expect_gguf_error(with([&](GgufSpec& s) {
                      s.kv = {kv("a", 9, [](Bytes& b) {
                        for (int i = 0; i < 40; ++i) b.put<uint32_t>(9).put<uint64_t>(1);
                      })};
                    }),
                    "nested more than");
  expect_gguf_error(with([&](GgufSpec& s) {
                      s.kv = {kv("k", 4, [](Bytes& b) { b.put<uint32_t>(1); }), kv("k", 4, [](Bytes& b) { b.put<uint32_t>(1); })};
                    }),
                    "duplicate metadata key 'k'");
  expect_gguf_error(with([&](GgufSpec& s) { s.kv = {kv("", 4, [](Bytes& b) { b.put<uint32_t>(1); })}; }), "empty key");
  // Alignment 64 moves the data start and the offsets: offset 32 is then misaligned.
  expect_gguf_error(with([&](GgufSpec& s) {
                      s.kv = {kv("general.alignment", 4, [](Bytes& b) { b.put<uint32_t>(64); })};
                      s.tensors[1].offset = 288;
                    }),
                    "not a multiple of the alignment 64");
}

}  // namespace
}  // namespace qk::io
