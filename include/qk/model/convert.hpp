#pragma once
// llama2.c checkpoint + tokenizer.bin -> GGUF, as llama.cpp's convert-llama2c-to-ggml writes it: the same tensors
// (names, shapes, F32, bytes, order: token_embd, output_norm, output — the embedding again when the classifier is
// shared — then per layer attn_q, attn_k, attn_v, attn_output, attn_norm, ffn_gate, ffn_down, ffn_up, ffn_norm), the
// same metadata keys in the same order and the same vocabulary (tokenizer.ggml.tokens / scores / token_type,
// model "llama", unknown 0, BOS 1, EOS 2, separator and padding 0xFFFFFFFF).
//
// Where the result differs from llama.cpp's file, and why (tests/model/test_convert.cpp checks that nothing else
// does):
//  - general.name: the checkpoint's file stem ("stories260K"); llama.cpp writes "llama" (it computes the stem but
//    never writes it). ConvertOptions::name = "llama" reproduces it.
//  - llama.context_length: the checkpoint's seq_len (512 for stories260K); llama.cpp writes its converter's fixed
//    default, 128, whatever the model was trained with. ConvertOptions::context_length = 128 reproduces it.
//  - llama.rope.dimension_count: the head dimension; llama.cpp writes min(64, head dimension), which its own loader
//    rejects for a llama model with heads wider than 64. Equal for both bundled models.
//  - general.alignment = 32 (GgufWriter always writes it; 32 is also GGUF's default), so the header is longer and
//    the data section starts later; the tensors' relative offsets are the same.
#include <cstdint>
#include <filesystem>
#include <string>

#include "qk/io/tensor_file.hpp"
#include "qk/model/tokenizer.hpp"
#include "qk/util/atomic_file.hpp"

namespace qk::model {

struct ConvertOptions {
  std::string name;             // general.name; empty: the checkpoint's file stem
  uint32_t context_length = 0;  // llama.context_length; 0: the checkpoint's seq_len
  util::WriteOptions write;     // overwrite or not; the inputs are always added to write.inputs
};

struct ConvertSummary {
  size_t tensors = 0;
  uint64_t bytes = 0;     // of the written file
  int32_t vocab = 0;      // tokens
  bool shared_classifier = true;
};

// Reads `checkpoint` (qk/io/llama2c.hpp) and `tokenizer_bin` (read_llama2c_vocabulary) and writes `out` through a
// temporary file and a rename. FormatError naming the file for a malformed input, and naming both when the
// tokenizer's token count is not the checkpoint's vocabulary size.
ConvertSummary convert_llama2c_to_gguf(const std::filesystem::path& checkpoint,
                                       const std::filesystem::path& tokenizer_bin, const std::filesystem::path& out,
                                       const ConvertOptions& options = {});

// The same from a checkpoint already open (a TensorFile of FileFormat::Llama2c) and a vocabulary; `vocab_source`
// names the vocabulary in messages.
ConvertSummary write_llama2c_gguf(const io::TensorFile& checkpoint, const Vocabulary& vocab,
                                  const std::string& vocab_source, const std::filesystem::path& out,
                                  const ConvertOptions& options = {});

}  // namespace qk::model
