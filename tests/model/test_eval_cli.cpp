// qtool eval --tokens / --text: model-level comparison of two Llama files (perplexity, KL, top-1), text and JSON;
// a text is tokenized with A's vocabulary and scored as llama.cpp's perplexity tool scores it.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "qk/io/gguf.hpp"
#include "qk/io/tensor_file.hpp"
#include "qk/model/text.hpp"
#include "qk/model/token_file.hpp"
#include "qk/model/tokenizer.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

// stdout and stderr together, as a user reads them.
struct Run {
  int code;
  std::string out;
};

Run qtool(const std::string& args) {
  const qk::test::RunResult r = qk::test::run_qtool(args);
  return {r.code, r.out + r.err};
}

std::string model() { return qk::test::bundled_model("stories260K").string(); }
std::string text() { return qk::test::bundled_text().string(); }

fs::path scratch() {
  const fs::path d = fs::temp_directory_path() / fmt::format("qk_eval_cli_{}", ::getpid());
  fs::create_directories(d);
  return d;
}

// The validation text's ids (BOS first), as an int32 file for --tokens.
std::string tokens() {
  const fs::path p = scratch() / "valid.i32";
  if (!fs::exists(p))
    qk::model::write_tokens(p, qk::model::tokenize_file(qk::model::Tokenizer::load(model()), text()));
  return p.string();
}

fs::path write_file(const std::string& name, const std::string& bytes) {
  const fs::path p = scratch() / name;
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

// One line on stderr naming `file`, exit 1.
void expect_one_line_error(const Run& r, const std::string& file, const std::string& what) {
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(file), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(what), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

}  // namespace

TEST(QtoolEvalTokens, SameModelCostsNothing) {
  auto r = qtool("eval " + model() + " " + model() + " --tokens " + tokens() + " --chunks 2 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* key : {"\"model\"", "\"ppl_a\"", "\"ppl_b\"", "\"kld\":0", "\"top1_agreement\":1", "\"chunks\":2",
                          "\"scored\":126", "\"ppl_ratio\":1"})
    EXPECT_NE(r.out.find(key), std::string::npos) << key << " missing in " << r.out;
}

TEST(QtoolEvalTokens, TextReportNamesBothModels) {
  auto r = qtool("eval " + model() + " " + model() + " --tokens " + tokens() + " --chunks 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("perplexity"), std::string::npos);
  EXPECT_NE(r.out.find("top-1 agree"), std::string::npos);
}

TEST(QtoolEvalTokens, BadTokenFilesAreOneLineErrors) {
  const auto bad = std::filesystem::temp_directory_path() / "qk_eval_bad_tokens.i32";
  {
    std::ofstream f(bad, std::ios::binary);
    f << "abcde";  // 5 bytes: not a whole number of int32
  }
  auto r = qtool("eval " + model() + " " + model() + " --tokens " + bad.string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("int32"), std::string::npos) << r.out;
  std::filesystem::remove(bad);
  auto missing = qtool("eval " + model() + " " + model() + " --tokens /nonexistent/tokens.i32");
  EXPECT_EQ(missing.code, 2) << missing.out;
  // A file that is not a Llama model cannot be scored.
  const std::string npy = qk::test::test_data("io/P4a_stories260K_L2_wq_W.npy").string();
  auto notllama = qtool("eval " + npy + " " + npy + " --tokens " + tokens());
  EXPECT_EQ(notllama.code, 1) << notllama.out;
  EXPECT_NE(notllama.out.find("llama"), std::string::npos) << notllama.out;
}

// --text: the same figures as --tokens with the ids llama.cpp's tokenizer gives, and llama.cpp's perplexity for the
// float model (3.5786 at context 256; ../shared/data/models/llamacpp-refs.json).
TEST(QtoolEvalText, ScoresAsLlamaCppDoes) {
  auto t = qtool("eval " + model() + " " + model() + " --text " + text() + " --ctx 256 --json");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_NE(t.out.find("\"chunks\":152"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\"scored\":19304"), std::string::npos) << t.out;
  const auto at = t.out.find("\"ppl_a\":");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NEAR(std::stod(t.out.substr(at + 8)), 3.5786, 0.005 * 3.5786) << t.out;
  auto k = qtool("eval " + model() + " " + model() + " --tokens " + tokens() + " --ctx 256 --json");
  ASSERT_EQ(k.code, 0) << k.out;
  EXPECT_EQ(t.out.substr(t.out.find("\"model\"")), k.out.substr(k.out.find("\"model\"")));
}

TEST(QtoolEvalText, BabyLlamaToo) {
  const std::string baby = qk::test::bundled_model("babyllama").string();
  auto r = qtool("eval " + baby + " " + baby + " --text " + text() + " --ctx 256 --chunks 4 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"chunks\":4"), std::string::npos) << r.out;
}

TEST(QtoolEvalText, BadTextIsAOneLineErrorNamingTheFile) {
  const std::string m = model() + " " + model();
  const fs::path utf8 = write_file("bad-utf8.txt", "Once upon a \xC3\x28 time");
  expect_one_line_error(qtool("eval " + m + " --text " + utf8.string()), utf8.string(), "UTF-8");
  const fs::path empty = write_file("empty.txt", "");
  expect_one_line_error(qtool("eval " + m + " --text " + empty.string()), empty.string(), "empty file");
  const fs::path shortt = write_file("short.txt", "Once upon a time there was a cat.");
  expect_one_line_error(qtool("eval " + m + " --text " + shortt.string() + " --ctx 256"), shortt.string(),
                        "do not fill one chunk of 256");
  // BabyLlama has no newline in its vocabulary.
  const std::string baby = qk::test::bundled_model("babyllama").string();
  const fs::path nl = write_file("newline.txt", "Once upon a time.\nThe end.");
  expect_one_line_error(qtool("eval " + baby + " " + baby + " --text " + nl.string()), nl.string(), "U+000A");
  // A Llama GGUF without a vocabulary: stories260K's tensors and llama.* metadata, no tokenizer.*.
  const fs::path novocab = scratch() / "novocab.gguf";
  {
    auto in = qk::io::TensorFile::open(model());
    qk::io::GgufWriter w(novocab);
    for (const auto& e : in->metadata())
      if (e.key.rfind("tokenizer.", 0) != 0 && e.key != "general.alignment") w.set(e.key, e.value);
    for (const auto& t : in->tensors()) w.add_tensor(t.name, t.ggml_type, t.shape);
    for (const auto& t : in->tensors()) w.write_tensor(in->bytes(t));
    w.commit();
  }
  expect_one_line_error(qtool("eval " + novocab.string() + " " + model() + " --text " + text()), novocab.string(),
                        "no vocabulary");
}
