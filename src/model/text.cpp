// Text files as model input (qk/model/text.hpp).
#include "qk/model/text.hpp"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "qk/core/error.hpp"

namespace qk::model {

std::string read_text_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(name.c_str(), "rb"), &std::fclose);
  if (!f) fail<IoError>("{}: cannot open", name);
  std::string s;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f.get())) > 0;) s.append(buf, n);
  if (std::ferror(f.get())) fail<IoError>("{}: read error", name);
  if (s.empty()) fail<FormatError>("{}: empty file: no text", name);
  return s;
}

std::vector<int32_t> tokenize_file(const Tokenizer& tok, const std::filesystem::path& path, bool add_special) {
  const std::string text = read_text_file(path);
  const std::string name = path.string();
  EncodeOptions e;
  e.add_special = add_special;
  e.source = name;
  return tok.encode(text, e);
}

std::vector<int32_t> evaluation_tokens(const Tokenizer& tok, const std::filesystem::path& path, int context) {
  if (context < 2) fail<InvalidArgument>("evaluation context must be at least 2 tokens, got {}", context);
  std::vector<int32_t> ids = tokenize_file(tok, path, true);
  if (ids.size() < static_cast<size_t>(context))
    fail<FormatError>("{}: {} tokens do not fill one chunk of {} (--ctx)", path.string(), ids.size(), context);
  return ids;
}

CompareResult compare_on_text(const LlamaModel& base, const LlamaModel& candidate, const Tokenizer& tok,
                              const std::filesystem::path& path, const PerplexityOptions& o) {
  if (tok.size() != base.config().vocab)
    fail<FormatError>("{}: the vocabulary has {} tokens, the model {}", tok.source(), tok.size(), base.config().vocab);
  const std::vector<int32_t> ids = evaluation_tokens(tok, path, o.context);
  PerplexityOptions p = o;
  if (p.bos >= 0 && tok.bos() >= 0) p.bos = tok.bos();  // the vocabulary's BOS starts every chunk
  return compare(base, candidate, ids, p);
}

std::vector<std::vector<int32_t>> text_sequences(const Tokenizer& tok, const std::filesystem::path& path, int samples,
                                                 int length) {
  if (length < 2) fail<InvalidArgument>("calibration sequences of {} tokens are too short", length);
  if (samples <= 0) fail<InvalidArgument>("calibration needs at least one sequence, got {}", samples);
  if (tok.bos() < 0) fail<FormatError>("{}: the vocabulary has no BOS token to start sequences with", tok.source());
  const std::vector<int32_t> ids = tokenize_file(tok, path, false);
  const size_t step = static_cast<size_t>(length) - 1;
  const size_t n = std::min(ids.size() / step, static_cast<size_t>(samples));
  if (n == 0)
    fail<FormatError>("{}: {} tokens do not fill one calibration sequence of {} (--calib-ctx)", path.string(),
                      ids.size(), length);
  std::vector<std::vector<int32_t>> seqs(n);
  for (size_t s = 0; s < n; ++s) {
    seqs[s].reserve(static_cast<size_t>(length));
    seqs[s].push_back(tok.bos());
    seqs[s].insert(seqs[s].end(), ids.begin() + static_cast<ptrdiff_t>(s * step),
                   ids.begin() + static_cast<ptrdiff_t>((s + 1) * step));
  }
  return seqs;
}

}  // namespace qk::model
