// llama2.c -> GGUF conversion (qk/model/convert.hpp): key by key and tensor by tensor against the files llama.cpp's
// converter made of the bundled checkpoints (with the documented differences, and none left once the options
// reproduce llama.cpp's values), and on a hand-made checkpoint with a separate classifier.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qk/core/error.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/llama2c.hpp"
#include "qk/model/convert.hpp"
#include "qk/model/tokenizer.hpp"
#include "test_util.hpp"

namespace {

namespace fs = std::filesystem;
using qk::io::MetaValue;
using qk::io::TensorFile;
using ::testing::HasSubstr;

class Convert : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string n = fmt::format("qk-convert-{}-{}", ::getpid(), info->name());
    for (char& c : n)
      if (c == '/') c = '_';
    dir_ = fs::temp_directory_path() / n;
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

std::string text(const MetaValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::shared_ptr<qk::io::MetaArray>>) {
          std::string s = fmt::format("array<{}>[{}]:", x->element_type, x->values.size());
          for (const auto& e : x->values) s += text(e) + "|";
          return s;
        } else if constexpr (std::is_same_v<T, std::string>) {
          return "s:" + x;
        } else {
          return fmt::format("{}:{}", static_cast<int>(qk::io::gguf_type_of(MetaValue(x))), x);
        }
      },
      v);
}

// Compares two GGUF files: every key (in order) and every tensor (order, name, shape, type, bytes, offset from the
// data start). `differ` lists the keys expected to differ (or to be only in `ours`).
void expect_same_gguf(const TensorFile& ours, const TensorFile& theirs, const std::vector<std::string>& differ) {
  auto compared = [&](const TensorFile& f) {
    std::vector<const qk::io::MetaEntry*> v;
    for (const auto& e : f.metadata())
      if (std::find(differ.begin(), differ.end(), e.key) == differ.end()) v.push_back(&e);
    return v;
  };
  const auto a = compared(ours), b = compared(theirs);
  std::vector<std::string> ka, kb;
  for (const auto* e : a) ka.push_back(e->key);
  for (const auto* e : b) kb.push_back(e->key);
  ASSERT_EQ(ka, kb) << "the same keys in the same order";
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string x = text(a[i]->value), y = text(b[i]->value);
    size_t at = 0;
    while (at < x.size() && at < y.size() && x[at] == y[at]) ++at;
    EXPECT_TRUE(x == y) << a[i]->key << " differs from character " << at << ": '" << x.substr(at, 40) << "' vs '"
                        << y.substr(at, 40) << "'";
  }
  ASSERT_EQ(ours.tensors().size(), theirs.tensors().size());
  const uint64_t start_a = ours.tensors().front().offset, start_b = theirs.tensors().front().offset;
  for (size_t i = 0; i < ours.tensors().size(); ++i) {
    const auto& x = ours.tensors()[i];
    const auto& y = theirs.tensors()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.shape, y.shape) << x.name;
    EXPECT_EQ(x.ggml_type, y.ggml_type) << x.name;
    EXPECT_EQ(x.offset - start_a, y.offset - start_b) << x.name;
    const auto p = ours.bytes(x), q = theirs.bytes(y);
    ASSERT_EQ(p.size(), q.size()) << x.name;
    EXPECT_EQ(std::memcmp(p.data(), q.data(), p.size()), 0) << x.name << ": bytes differ";
  }
}

const MetaValue& meta(const TensorFile& f, const char* key) {
  const MetaValue* v = qk::io::find_meta(f.metadata(), key);
  if (!v) throw std::runtime_error(std::string("no ") + key);
  return *v;
}

class ConvertReference : public Convert, public ::testing::WithParamInterface<std::pair<const char*, const char*>> {};

TEST_P(ConvertReference, SameTensorsMetadataAndVocabularyAsLlamaCppsConverter) {
  const auto [model, tok] = GetParam();
  QK_REQUIRE_REFERENCE(bin, fmt::format("models/{}.bin", model));
  QK_REQUIRE_REFERENCE(tok_bin, fmt::format("models/{}", tok));
  QK_REQUIRE_REFERENCE(gguf, fmt::format("models/{}.gguf", model));
  const auto theirs = TensorFile::open(gguf);

  // Defaults: the documented differences only.
  const fs::path out = dir_ / "ours.gguf";
  const auto s = qk::model::convert_llama2c_to_gguf(bin, tok_bin, out);
  EXPECT_EQ(s.bytes, fs::file_size(out));
  const auto ours = TensorFile::open(out);
  expect_same_gguf(*ours, *theirs, {"general.name", "llama.context_length", "general.alignment"});
  EXPECT_EQ(std::get<std::string>(meta(*ours, "general.name")), model);
  EXPECT_EQ(std::get<std::string>(meta(*theirs, "general.name")), "llama");
  EXPECT_EQ(std::get<uint32_t>(meta(*ours, "llama.context_length")),
            std::get<uint32_t>(meta(*TensorFile::open(bin), "llama.context_length")));
  EXPECT_EQ(std::get<uint32_t>(meta(*theirs, "llama.context_length")), 128u);
  EXPECT_EQ(std::get<uint32_t>(meta(*ours, "general.alignment")), 32u);
  EXPECT_EQ(qk::io::find_meta(theirs->metadata(), "general.alignment"), nullptr);

  // With llama.cpp's name and context length: every key the same, general.alignment (GGUF's default) aside.
  const fs::path out2 = dir_ / "llama.gguf";
  qk::model::ConvertOptions as_llama_cpp;
  as_llama_cpp.name = "llama";
  as_llama_cpp.context_length = 128;
  qk::model::convert_llama2c_to_gguf(bin, tok_bin, out2, as_llama_cpp);
  expect_same_gguf(*TensorFile::open(out2), *theirs, {"general.alignment"});
}

INSTANTIATE_TEST_SUITE_P(Models, ConvertReference,
                         ::testing::Values(std::pair{"stories260K", "tok512.bin"}, std::pair{"babyllama", "tok105.bin"}),
                         [](const auto& info) { return std::string(info.param.first); });

// A checkpoint for tok105's 105 tokens with a separate classifier; float k has the value k.
fs::path tiny_checkpoint(const fs::path& dir, int32_t vocab) {
  const int32_t dim = 8, hidden = 4, layers = 1, heads = 2, kv = 1, seq = 2;
  const int32_t V = vocab < 0 ? -vocab : vocab;
  int64_t n = int64_t{V} * dim + layers * (2 * dim + 2 * dim * dim + 2 * (dim / heads * kv) * dim + 3 * hidden * dim) +
              dim + seq * (dim / heads) + (vocab < 0 ? int64_t{V} * dim : 0);
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) w[static_cast<size_t>(k)] = static_cast<float>(k);
  const int32_t hdr[7] = {dim, hidden, layers, heads, kv, vocab, seq};
  const fs::path p = dir / "tiny.bin";
  std::ofstream o(p, std::ios::binary);
  o.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
  o.write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(w.size() * 4));
  return p;
}

TEST_F(Convert, SeparateClassifierAndTheVocabularyRoundTrip) {
  const fs::path ck = tiny_checkpoint(dir_, -105);
  const fs::path tok = qk::test::test_data("model/tok105.bin");
  const fs::path out = dir_ / "tiny.gguf";
  const auto s = qk::model::convert_llama2c_to_gguf(ck, tok, out);
  EXPECT_FALSE(s.shared_classifier);
  EXPECT_EQ(s.tensors, 3u + 9u);
  EXPECT_EQ(s.vocab, 105);
  const auto in = qk::io::open_llama2c(ck);
  const auto f = TensorFile::open(out);
  for (const auto& t : in->tensors()) {
    const auto a = in->bytes(t), b = f->bytes(f->tensor(t.name));
    ASSERT_EQ(a.size(), b.size()) << t.name;
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0) << t.name;
  }
  EXPECT_EQ(f->read_matrix(f->tensor("output.weight"))(0, 0),
            in->read_matrix(in->tensor("output.weight"))(0, 0));
  EXPECT_NE(f->read_matrix(f->tensor("output.weight"))(0, 0),
            f->read_matrix(f->tensor("token_embd.weight"))(0, 0));
  // The GGUF's vocabulary is the tokenizer.bin's, and tokenizes alike.
  const auto a = qk::model::Tokenizer::load(out), b = qk::model::Tokenizer::load(tok);
  EXPECT_EQ(a.encode("Once upon a time, Lily said \"hi!\""), b.encode("Once upon a time, Lily said \"hi!\""));
  EXPECT_EQ(std::get<std::string>(meta(*f, "general.name")), "tiny");
  EXPECT_EQ(std::get<uint32_t>(meta(*f, "tokenizer.ggml.seperator_token_id")), 0xFFFFFFFFu);
}

TEST_F(Convert, BadInputsAreErrorsNamingTheFiles) {
  const fs::path tok = qk::test::test_data("model/tok105.bin");
  const fs::path ck = tiny_checkpoint(dir_, 100);  // 100 != 105 tokens
  try {
    qk::model::convert_llama2c_to_gguf(ck, tok, dir_ / "o.gguf");
    FAIL() << "no error";
  } catch (const qk::FormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr(tok.string() + ": 105 tokens, but the checkpoint " + ck.string() +
                                    " has a vocabulary of 100"));
  }
  EXPECT_FALSE(fs::exists(dir_ / "o.gguf"));
  // Not a checkpoint (the tokenizer itself given as the model).
  EXPECT_THROW(qk::model::convert_llama2c_to_gguf(tok, tok, dir_ / "o.gguf"), qk::FormatError);
  // The output may not be an input, nor replace a file unless allowed.
  const fs::path ck105 = tiny_checkpoint(dir_, 105);
  EXPECT_THROW(qk::model::convert_llama2c_to_gguf(ck105, tok, ck105), qk::IoError);
  std::ofstream(dir_ / "exists.gguf") << "x";
  qk::model::ConvertOptions keep;
  keep.write.overwrite = false;
  EXPECT_THROW(qk::model::convert_llama2c_to_gguf(ck105, tok, dir_ / "exists.gguf", keep), qk::IoError);
  EXPECT_EQ(qk::test::slurp(dir_ / "exists.gguf"), "x");
}

}  // namespace
