// `qtool tokenize MODEL (-p TEXT | -f FILE) [--tokenizer TOK] [--ids] [--no-bos] [--parse-special]`: the token ids of a text as the
// model's SentencePiece vocabulary gives them (qk/model/tokenizer.hpp; the ids llama.cpp's llama-tokenize gives).
// MODEL is a GGUF with a vocabulary, or a llama2.c checkpoint with --tokenizer (its tokenizer.bin). Output: one line
// per token, `id<TAB>piece` (the vocabulary's piece, '▁' for spaces, control characters escaped), or with --ids
// the ids on one line, separated by spaces.
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "qk/core/error.hpp"
#include "qk/model/tokenizer.hpp"

namespace qtool {

namespace {

struct TokenizeOptions {
  std::string model, tokenizer, prompt, file;
  bool ids = false, no_bos = false, parse_special = false;
};

// A piece on one line: backslash, newline, tab and other control bytes escaped.
std::string printable(const std::string& s) {
  std::string o;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') o += "\\\\";
    else if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else if (u < 0x20 || u == 0x7F) o += fmt::format("\\x{:02x}", u);
    else o += c;
  }
  return o;
}

std::string read_text(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) qk::fail<qk::IoError>("{}: cannot open", path);
  std::string s;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) qk::fail<qk::IoError>("{}: read error", path);
  if (s.empty()) qk::fail<qk::FormatError>("{}: empty file: nothing to tokenize", path);
  return s;
}

int run_tokenize(const TokenizeOptions& o) {
  const auto tok = qk::model::Tokenizer::for_model(o.model, o.tokenizer);
  const std::string text = o.file.empty() ? o.prompt : read_text(o.file);
  const auto ids = tok.encode(text, {.add_special = !o.no_bos,
                                     .parse_special = o.parse_special,
                                     .source = o.file.empty() ? "prompt" : o.file});
  std::string out;
  if (o.ids) {
    out = fmt::format("{}\n", fmt::join(ids, " "));
  } else {
    for (const int32_t id : ids) out += fmt::format("{}\t{}\n", id, printable(tok.token(id).text));
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

void setup_tokenize(CLI::App& app, Runner& run) {
  auto opts = std::make_shared<TokenizeOptions>();
  auto* sub = app.add_subcommand("tokenize", "Token ids of a text under a model's SentencePiece vocabulary");
  sub->add_option("model", opts->model, "GGUF with a vocabulary, or a llama2.c checkpoint (with --tokenizer)")
      ->required();
  auto* p = sub->add_option("-p,--prompt", opts->prompt, "The text");
  auto* f = sub->add_option("-f,--file", opts->file, "A file holding the text (taken byte for byte, UTF-8)");
  p->excludes(f);
  f->excludes(p);
  sub->add_option("--tokenizer", opts->tokenizer, "The vocabulary: a llama2.c tokenizer.bin (or a GGUF)");
  sub->add_flag("--ids", opts->ids, "Print the ids on one line, separated by spaces");
  sub->add_flag("--no-bos", opts->no_bos, "Do not put the BOS token first");
  sub->add_flag("--parse-special", opts->parse_special,
                "Control tokens' text in the text (\"<s>\") become those tokens (llama-tokenize's default)");
  sub->callback([opts, &run, sub] {
    if (sub->count("--prompt") == 0 && sub->count("--file") == 0) throw CLI::RequiredError("-p TEXT or -f FILE");
    run = [opts] { return run_tokenize(*opts); };
  });
}

}  // namespace qtool
