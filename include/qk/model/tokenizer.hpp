#pragma once
// A SentencePiece BPE tokenizer that gives the ids llama.cpp's SPM tokenizer (llm_tokenizer_spm, src/llama-vocab.cpp)
// gives, built from a GGUF file's tokenizer.ggml.* metadata or from a llama2.c tokenizer.bin.
//
// Encoding: the text (valid UTF-8) gets a space in front when the vocabulary says so (add_space_prefix, default
// true as in llama.cpp), every space becomes U+2581 '▁', and the text is split into characters. Then, repeatedly, the
// adjacent pair whose concatenation is a vocabulary piece with the highest score is merged (equal scores: the
// leftmost pair first), until no adjacent pair forms a piece. A character that is no piece is spelled with byte
// tokens <0xNN> (byte fallback); a vocabulary without them cannot encode it: FormatError naming the character
// (U+XXXX) and its byte offset in the text. "<s>" in the text is three characters unless
// EncodeOptions::parse_special. Linear-ish: one hash lookup per candidate pair and a priority
// queue over the pairs, one word at a time.
//
// Special tokens, as llama.cpp's tokenizer_st_partition: before merging, the text is cut at every occurrence of a
// user-defined piece (always) and of control and unknown pieces (with parse_special), longest pieces first; each
// such occurrence is that token, and each stretch of text between them is encoded on its own, with the dummy
// prefix when it comes first or right after a special token.
//
// Decoding follows llama.cpp's llama_token_to_piece / llama_detokenize: a normal piece with '▁' turned back into
// spaces, a byte token its byte (consecutive byte tokens reassemble UTF-8), control and unknown tokens nothing
// unless `special` (then their text, e.g. "<s>"). decode() removes one leading space of the first token when the
// vocabulary adds the dummy prefix — the first token, whatever it is: after a BOS the space stays, as in llama.cpp
// (decode(encode(text, {.add_special = false})) == text; with the BOS the result is " " + text).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qk/io/tensor_file.hpp"

namespace qk::model {

// Token types as GGUF stores them (tokenizer.ggml.token_type; llama.cpp's llama_token_type).
enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct TokenPiece {
  std::string text;  // '▁' for spaces; byte tokens "<0xNN>"
  float score = 0.0f;
  TokenType type = TokenType::Normal;
};

// What a vocabulary file says, unchanged (the converter writes it back as it is).
struct Vocabulary {
  std::vector<TokenPiece> tokens;
  int32_t bos = 1, eos = 2, unk = 0;  // -1: none
  bool add_bos = true;                // tokenizer.ggml.add_bos_token
  bool add_eos = false;               // tokenizer.ggml.add_eos_token
  bool add_space_prefix = true;       // tokenizer.ggml.add_space_prefix
};

// The vocabulary of a GGUF file: tokenizer.ggml.tokens / scores / token_type, the special ids (out-of-range ids
// fall back to the defaults, as in llama.cpp) and the add_* flags. FormatError naming the file when it has no
// vocabulary, when tokenizer.ggml.model is not "llama" (SentencePiece), or when the arrays are malformed.
Vocabulary read_gguf_vocabulary(const io::TensorFile& file);

// A llama2.c tokenizer.bin: int32 max_token_length, then for every token a float32 score, an int32 length and that
// many bytes, to the end of the file. Read as llama.cpp's convert-llama2c-to-ggml reads it: ids 0, 1, 2 become
// "<unk>" (unknown), "<s>" and "</s>" (control: BOS and EOS), an empty piece is a control token, a piece starting
// "<0x" and a hex digit is a byte token, spaces become '▁'. FormatError naming the file for truncation or lengths
// that break the format.
Vocabulary read_llama2c_vocabulary(std::span<const std::byte> data, const std::string& name);
Vocabulary read_llama2c_vocabulary(const std::filesystem::path& path);

struct EncodeOptions {
  bool add_special = true;           // BOS first (and EOS last) when the vocabulary adds them (add_bos / add_eos)
  bool parse_special = false;        // control and unknown tokens' text ("<s>") in the text become those tokens
  std::string_view source = "text";  // names the text in error messages (e.g. the file it came from)
};

struct DecodeOptions {
  bool special = false;         // control and unknown tokens as their text ("<s>") instead of nothing
  bool remove_special = false;  // drop a leading BOS and a trailing EOS (when the vocabulary adds them)
};

class Tokenizer {
 public:
  // Checks the vocabulary (FormatError "<source>: ..." for special ids out of range, duplicate pieces, byte tokens
  // not of the form <0xNN>). Empty pieces are renamed "[EMPTY_<id>]" as llama.cpp does on load. `source` names
  // the vocabulary in messages.
  explicit Tokenizer(Vocabulary vocab, std::string source = "<vocabulary>");

  static Tokenizer from_gguf(const io::TensorFile& file);
  static Tokenizer from_llama2c(const std::filesystem::path& tokenizer_bin);
  // A GGUF file with a vocabulary or a llama2.c tokenizer.bin, told apart by the GGUF magic.
  static Tokenizer load(const std::filesystem::path& path);
  // The vocabulary of a model: `tokenizer` when given (a tokenizer.bin or a GGUF; FormatError naming both files when
  // its size is not the model's token_embd rows), else the model's own GGUF metadata (FormatError "no vocabulary"
  // naming the file). A llama2.c checkpoint has none: InvalidArgument asking for its tokenizer.bin.
  static Tokenizer for_model(const std::filesystem::path& model, const std::filesystem::path& tokenizer = {});

  // Token ids of `text`. FormatError "<source>: ..." for invalid UTF-8 (naming the byte offset) and for a character
  // the vocabulary cannot spell (naming it as U+XXXX and its byte offset). An empty text gives no ids (BOS alone when
  // add_special). Texts of 2 GiB or more: InvalidArgument.
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& o = {}) const;

  // The text of `ids` (see the top of this file). InvalidArgument for an id out of range.
  std::string decode(std::span<const int32_t> ids, const DecodeOptions& o = {}) const;
  // One token's text, for streaming output: no leading space is removed; a byte token is one byte (possibly part of
  // a UTF-8 character that the next byte tokens complete).
  std::string piece(int32_t id, bool special = false) const;

  int32_t size() const;
  const TokenPiece& token(int32_t id) const;  // InvalidArgument for an id out of range
  int32_t find(std::string_view piece) const;  // the id of the piece with exactly this text, or -1
  int32_t bos() const;
  int32_t eos() const;
  int32_t unk() const;
  bool has_byte_fallback() const;  // the vocabulary has all 256 byte tokens
  const Vocabulary& vocabulary() const;
  const std::string& source() const;

 private:
  struct Impl;
  class Encoder;
  std::shared_ptr<const Impl> impl_;  // immutable, so copies share it
};

}  // namespace qk::model
