// qtool generate: greedy text equals llama.cpp's for both bundled models, from a quantized file too, and bad input
// (a prompt longer than the context, a GGUF without a vocabulary, invalid UTF-8 in the prompt) is a one-line error
// naming what was wrong, exit 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "qk/io/gguf.hpp"
#include "qk/io/tensor_file.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

fs::path scratch() {
  const fs::path d = fs::temp_directory_path() / fmt::format("qk_generate_cli_{}", ::getpid());
  fs::create_directories(d);
  return d;
}

std::string q(const fs::path& p) { return fmt::format("'{}'", p.string()); }

void expect_one_line_error(const qk::test::RunResult& r, const std::string& what) {
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace

TEST(QtoolGenerate, GreedyEqualsLlamaCpp) {
  const char* const prompts[] = {"Once upon a time", "Tom and Lily went to the park", "The little dog was sad because"};
  for (const std::string name : {"stories260K", "babyllama"}) {
    for (int i = 0; i < 3; ++i) {
      QK_REQUIRE_REFERENCE(ref, fmt::format("models/greedy/{}.{}.txt", name, i + 1));
      const auto r = qk::test::run_qtool(
          fmt::format("generate {} -p '{}' -n 64 --temp 0", q(qk::test::bundled_model(name)), prompts[i]));
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_EQ(std::string("<s> ") + r.out, qk::test::slurp(ref)) << name << " " << i;
    }
  }
}

TEST(QtoolGenerate, FromAQuantizedFileAndSeeded) {
  const fs::path q8 = scratch() / "stories-q8_0.gguf";
  const auto model = qk::test::bundled_model("stories260K");
  ASSERT_EQ(qk::test::run_qtool(fmt::format("quantize {} -o {} --type q8_0 --quiet --force", q(model), q(q8))).code, 0);
  const auto a = qk::test::run_qtool(fmt::format("generate {} -p 'Once upon a time' -n 20 --seed 5", q(q8)));
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out.rfind("Once upon a time", 0), 0u) << a.out;
  EXPECT_GT(a.out.size(), 20u);
  const auto b = qk::test::run_qtool(fmt::format("generate {} -p 'Once upon a time' -n 20 --seed 5", q(q8)));
  EXPECT_EQ(a.out, b.out);
}

TEST(QtoolGenerate, BadInputIsAOneLineError) {
  const auto model = qk::test::bundled_model("stories260K");
  // 200 words: more tokens than the context of 128.
  std::string lng;
  for (int i = 0; i < 200; ++i) lng += "dog ";
  expect_one_line_error(qk::test::run_qtool(fmt::format("generate {} -p '{}'", q(model), lng)),
                        model.string() + ": the prompt's");
  // BabyLlama cannot spell a newline.
  expect_one_line_error(qk::test::run_qtool(fmt::format("generate {} -p \"$(printf 'a\\nb')\"",
                                                        q(qk::test::bundled_model("babyllama")))),
                        "prompt: byte 1: U+000A");
  expect_one_line_error(qk::test::run_qtool(fmt::format("generate {} -p \"$(printf 'a\\303(b')\"", q(model))),
                        "UTF-8");
  const fs::path novocab = scratch() / "novocab.gguf";
  {
    auto in = qk::io::TensorFile::open(model);
    qk::io::GgufWriter w(novocab);
    for (const auto& e : in->metadata())
      if (e.key.rfind("tokenizer.", 0) != 0 && e.key != "general.alignment") w.set(e.key, e.value);
    for (const auto& t : in->tensors()) w.add_tensor(t.name, t.ggml_type, t.shape);
    for (const auto& t : in->tensors()) w.write_tensor(in->bytes(t));
    w.commit();
  }
  expect_one_line_error(qk::test::run_qtool(fmt::format("generate {} -p hi", q(novocab))),
                        novocab.string() + ": no vocabulary");
  EXPECT_EQ(qk::test::run_qtool(fmt::format("generate {}", q(model))).code, 2);  // -p is required
}
