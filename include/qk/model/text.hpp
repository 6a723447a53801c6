#pragma once
// Text files as model input: reading them whole, and the token sequences that evaluation (perplexity, KL) and
// calibration cut from them.
//
// Evaluation follows llama.cpp's perplexity tool (tools/perplexity): the whole text is tokenized once with BOS
// first (the vocabulary's dummy-prefix and special-token rules, qk/model/tokenizer.hpp), then cut into chunks of
// `context` tokens (the tail that does not fill a chunk is dropped); qk/model/perplexity.hpp scores the chunks.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "qk/model/perplexity.hpp"
#include "qk/model/tokenizer.hpp"

namespace qk::model {

// The bytes of a text file. IoError "<file>: cannot open" / read error; FormatError "<file>: empty file".
std::string read_text_file(const std::filesystem::path& path);

// The ids of a text file under `tok` (add_special: BOS first when the vocabulary adds it). FormatError naming the
// file for an empty file, invalid UTF-8 (with its byte offset) or a character the vocabulary cannot spell.
std::vector<int32_t> tokenize_file(const Tokenizer& tok, const std::filesystem::path& path, bool add_special = true);

// The tokens llama.cpp's perplexity tool scores for a text file: the file tokenized with BOS first. FormatError
// "<file>: N tokens do not fill one chunk of C (--ctx)" when the text is shorter than one chunk of `context`.
std::vector<int32_t> evaluation_tokens(const Tokenizer& tok, const std::filesystem::path& path, int context);

// `base` and `candidate` scored on a text file as llama.cpp's perplexity tool scores them (evaluation_tokens, then
// compare() with o.context; every chunk starts with the vocabulary's BOS unless o.bos is -1). The tokenizer is
// normally base's own vocabulary; FormatError when its size is not base's vocabulary size.
CompareResult compare_on_text(const LlamaModel& base, const LlamaModel& candidate, const Tokenizer& tok,
                              const std::filesystem::path& path, const PerplexityOptions& o = {});

// Calibration sequences cut from a text file: the text tokenized without BOS, then consecutive, non-overlapping
// stretches of length - 1 ids, each with BOS put first, at most `samples` of them. FormatError naming the file when
// the text does not fill one sequence.
std::vector<std::vector<int32_t>> text_sequences(const Tokenizer& tok, const std::filesystem::path& path, int samples,
                                                 int length);

}  // namespace qk::model
