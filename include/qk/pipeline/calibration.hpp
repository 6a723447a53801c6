#pragma once
// Calibration sources: where the inputs of the layers come from when GPTQ, AWQ or an importance matrix needs them.
//  - token sources (samples generated from the model, a token-id file, a text file tokenized with the model's
//    vocabulary) give
//    sequences that the pipeline runs through the model block by block (ArchitectureAdapter);
//  - an activation file gives each linear layer's input matrix directly ([tokens, in_features] per weight name,
//    any tensor file), for models qk has no adapter for.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "qk/io/tensor_file.hpp"
#include "qk/model/tokenizer.hpp"
#include "qk/pipeline/architecture.hpp"

namespace qk::pipeline {

class CalibrationSource {
 public:
  virtual ~CalibrationSource() = default;
  // True when the source gives token sequences (TokenSource), false for layer activations (ActivationFile).
  virtual bool runs_model() const = 0;
  // What the calibration data was, for reports ("16 sequences of 128 tokens sampled from the model (seed 1)").
  virtual std::string describe() const = 0;
};

class TokenSource : public CalibrationSource {
 public:
  bool runs_model() const override { return true; }
  // The calibration sequences for this model, each starting with BOS. FormatError naming the source when it
  // cannot fill one sequence or holds ids outside the vocabulary.
  virtual std::vector<std::vector<int32_t>> sequences(ArchitectureAdapter& model) = 0;
  std::string describe() const override { return description_; }

 protected:
  std::string description_;
};

struct SequenceShape {
  int samples = 128;  // sequences (at most)
  int length = 128;   // tokens per sequence (at most the model's context)
};

// Sequences sampled from the model itself (temperature 1, seeded): calibration without any user data, and never
// the user's evaluation text.
class GeneratedTokens final : public TokenSource {
 public:
  GeneratedTokens(SequenceShape shape, uint64_t seed = 1, int threads = 0) : shape_(shape), seed_(seed), threads_(threads) {}
  std::vector<std::vector<int32_t>> sequences(ArchitectureAdapter& model) override;

 private:
  SequenceShape shape_;
  uint64_t seed_;
  int threads_;
};

// Sequences cut from a file of int32 token ids (qk/model/token_file.hpp), used as they are.
class TokenFile final : public TokenSource {
 public:
  TokenFile(std::filesystem::path path, SequenceShape shape) : path_(std::move(path)), shape_(shape) {}
  std::vector<std::vector<int32_t>> sequences(ArchitectureAdapter& model) override;

 private:
  std::filesystem::path path_;
  SequenceShape shape_;
};

// Sequences cut from a text file tokenized with the model's vocabulary (qk/model/text.hpp text_sequences): the text
// without BOS, cut into consecutive stretches of length - 1 ids, each with BOS put first. FormatError naming the file
// for an empty file, invalid UTF-8, a character the vocabulary cannot spell, or a text that does not fill one
// sequence; FormatError when the vocabulary's size is not the model's.
class TextTokens final : public TokenSource {
 public:
  TextTokens(std::filesystem::path path, model::Tokenizer tokenizer, SequenceShape shape)
      : path_(std::move(path)), tok_(std::move(tokenizer)), shape_(shape) {}
  std::vector<std::vector<int32_t>> sequences(ArchitectureAdapter& model) override;

 private:
  std::filesystem::path path_;
  model::Tokenizer tok_;
  SequenceShape shape_;
};

// One activation matrix per linear layer, named after the layer's weight.
class ActivationFile final : public CalibrationSource {
 public:
  explicit ActivationFile(const std::filesystem::path& path);
  bool runs_model() const override { return false; }
  std::string describe() const override;
  bool has(const std::string& weight) const { return file_->find(weight) != nullptr; }
  // The activations [tokens, in_features] of `weight`. ShapeError naming the file when the width differs from
  // in_features or there are no tokens.
  io::RowMatrixXf activations(const std::string& weight, int64_t in_features) const;
  const std::filesystem::path& path() const { return file_->path(); }

 private:
  std::unique_ptr<io::TensorFile> file_;
};

// The sequences' length for a model: at most its context (when known).
int sequence_length(const SequenceShape& s, const ArchitectureAdapter& model);

}  // namespace qk::pipeline
