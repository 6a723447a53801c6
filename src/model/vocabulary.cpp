// Reading SentencePiece vocabularies: GGUF tokenizer.ggml.* metadata (as llama.cpp's llama_vocab::impl::load reads
// it) and llama2.c tokenizer.bin files (as llama.cpp's convert-llama2c-to-ggml load_vocab reads them).
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "qk/core/error.hpp"
#include "qk/io/gguf.hpp"
#include "qk/model/tokenizer.hpp"

namespace qk::model {

namespace {

const io::MetaArray* array_of(const io::TensorFile& f, std::string_view key, io::GgufType element, bool required) {
  const io::MetaValue* v = io::find_meta(f.metadata(), key);
  if (!v) {
    if (required) fail<FormatError>("{}: no vocabulary ({} is missing)", f.path().string(), key);
    return nullptr;
  }
  const auto* a = std::get_if<std::shared_ptr<io::MetaArray>>(v);
  if (!a || !*a || (*a)->element_type != static_cast<int>(element))
    fail<FormatError>("{}: {} is not an array of {}", f.path().string(), key,
                      io::gguf_type_name(static_cast<uint32_t>(element)));
  return a->get();
}

// Element i of an array, of the array's declared type (a parsed file guarantees it; an array built in memory might
// not).
template <typename T>
const T& element(const io::MetaArray& a, size_t i, const std::string& file, const char* key) {
  const T* x = std::get_if<T>(&a.values[i]);
  if (!x) fail<FormatError>("{}: {}[{}] is not of the array's element type", file, key, i);
  return *x;
}

// An unsigned integer value of any integer type; false when absent, FormatError when not an integer.
bool meta_uint(const io::TensorFile& f, std::string_view key, uint64_t& out) {
  const io::MetaValue* v = io::find_meta(f.metadata(), key);
  if (!v) return false;
  const bool ok = std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if (x < 0) return false;
          out = static_cast<uint64_t>(x);
          return true;
        } else {
          return false;
        }
      },
      *v);
  if (!ok) fail<FormatError>("{}: {} is not a non-negative integer", f.path().string(), key);
  return true;
}

void meta_bool(const io::TensorFile& f, std::string_view key, bool& out) {
  const io::MetaValue* v = io::find_meta(f.metadata(), key);
  if (!v) return;
  if (!std::holds_alternative<bool>(*v)) fail<FormatError>("{}: {} is not a bool", f.path().string(), key);
  out = std::get<bool>(*v);
}

std::vector<std::byte> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open: {}", path.string(), std::strerror(errno));
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail<IoError>("{}: read error", path.string());
  std::vector<std::byte> b(c.size());
  if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
  return b;
}

bool is_gguf(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open: {}", path.string(), std::strerror(errno));
  char m[4] = {};
  in.read(m, 4);
  return in.gcount() == 4 && std::memcmp(m, "GGUF", 4) == 0;
}

}  // namespace

Vocabulary read_gguf_vocabulary(const io::TensorFile& f) {
  const std::string file = f.path().string();
  const io::MetaValue* model = io::find_meta(f.metadata(), "tokenizer.ggml.model");
  const io::MetaArray* tokens = array_of(f, "tokenizer.ggml.tokens", io::GgufType::String, false);
  if (!tokens) fail<FormatError>("{}: no vocabulary (the file has no tokenizer.ggml.tokens)", file);
  if (!model) fail<FormatError>("{}: no tokenizer.ggml.model beside the vocabulary", file);
  if (!std::holds_alternative<std::string>(*model))
    fail<FormatError>("{}: tokenizer.ggml.model is not a string", file);
  const std::string& kind = std::get<std::string>(*model);
  if (kind == "none" || kind == "no_vocab") fail<FormatError>("{}: no vocabulary (tokenizer.ggml.model '{}')", file, kind);
  if (kind != "llama")
    fail<FormatError>("{}: tokenizer.ggml.model '{}' is not supported: qk reads SentencePiece vocabularies ('llama')",
                      file, kind);
  const io::MetaArray* scores = array_of(f, "tokenizer.ggml.scores", io::GgufType::F32, false);
  const io::MetaArray* types = array_of(f, "tokenizer.ggml.token_type", io::GgufType::I32, false);
  const size_t n = tokens->values.size();
  if (scores && scores->values.size() != n)
    fail<FormatError>("{}: {} scores for {} tokens", file, scores->values.size(), n);
  if (types && types->values.size() != n)
    fail<FormatError>("{}: {} token types for {} tokens", file, types->values.size(), n);

  Vocabulary v;
  v.tokens.resize(n);
  for (size_t i = 0; i < n; ++i) {
    TokenPiece& t = v.tokens[i];
    t.text = element<std::string>(*tokens, i, file, "tokenizer.ggml.tokens");
    if (scores) t.score = element<float>(*scores, i, file, "tokenizer.ggml.scores");
    if (types) {
      const int32_t ty = element<int32_t>(*types, i, file, "tokenizer.ggml.token_type");
      t.type = ty >= 0 && ty <= 6 ? static_cast<TokenType>(ty) : TokenType::Undefined;  // as llama.cpp
    }
  }
  // Special ids: a value outside the vocabulary keeps the default (llama.cpp warns and does the same).
  auto special = [&](std::string_view key, int32_t& id) {
    uint64_t x;
    if (meta_uint(f, key, x) && x < n) id = static_cast<int32_t>(x);
    if (id >= static_cast<int64_t>(n)) id = -1;
  };
  special("tokenizer.ggml.bos_token_id", v.bos);
  special("tokenizer.ggml.eos_token_id", v.eos);
  special("tokenizer.ggml.unknown_token_id", v.unk);
  meta_bool(f, "tokenizer.ggml.add_bos_token", v.add_bos);
  meta_bool(f, "tokenizer.ggml.add_eos_token", v.add_eos);
  meta_bool(f, "tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  return v;
}

Vocabulary read_llama2c_vocabulary(std::span<const std::byte> data, const std::string& name) {
  size_t pos = 0;
  auto get_i32 = [&](const char* what, size_t id) {
    if (data.size() - pos < 4)
      fail<FormatError>("{}: truncated: token {}: {} needs 4 bytes at offset {}, the file has {} left", name, id, what,
                        pos, data.size() - pos);
    int32_t x;
    std::memcpy(&x, data.data() + pos, 4);
    pos += 4;
    return x;
  };
  if (data.size() < 4) fail<FormatError>("{}: {} bytes: too short for a llama2.c tokenizer.bin", name, data.size());
  const int32_t max_len = get_i32("max_token_length", 0);
  if (max_len <= 0 || max_len > (1 << 16))
    fail<FormatError>("{}: not a llama2.c tokenizer.bin: max_token_length {} is outside [1, 65536]", name, max_len);
  Vocabulary v;  // ids 0, 1, 2 are <unk>, <s>, </s>; BOS added, no EOS, dummy prefix: the converter's constants
  while (pos < data.size()) {
    const size_t id = v.tokens.size();
    float score;
    const int32_t score_bits = get_i32("the score", id);
    std::memcpy(&score, &score_bits, 4);
    const int32_t len = get_i32("the length", id);
    if (len < 0 || len > max_len)
      fail<FormatError>("{}: token {} at offset {}: length {} is outside [0, max_token_length {}]", name, id, pos - 4,
                        len, max_len);
    if (data.size() - pos < static_cast<size_t>(len))
      fail<FormatError>("{}: truncated: token {} needs {} bytes at offset {}, the file has {} left", name, id, len,
                        pos, data.size() - pos);
    TokenPiece t;
    t.text.assign(reinterpret_cast<const char*>(data.data() + pos), static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
    t.score = score;
    if (id == 0) {
      t.text = "<unk>";
      t.type = TokenType::Unknown;
    } else if (id == 1 || id == 2) {
      t.text = id == 1 ? "<s>" : "</s>";
      t.type = TokenType::Control;
    } else if (t.text.empty()) {
      t.type = TokenType::Control;
    } else if (t.text.size() >= 4 && t.text.compare(0, 3, "<0x") == 0 && std::isxdigit(static_cast<unsigned char>(t.text[3]))) {
      t.type = TokenType::Byte;
    }
    std::string escaped;
    for (const char c : t.text) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    t.text = std::move(escaped);
    v.tokens.push_back(std::move(t));
  }
  if (v.tokens.empty()) fail<FormatError>("{}: the tokenizer.bin holds no tokens", name);
  if (v.tokens.size() <= 1) {
    v.bos = -1;
    v.add_bos = false;
  }
  if (v.tokens.size() <= 2) v.eos = -1;
  return v;
}

Vocabulary read_llama2c_vocabulary(const std::filesystem::path& path) {
  const auto bytes = read_file(path);
  return read_llama2c_vocabulary(bytes, path.string());
}

Tokenizer Tokenizer::from_gguf(const io::TensorFile& file) {
  return Tokenizer(read_gguf_vocabulary(file), file.path().string());
}

Tokenizer Tokenizer::from_llama2c(const std::filesystem::path& tokenizer_bin) {
  return Tokenizer(read_llama2c_vocabulary(tokenizer_bin), tokenizer_bin.string());
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  if (is_gguf(path)) return from_gguf(*io::TensorFile::open(path));
  return from_llama2c(path);
}

Tokenizer Tokenizer::for_model(const std::filesystem::path& model, const std::filesystem::path& tokenizer) {
  const auto f = io::TensorFile::open(model);
  if (tokenizer.empty()) {
    if (f->format() == io::FileFormat::Llama2c)
      fail<InvalidArgument>("{}: a llama2.c checkpoint holds no vocabulary: give its tokenizer.bin", model.string());
    return from_gguf(*f);
  }
  Tokenizer t = load(tokenizer);
  if (const io::TensorInfo* emb = f->find("token_embd.weight"); emb && !emb->shape.empty() && emb->shape[0] != t.size())
    fail<FormatError>("{}: {} tokens, but the model {} has {} token embeddings", tokenizer.string(), t.size(),
                      model.string(), emb->shape[0]);
  return t;
}

}  // namespace qk::model
