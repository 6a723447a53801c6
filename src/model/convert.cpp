// llama2.c -> GGUF as llama.cpp's examples/convert-llama2c-to-ggml (save_as_llama_model) writes it; see
// qk/model/convert.hpp for the few deliberate differences.
#include "qk/model/convert.hpp"

#include <memory>

#include <fmt/format.h>

#include "qk/core/error.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/llama2c.hpp"

namespace qk::model {

namespace {

uint32_t meta_u32(const io::TensorFile& f, std::string_view key) {
  const io::MetaValue* v = io::find_meta(f.metadata(), key);
  if (!v || !std::holds_alternative<uint32_t>(*v))
    fail<FormatError>("{}: metadata '{}' is missing or not a u32", f.path().string(), key);
  return std::get<uint32_t>(*v);
}

std::shared_ptr<io::MetaArray> array(io::GgufType t) {
  auto a = std::make_shared<io::MetaArray>();
  a->element_type = static_cast<int>(t);
  return a;
}

// A special id as the converter writes it: u32, LLAMA_TOKEN_NULL (-1) as 0xFFFFFFFF.
uint32_t special(int32_t id) { return static_cast<uint32_t>(id); }

}  // namespace

ConvertSummary write_llama2c_gguf(const io::TensorFile& ck, const Vocabulary& vocab, const std::string& vocab_source,
                                  const std::filesystem::path& out, const ConvertOptions& options) {
  const std::string file = ck.path().string();
  if (ck.format() != io::FileFormat::Llama2c)
    fail<InvalidArgument>("{}: not a llama2.c checkpoint (write_llama2c_gguf converts those only)", file);
  const io::TensorInfo& emb = ck.tensor("token_embd.weight");
  const int64_t n_vocab = emb.shape.at(0);
  if (static_cast<int64_t>(vocab.tokens.size()) != n_vocab)
    fail<FormatError>("{}: {} tokens, but the checkpoint {} has a vocabulary of {}", vocab_source, vocab.tokens.size(),
                      file, n_vocab);
  (void)Tokenizer(vocab, vocab_source);  // the checks llama.cpp's loader would make of the written vocabulary

  util::WriteOptions wopts = options.write;
  wopts.inputs.push_back(ck.path());
  io::GgufWriter w(out, wopts);
  // Metadata in the converter's order.
  auto tokens = array(io::GgufType::String), scores = array(io::GgufType::F32), types = array(io::GgufType::I32);
  for (const TokenPiece& t : vocab.tokens) {
    tokens->values.emplace_back(t.text);
    scores->values.emplace_back(t.score);
    types->values.emplace_back(static_cast<int32_t>(t.type));
  }
  w.set("tokenizer.ggml.tokens", tokens);
  w.set("tokenizer.ggml.scores", scores);
  w.set("tokenizer.ggml.token_type", types);
  w.set("tokenizer.ggml.model", std::string("llama"));
  w.set("general.architecture", std::string("llama"));
  std::string name = options.name;
  if (name.empty()) name = ck.path().stem().string();
  if (name.empty()) name = "llama";
  w.set("general.name", name);
  w.set("tokenizer.ggml.unknown_token_id", special(vocab.unk));
  w.set("tokenizer.ggml.bos_token_id", special(vocab.bos));
  w.set("tokenizer.ggml.eos_token_id", special(vocab.eos));
  w.set("tokenizer.ggml.seperator_token_id", special(-1));  // sic: llama.cpp's key
  w.set("tokenizer.ggml.padding_token_id", special(-1));
  w.set("llama.context_length",
        options.context_length ? options.context_length : meta_u32(ck, "llama.context_length"));
  for (const char* k : {"llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
                        "llama.attention.head_count_kv", "llama.block_count", "llama.rope.dimension_count"})
    w.set(k, meta_u32(ck, k));
  w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f);

  // Tensors in the converter's order; the shared classifier is written out as output.weight.
  std::vector<const io::TensorInfo*> src;
  std::vector<std::string> names;
  auto add = [&](const std::string& n, const io::TensorInfo& t) {
    names.push_back(n);
    src.push_back(&t);
    w.add_tensor(n, 0, t.shape);
  };
  add("token_embd.weight", emb);
  add("output_norm.weight", ck.tensor("output_norm.weight"));
  const io::TensorInfo* cls = ck.find("output.weight");
  add("output.weight", cls ? *cls : emb);
  const uint32_t layers = meta_u32(ck, "llama.block_count");
  for (uint32_t l = 0; l < layers; ++l)
    for (const char* part : {"attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_gate", "ffn_down",
                             "ffn_up", "ffn_norm"}) {
      const std::string n = fmt::format("blk.{}.{}.weight", l, part);
      add(n, ck.tensor(n));
    }
  for (size_t i = 0; i < src.size(); ++i) w.write_tensor(names[i], ck.bytes(*src[i]));
  w.commit();

  ConvertSummary s;
  s.tensors = src.size();
  s.bytes = std::filesystem::file_size(out);
  s.vocab = static_cast<int32_t>(n_vocab);
  s.shared_classifier = cls == nullptr;
  return s;
}

ConvertSummary convert_llama2c_to_gguf(const std::filesystem::path& checkpoint,
                                       const std::filesystem::path& tokenizer_bin, const std::filesystem::path& out,
                                       const ConvertOptions& options) {
  const auto ck = io::open_llama2c(checkpoint);
  const Vocabulary vocab = read_llama2c_vocabulary(tokenizer_bin);
  ConvertOptions o = options;
  o.write.inputs.push_back(tokenizer_bin);
  return write_llama2c_gguf(*ck, vocab, tokenizer_bin.string(), out, o);
}

}  // namespace qk::model
